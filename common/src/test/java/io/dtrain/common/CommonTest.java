package io.dtrain.common;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class CommonTest {
    @Test
    void byteSizesFollowOneRule() {
        assertEquals(1048576, ByteSizes.parse("1048576", "x"));
        assertEquals(64L << 10, ByteSizes.parse("64KiB", "x"));
        assertEquals(1L << 20, ByteSizes.parse("1MiB", "x"));
        assertEquals(1_000_000, ByteSizes.parse("1MB", "x"));
        assertEquals(2L << 30, ByteSizes.parse("2g", "x"));
        assertEquals(2L << 30, ByteSizes.parse("2G", "x"));
        assertEquals(512L << 20, ByteSizes.parse("512m", "x"));
        assertEquals(3L << 29, ByteSizes.parse("1.5GiB", "x"));
        UserFacingException e = assertThrows(UserFacingException.class, () -> ByteSizes.parse("lots", "--memory-per-worker"));
        assertTrue(e.getMessage().startsWith("--memory-per-worker: 'lots' is not a byte size"), e.getMessage());
        assertThrows(UserFacingException.class, () -> ByteSizes.parse("1iB", "x"));
        assertEquals("1.5KiB", ByteSizes.format(1536));
        assertEquals("512B", ByteSizes.format(512));
    }

    @Test
    void atomicWriteReplacesWholeOrLeavesThePrevious(@TempDir Path dir) throws IOException {
        Path f = dir.resolve("a.json");
        AtomicFiles.writeString(f, "one");
        AtomicFiles.writeString(f, "two");
        assertEquals("two", Files.readString(f));
        assertThrows(IOException.class, () -> AtomicFiles.write(f, out -> {
            out.write("partial".getBytes());
            throw new IOException("disk full");
        }));
        assertEquals("two", Files.readString(f));
        assertFalse(Files.exists(AtomicFiles.temporaryFor(f)));
        // Writers close the stream they were given (try-with-resources, Jackson, zstd): the write still commits.
        AtomicFiles.write(f, out -> {
            try (out) {
                out.write("three".getBytes());
            }
        });
        assertEquals("three", Files.readString(f));
    }
}
