package io.dtrain.launcher;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** What a user sees when the invocation, the config or a checkpoint is wrong: one line, exit code 2. */
class CliErrorsTest {

    @Test
    void helpListsTheCommands() {
        Cli help = Cli.run("--help");
        assertEquals(0, help.exitCode());
        for (String cmd : new String[] {"train", "eval", "generate", "tokenize"}) {
            assertTrue(help.out().contains(cmd), help.out());
        }
        Cli trainHelp = Cli.run("train", "--help");
        assertTrue(trainHelp.out().contains("--resume") && trainHelp.out().contains("--set"), trainHelp.out());
    }

    @Test
    void aBadConfigNamesFileLineAndKey(@TempDir Path tmp) throws Exception {
        Path yaml = tmp.resolve("bad.yaml");
        Files.writeString(yaml, "model:\n  d_model: 30\n  n_head: 4\ndata:\n  train: data/pile-tiny/train\ntraining:\n  steps: 5\n");
        Cli r = Cli.run("train", "--config", yaml.toString());
        assertEquals(2, r.exitCode(), r.toString());
        assertTrue(r.err().contains(yaml + ":"), r.err());
        assertTrue(r.err().contains("n_head"), r.err());
        assertEquals(1, r.err().strip().lines().count(), "one line, no stack trace: " + r.err());
    }

    @Test
    void anUnknownOverrideKeyIsNamed() {
        Cli r = Cli.run("train", "--config", "configs/gpt-micro.yaml", "--set", "training.stepz=3");
        assertEquals(2, r.exitCode(), r.toString());
        assertTrue(r.err().contains("training.stepz") && r.err().contains("steps"), r.err());
    }

    @Test
    void aMissingCheckpointIsAClearError(@TempDir Path tmp) {
        Cli r = Cli.run("eval", "--checkpoint", tmp.resolve("nowhere").toString());
        assertEquals(2, r.exitCode(), r.toString());
        assertTrue(r.err().contains("nowhere"), r.err());
        Cli g = Cli.run("generate", "--checkpoint", tmp.toString(), "--prompt", "x");
        assertEquals(2, g.exitCode(), g.toString());
    }

    @Test
    void aCorruptCheckpointIsRefusedNamingTheFile(@TempDir Path tmp) throws Exception {
        Path run = tmp.resolve("run");
        Cli t = Cli.run("train", "--config", "configs/gpt-micro.yaml", "--set", "training.steps=2",
                "--set", "schedule.warmup_steps=0", "--set", "training.eval_interval=0", "--set", "output.dir=" + run);
        assertEquals(0, t.exitCode(), t.toString());
        Path ln = run.resolve("checkpoints/step-000002/params/ln_f.weight.bin");
        if (!Files.exists(ln)) {
            try (var s = Files.walk(run.resolve("checkpoints/step-000002"))) {
                ln = s.filter(p -> p.toString().endsWith(".bin")).findFirst().orElseThrow();
            }
        }
        byte[] b = Files.readAllBytes(ln);
        b[0] ^= 0x55;
        Files.write(ln, b);
        Cli r = Cli.run("eval", "--checkpoint", run.toString());
        assertEquals(2, r.exitCode(), r.toString());
        assertTrue(r.err().contains(ln.getFileName().toString().replace(".bin", "")), r.err());

        Cli resume = Cli.run("train", "--config", "configs/gpt-micro.yaml", "--set", "training.steps=4",
                "--set", "output.dir=" + run, "--resume");
        assertEquals(2, resume.exitCode(), resume.toString());
    }

    @Test
    void resumeWithNothingToResumeSaysSo(@TempDir Path tmp) {
        Cli r = Cli.run("train", "--config", "configs/gpt-micro.yaml", "--set", "output.dir=" + tmp.resolve("empty"),
                "--resume");
        assertEquals(2, r.exitCode(), r.toString());
        assertTrue(r.err().contains("checkpoint"), r.err());
    }

    @Test
    void benchSizesUseTheCommonByteSizeRule() {
        Cli r = Cli.run("bench", "allreduce", "--sizes", "1MiB,lots");
        assertEquals(2, r.exitCode(), r.toString());
        assertEquals("dtrain allreduce: error: --sizes: 'lots' is not a byte size; write e.g. 1048576, 64KiB, 512MiB,"
                + " 2g or 1GB (KiB/MiB/GiB and k/m/g are powers of 1024, KB/MB/GB of 1000)", r.err().strip());
    }
}
