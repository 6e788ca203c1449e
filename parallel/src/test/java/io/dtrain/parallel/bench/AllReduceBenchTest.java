package io.dtrain.parallel.bench;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.dtrain.common.UserFacingException;
import org.junit.jupiter.api.Test;

class AllReduceBenchTest {
    @Test
    void sizesTakeTheCommonByteSizeUnits() {
        assertArrayEquals(new long[] {1 << 20, 16L << 20, 4096, 1000, 2L << 30},
                AllReduceBench.parseSizes("1MiB, 16mib,4KiB,1000,2GiB"));
        assertArrayEquals(new long[] {1_000_000, 64_000, 1 << 20}, AllReduceBench.parseSizes("1MB,64KB,1m"),
                "1MB means 10^6 bytes here as in every other dtrain option");
        UserFacingException bad = assertThrows(UserFacingException.class, () -> AllReduceBench.parseSizes("1MiB,lots"));
        assertTrue(bad.getMessage().startsWith("--sizes: 'lots' is not a byte size"), bad.getMessage());
    }

    @Test
    void warmsUpWithSixtyFourMebibytesWorthOfCallsFiveToAHundred() {
        assertArrayEquals(new int[] {100, 100, 64, 16, 5, 5, 5},
                java.util.stream.LongStream.of(4, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20, 256L << 20)
                        .mapToInt(AllReduceBench::warmUpCalls).toArray());
    }
}
