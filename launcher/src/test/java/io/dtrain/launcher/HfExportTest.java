package io.dtrain.launcher;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.dtrain.checkpoint.Checkpoint;
import io.dtrain.config.ConfigLoader;
import io.dtrain.config.RunConfig;
import io.dtrain.data.tokenizer.ByteTokenizer;
import io.dtrain.data.tokenizer.Tokenizer;
import io.dtrain.data.tokenizer.Tokenizers;
import io.dtrain.model.GptModel;
import io.dtrain.train.RunContext;
import io.dtrain.train.Trainer;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.nd4j.linalg.api.ndarray.INDArray;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code dtrain export --format hf} end to end: trained gpt-micro checkpoints (tied GELU; untied ReLU without biases
 * and with d_ff 48) are exported through the CLI, loaded by name into a PyTorch model written with Hugging Face's
 * GPT-2 module structure ({@code benchmarks/pytorch/hf_gpt2.py}, torch only), which must give dtrain's logits on the
 * same tokens (float32, 1e-5); {@code model.init_from} reads the export back and export -> import -> export is
 * byte-identical.
 */
class HfExportTest {
    static final String PYTHON = "/usr/bin/python3";
    static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    static Path tmp;
    static Path tiedRun;
    static Path untiedRun;

    @BeforeAll
    static void trainTwoMicroModels() {
        tiedRun = train("tied");
        untiedRun = train("untied", "--set", "model.tie_embeddings=false", "--set", "model.activation=relu",
                "--set", "model.bias=false", "--set", "model.d_ff=48");
    }

    static Path train(String name, String... sets) {
        Path run = tmp.resolve(name);
        List<String> args = new ArrayList<>(List.of("train", "--config", "configs/gpt-micro.yaml", "--set",
                "training.steps=2", "--set", "training.eval_interval=0", "--set", "metrics.interval_ms=0",
                "--set", "output.dir=" + run));
        args.addAll(List.of(sets));
        Cli c = Cli.run(args.toArray(String[]::new));
        assertEquals(0, c.exitCode(), c.toString());
        return run;
    }

    static Path export(Path run, String name) {
        Path out = tmp.resolve(name);
        Cli c = Cli.run("export", "--checkpoint", run.toString(), "--format", "hf", "--out", out.toString());
        assertEquals(0, c.exitCode(), c.toString());
        assertTrue(c.out().contains("model.safetensors, config.json, vocab.json, merges.txt"), c.out());
        return out;
    }

    static boolean torchAvailable() {
        try {
            Process p = new ProcessBuilder(PYTHON, "-c", "import torch, numpy").redirectErrorStream(true).start();
            return p.waitFor(120, TimeUnit.SECONDS) && p.exitValue() == 0;
        } catch (IOException e) {
            return false;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return false;
        }
    }

    @Test
    void aPyTorchGpt2WithHuggingFacesModuleStructureGivesDtrainsLogits() throws Exception {
        Assumptions.assumeTrue(torchAvailable(), PYTHON + " cannot import torch and numpy: skipping the PyTorch"
                + " check of the export (Debian: apt-get install python3-torch)");
        for (Path run : List.of(tiedRun, untiedRun)) {
            Path hf = export(run, run.getFileName() + "-hf");
            Checkpoint ck = Checkpoint.load(run);
            RunConfig cfg = ConfigLoader.fromResolvedYaml((String) ck.extra().get("config_yaml"));
            int seqLen = cfg.model().seqLen();
            int[][] tokens = new int[3][seqLen];
            SplittableRandom rng = new SplittableRandom(42);
            for (int[] row : tokens) {
                for (int t = 0; t < seqLen; t++) {
                    row[t] = rng.nextInt(cfg.model().vocabSize());
                }
            }
            INDArray logits;
            try (GptModel model = new GptModel(cfg.model())) {
                INDArray params = model.newFlatBuffer();
                ck.readParams(model.layout(), params);
                model.setParams(params);
                logits = model.logits(tokens);
            }
            float[] values = logits.dup('c').data().asFloat();
            ByteBuffer b = ByteBuffer.allocate(values.length * 4).order(ByteOrder.LITTLE_ENDIAN);
            for (float v : values) {
                b.putFloat(v);
            }
            Path expected = Files.write(tmp.resolve(run.getFileName() + "-logits.bin"), b.array());
            Path tokenFile = tmp.resolve(run.getFileName() + "-tokens.json");
            JSON.writeValue(tokenFile.toFile(), Map.of("tokens", tokens));

            Process p = new ProcessBuilder(PYTHON, script().toString(), "logits", "--model", hf.toString(), "--tokens",
                    tokenFile.toString(), "--expected", expected.toString(), "--tol", "1e-5")
                    .redirectError(ProcessBuilder.Redirect.INHERIT).start();
            String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            assertTrue(p.waitFor(300, TimeUnit.SECONDS), "hf_gpt2.py finished");
            System.out.println("hf_gpt2.py " + run.getFileName() + ": " + out.strip());
            assertEquals(0, p.exitValue(), out);
            JsonNode r = JSON.readTree(out);
            assertEquals(List.of(3, seqLen, cfg.model().vocabSize()),
                    List.of(r.get("shape").get(0).asInt(), r.get("shape").get(1).asInt(), r.get("shape").get(2).asInt()));
            assertTrue(r.get("max_abs_diff").asDouble() <= 1e-5, out);
            boolean tied = cfg.model().tieEmbeddings();
            List<String> keys = new ArrayList<>();
            r.get("loaded_keys").forEach(k -> keys.add(k.asText()));
            assertEquals(!tied, keys.contains("lm_head.weight"), "an untied head is stored, a tied one is not: " + keys);
            assertTrue(keys.contains("transformer.h.1.attn.c_attn.bias"), "biases are stored (zeros without them)");
        }
    }

