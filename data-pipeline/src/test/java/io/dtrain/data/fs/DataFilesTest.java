package io.dtrain.data.fs;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.dtrain.data.DataException;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class DataFilesTest {
    @Test
    void localAtomicWriteReplacesWholeKeepsThePreviousOnFailureAndLeavesNoTemporaries(@TempDir Path dir)
            throws Exception {
        Path target = dir.resolve("out/ids.jsonl");
        org.apache.hadoop.fs.Path hadoopTarget = new org.apache.hadoop.fs.Path(target.toUri());
        for (String content : List.of("first\n", "second, longer\n")) {
            // The body closes its stream, as the tokenizer's and the shard writer's do.
            DataFiles.writeAtomically(hadoopTarget, out -> {
                try (OutputStream o = out) {
                    o.write(content.getBytes(StandardCharsets.UTF_8));
                }
            });
            assertEquals(content, Files.readString(target));
        }
        DataException e = assertThrows(DataException.class, () -> DataFiles.writeAtomically(hadoopTarget, out -> {
            out.write("partial".getBytes(StandardCharsets.UTF_8));
            throw new IOException("disk full (simulated)");
        }));
        assertTrue(e.getMessage().equals(target + ": write failed: disk full (simulated)"), e.getMessage());
        assertEquals("second, longer\n", Files.readString(target));
        try (Stream<Path> left = Files.list(target.getParent())) {
            assertEquals(List.of("ids.jsonl"), left.map(p -> p.getFileName().toString()).toList());
        }
    }
}
