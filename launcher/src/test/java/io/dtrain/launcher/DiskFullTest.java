package io.dtrain.launcher;

import io.dtrain.checkpoint.Checkpoint;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import static io.dtrain.launcher.UserFacingFailuresTest.errorLine;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A disk that fills up during a checkpoint write (issue 14, case 1), on a real small file system: a tmpfs mounted
 * for the test (needs root; skipped with the reason where mounting is impossible). gpt-micro's checkpoint takes
 * about 650 KiB there, so 1000 KiB hold one checkpoint but not a second one next to it.
 */
class DiskFullTest {

    @Test
    void aFullDiskDuringACheckpointIsOneLineAndThePreviousCheckpointIsIntact(@TempDir Path tmp) throws Exception {
        Path disk = Files.createDirectories(tmp.resolve("disk"));
        mount(disk, "1000k");
        try {
            Path run = disk.resolve("run");
            Cli r = Cli.run("train", "--config", "configs/gpt-micro.yaml", "--set", "training.steps=6",
                    "--set", "training.checkpoint_interval=2", "--set", "schedule.warmup_steps=0",
                    "--set", "metrics.trace=false", "--set", "output.dir=" + run);
            String line = errorLine(r);
            assertTrue(line.startsWith("dtrain train: error: disk full: the checkpoint of step 4 ("), line);
            assertTrue(line.matches(".*\\(\\d+\\.\\dKiB: parameters and AdamW state\\) does not fit under "
                    + java.util.regex.Pattern.quote(run.resolve("checkpoints").toString()) + " \\(\\d+\\.\\dKiB free\\).*"), line);
            assertTrue(line.contains("the previous checkpoint step-000002 is intact (dtrain train --resume continues"
                    + " from it); free some space, set output.dir to a larger disk or lower output.keep_checkpoints"), line);
            assertTrue(r.out().contains("checkpoint " + run.resolve("checkpoints/step-000002")), r.out());
            assertTrue(r.out().contains("warning: the checkpoint of step 4 needs "), "warned before writing: " + r.out());
            assertFalse(r.out().contains("warning: a checkpoint of this run"), "one checkpoint fits at the start");

            Checkpoint previous = Checkpoint.load(run);
            assertEquals(2, previous.step());
            previous.verify();
            try (Stream<Path> left = Files.list(run.resolve("checkpoints"))) {
                assertEquals(List.of("latest", "step-000002"), left.map(p -> p.getFileName().toString()).sorted().toList(),
                        "the partial checkpoint was removed");
            }
        } finally {
            unmount(disk);
        }

        // The case: even the first checkpoint does not fit; warned before the first step.
        mount(disk, "300k");
        try {
            Path run = disk.resolve("run");
            Cli r = Cli.run("train", "--config", "configs/gpt-micro.yaml", "--set", "training.steps=2",
                    "--set", "schedule.warmup_steps=0", "--set", "metrics.trace=false", "--set", "output.dir=" + run);
            String line = errorLine(r);
            assertTrue(line.startsWith("dtrain train: error: disk full: the checkpoint of step 2 ("), line);
            assertTrue(line.contains("no earlier checkpoint existed"), line);
            assertTrue(r.out().contains("warning: a checkpoint of this run needs "), r.out());
            try (Stream<Path> left = Files.list(run.resolve("checkpoints"))) {
                assertEquals(List.of(), left.toList(), "the partial checkpoint was removed");
            }
        } finally {
            unmount(disk);
        }
    }

    private static void mount(Path dir, String size) throws IOException, InterruptedException {
        Process p = new ProcessBuilder("mount", "-t", "tmpfs", "-o", "size=" + size, "tmpfs", dir.toString())
                .redirectErrorStream(true).start();
        String output = new String(p.getInputStream().readAllBytes());
        boolean ok = p.waitFor(30, TimeUnit.SECONDS) && p.exitValue() == 0;
        Assumptions.assumeTrue(ok, "cannot mount a tmpfs here (needs root, or CAP_SYS_ADMIN): " + output.strip());
    }

    private static void unmount(Path dir) throws IOException, InterruptedException {
        Process p = new ProcessBuilder("umount", "-l", dir.toString()).redirectErrorStream(true).start();
        p.getInputStream().readAllBytes();
        p.waitFor(30, TimeUnit.SECONDS);
    }
}