    /** Train -> export -> init_from -> checkpoint -> export: the same bytes; the config key is in the stored config. */
    @Test
    void exportImportExportIsByteIdenticalThroughTheTrainer() throws IOException {
        Path first = export(tiedRun, "round-trip-first");
        Checkpoint ck = Checkpoint.load(tiedRun);
        RunConfig cfg = ConfigLoader.fromYaml((String) ck.extra().get("config_yaml"), "stored", List.of(
                "model.init_from=" + first, "output.dir=" + tmp.resolve("imported")), Path.of("").toAbsolutePath());
        ByteArrayOutputStream log = new ByteArrayOutputStream();
        try (Trainer trainer = new Trainer(cfg, RunContext.single(), new PrintStream(log, true, StandardCharsets.UTF_8))) {
            trainer.saveCheckpoint();
        }
        assertTrue(log.toString(StandardCharsets.UTF_8).contains("model: weights from " + first.resolve("model.safetensors")),
                log.toString(StandardCharsets.UTF_8));
        Path second = export(tmp.resolve("imported"), "round-trip-second");
        for (String f : List.of("model.safetensors", "config.json", "vocab.json", "merges.txt", "tokenizer_config.json")) {
            assertArrayEquals(Files.readAllBytes(first.resolve(f)), Files.readAllBytes(second.resolve(f)), f);
        }
    }

    /** The exported byte tokenizer is a byte-level BPE without merges: loaded as GPT-2 files it gives the byte ids. */
    @Test
    void theExportedByteTokenizerGivesTheByteIds() {
        Path hf = export(tiedRun, "tokenizer-check");
        Tokenizer asBpe = Tokenizers.open(hf.toString());
        ByteTokenizer bytes = new ByteTokenizer();
        for (String text : List.of("Hello, world!", " leading space\n\ttabs  and\r\nnewlines", "naïve café ☕ 𝄞 中文",
                "<|endoftext|> is text here", "")) {
            assertArrayEquals(bytes.encode(text), asBpe.encode(text), text);
        }
        assertEquals(256, asBpe.eotId());
    }

    @Test
    void aPostLayerNormCheckpointIsRefusedWithTheReason() {
        Path run = train("post", "--set", "model.norm=post");
        Cli c = Cli.run("export", "--checkpoint", run.toString(), "--format", "hf", "--out", tmp.resolve("post-hf").toString());
        assertEquals(2, c.exitCode(), c.toString());
        assertTrue(c.err().contains("model.norm is 'post', but GPT-2 (GPT2LMHeadModel) applies LayerNorm before each"
                + " sublayer"), c.err());
        assertTrue(!Files.exists(tmp.resolve("post-hf/model.safetensors")));
    }

    @Test
    void initFromWithAnotherShapeFailsNamingTheTensorAndBothShapes() {
        Path hf = export(tiedRun, "shape-check");
        Cli c = Cli.run("train", "--config", "configs/gpt-micro.yaml", "--set", "training.steps=2", "--set",
                "model.d_model=16", "--set", "model.init_from=" + hf, "--set", "output.dir=" + tmp.resolve("shape-run"));
        assertEquals(2, c.exitCode(), c.toString());
        assertTrue(c.err().contains("transformer.wte.weight is [257, 32] in the file but [257, 16] in this configuration"),
                c.err());
    }

    /** A run started from an export resumes from its checkpoint without the file it started from. */
    @Test
    void aResumedRunDoesNotNeedTheInitFromFileAgain() throws IOException {
        Path hf = export(tiedRun, "resume-source");
        Path run = tmp.resolve("from-hf");
        List<String> args = List.of("train", "--config", "configs/gpt-micro.yaml", "--set", "training.eval_interval=0",
                "--set", "metrics.interval_ms=0", "--set", "model.init_from=" + hf, "--set", "output.dir=" + run);
        List<String> first = new ArrayList<>(args);
        first.addAll(List.of("--set", "training.steps=2"));
        Cli started = Cli.run(first.toArray(String[]::new));
        assertEquals(0, started.exitCode(), started.toString());
        assertTrue(started.out().contains("model: weights from " + hf.resolve("model.safetensors")), started.out());
        try (var files = Files.walk(hf)) {
            files.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        }
        List<String> more = new ArrayList<>(args);
        more.addAll(List.of("--set", "training.steps=3", "--resume"));
        Cli resumed = Cli.run(more.toArray(String[]::new));
        assertEquals(0, resumed.exitCode(), resumed.toString());
        assertTrue(resumed.out().contains("resumed from") && resumed.out().contains("done: 1 steps"), resumed.out());
    }

    static Path script() {
        return Path.of(System.getProperty("dtrain.repo.root", "..")).resolve("benchmarks/pytorch/hf_gpt2.py");
    }
}
