package io.dtrain.config;

import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Every file in configs/ loads from the repository root, round trips, and has the shape it promises. */
class ShippedConfigsTest {

    static Path repoRoot() {
        return Path.of(System.getProperty("dtrain.repo.root", "..")).toAbsolutePath().normalize();
    }

    private static RunConfig load(String name) {
        return ConfigLoader.load(Path.of("configs", name), List.of(), repoRoot());
    }

    /** GPT-2-style parameter count: embeddings, blocks (attention + MLP + 2 LayerNorms), final LayerNorm, untied head. */
    static long parameters(ModelConfig m) {
        long d = m.dModel();
        long f = m.ffWidth();
        long b = m.bias() ? 1 : 0;
        long perBlock = 4 * d * d + 4 * d * b        // q, k, v, output projections
                + 2 * d * f + (f + d) * b            // feed-forward
                + 2 * (d + d * b);                   // two LayerNorms
        long total = (long) m.vocabSize() * d + (long) m.seqLen() * d + m.nLayer() * perBlock + (d + d * b);
        return m.tieEmbeddings() ? total : total + (long) m.vocabSize() * d;
    }

    @Test
    void everyShippedConfigLoadsAndRoundTrips() throws IOException {
        List<Path> files;
        try (Stream<Path> s = Files.list(repoRoot().resolve("configs"))) {
            files = s.filter(p -> p.toString().endsWith(".yaml")).sorted().toList();
        }
        assertTrue(files.size() >= 5, "configs/: " + files);
        for (Path f : files) {
            String text = Files.readString(f);
            assertTrue(text.startsWith("# "), f + " starts with a header comment saying what it is for");
            RunConfig c = ConfigLoader.load(repoRoot().relativize(f), List.of(), repoRoot());
            assertEquals(c, ConfigLoader.fromResolvedYaml(ConfigLoader.toYaml(c)), f.toString());
            assertTrue(Path.of(c.data().train()).isAbsolute(), f + ": data.train resolved");
            assertEquals(0, c.training().globalBatch() % c.microBatch(1));
        }
    }

    @Test
    void gptTinyIsAOneMillionParameterByteModelOnTheBuiltInSample() {
        RunConfig c = load("gpt-tiny.yaml");
        ModelConfig m = c.model();
        assertEquals(List.of(257, 128, 128, 4, 4), List.of(m.vocabSize(), m.seqLen(), m.dModel(), m.nLayer(), m.nHead()));
        assertEquals(0.0, m.dropout());
        assertTrue(m.tieEmbeddings());
        assertEquals(842_624, parameters(m), "~1M parameters");
        assertEquals(repoRoot().resolve("data/pile-tiny/train").toString(), c.data().train());
        assertEquals(repoRoot().resolve("data/pile-tiny/val").toString(), c.data().val());
        assertTrue(Files.isDirectory(Path.of(c.data().train())), "the built-in sample exists");
        // micro_batch left at 0: one micro-batch per rank, so the README's 2-rank launch runs it as 2 x 8
        assertEquals(List.of(16, 0, 16, 1), List.of(c.training().globalBatch(), c.training().microBatch(), c.microBatch(1),
                c.accumulationSteps(1)));
        assertEquals(List.of(8, 1), List.of(c.microBatch(2), c.accumulationSteps(2)));
        assertTrue(c.totalSteps() >= 50 && c.totalSteps() <= 150);
        assertEquals(List.of(2e-3, 2e-4), List.of(c.optimizer().lr(), c.optimizer().minLr()));
        assertEquals(6, c.schedule().warmupSteps());
        assertEquals(List.of(30, 128, 10), List.of(c.training().evalInterval(), c.training().evalSequences(), c.training().logInterval()));
        assertEquals(repoRoot().resolve("runs/gpt-tiny").toString(), c.output().dir());
    }

    @Test
    void gptMicroHas34kParametersAndSplitsItsBatchIntoFourMicroBatchesOnOneRank() {
        ModelConfig m = load("gpt-micro.yaml").model();
        assertEquals(List.of(257, 16, 32, 2, 2), List.of(m.vocabSize(), m.seqLen(), m.dModel(), m.nLayer(), m.nHead()));
        assertEquals(34_208, parameters(m));
        assertEquals(4, load("gpt-micro.yaml").accumulationSteps(1));
        assertEquals(1, load("gpt-micro.yaml").accumulationSteps(4));
    }

    @Test
    void gptCpuSmallIsNanoGptsShakespeareCharShape() {
        RunConfig c = load("gpt-cpu-small.yaml");
        ModelConfig m = c.model();
        assertEquals(List.of(257, 256, 384, 6, 6), List.of(m.vocabSize(), m.seqLen(), m.dModel(), m.nLayer(), m.nHead()));
        assertEquals(0.2, m.dropout());
        assertEquals(8, c.training().microBatch());
        assertEquals(List.of(1e-3, 1e-4), List.of(c.optimizer().lr(), c.optimizer().minLr()));
        assertEquals(100, c.schedule().warmupSteps());
        // nanoGPT reports parameters without the position embedding: 10.72M here (10.65M with its 65-char vocabulary)
        long withoutPositions = parameters(m) - (long) m.seqLen() * m.dModel();
        assertEquals(10_720_512, withoutPositions);
        assertEquals(repoRoot().resolve("../shared/data/pile-sample/train").normalize().toString(), c.data().train());
    }

    @Test
    void gpt2SmallHasGpt2sParameterCount() {
        RunConfig c = load("gpt2-124m.yaml");
        ModelConfig m = c.model();
        assertEquals(124_439_808, parameters(m), "GPT-2 small as counted by nanoGPT/HF, with position embeddings");
        assertEquals(List.of("pre", "gelu", "gpt2"), List.of(m.norm(), m.activation(), c.data().tokenizer()));
        assertEquals(List.of(6e-4, 6e-5, 0.9, 0.95, 0.1),
                List.of(c.optimizer().lr(), c.optimizer().minLr(), c.optimizer().beta1(), c.optimizer().beta2(), c.optimizer().weightDecay()));
        assertEquals(2000, c.schedule().warmupSteps());
        assertEquals(524_288, c.training().globalBatch() * m.seqLen(), "0.5M tokens per step");
        assertEquals(8, c.training().microBatch());
        assertEquals(repoRoot().resolve("../shared/data/gpt2-tokenizer").normalize().toString(), c.data().tokenizerDir());
        assertEquals(572_205, c.totalSteps());
    }

    @Test
    void seedPostLnIsAPostNormReluModelWithAnUntiedHead() {
        RunConfig c = load("seed-post-ln.yaml");
        ModelConfig m = c.model();
        assertEquals(List.of("post", "relu"), List.of(m.norm(), m.activation()));
        assertFalse(m.tieEmbeddings());
        assertFalse(m.preNorm());
        assertEquals(List.of(257, 128, 4, 4), List.of(m.vocabSize(), m.dModel(), m.nLayer(), m.nHead()));
    }
}
