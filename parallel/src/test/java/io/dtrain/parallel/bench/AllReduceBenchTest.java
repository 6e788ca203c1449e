package io.dtrain.parallel.bench;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

class AllReduceBenchTest {
    @Test
    void parsesSizesWithBinaryUnits() {
        assertArrayEquals(new long[] {1 << 20, 16L << 20, 4096, 1000, 2L << 30},
                AllReduceBench.parseSizes("1MiB, 16mib,4KiB,1000,2GiB"));
        IllegalArgumentException bad = assertThrows(IllegalArgumentException.class, () -> AllReduceBench.parseSizes("1MB"));
        assertTrue(bad.getMessage().contains("'1MB'"), bad.getMessage());
    }
}
