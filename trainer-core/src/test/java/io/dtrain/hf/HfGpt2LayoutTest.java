package io.dtrain.hf;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.dtrain.config.ConfigLoader;
import io.dtrain.config.ModelConfig;
import io.dtrain.model.GptNames;
import io.dtrain.model.ParamLayout;
import io.dtrain.optim.NioViews;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The exported layout is GPT-2 small's as Hugging Face publishes it (gpt2's model.safetensors and config.json),
 * written out here by hand: names, F32, shapes, Conv1D [in, out] weights, no lm_head (tied).
 */
class HfGpt2LayoutTest {
    @TempDir
    Path tmp;

    static Path repoRoot() {
        return Path.of(System.getProperty("dtrain.repo.root", "..")).toAbsolutePath().normalize();
    }

    static ModelConfig gpt2Small(String... overrides) {
        return ConfigLoader.load(Path.of("configs", "gpt2-124m.yaml"), List.of(overrides), repoRoot()).model();
    }

    /** GPT-2 small's tensors (the first {@code layers} blocks), as in Hugging Face's gpt2 checkpoint. */
    static Map<String, List<Long>> publishedGpt2Small(int layers) {
        Map<String, List<Long>> m = new TreeMap<>();
        m.put("transformer.wte.weight", List.of(50257L, 768L));
        m.put("transformer.wpe.weight", List.of(1024L, 768L));
        for (int i = 0; i < layers; i++) {
            String h = "transformer.h." + i + ".";
            m.put(h + "ln_1.weight", List.of(768L));
            m.put(h + "ln_1.bias", List.of(768L));
            m.put(h + "attn.c_attn.weight", List.of(768L, 2304L));
            m.put(h + "attn.c_attn.bias", List.of(2304L));
            m.put(h + "attn.c_proj.weight", List.of(768L, 768L));
            m.put(h + "attn.c_proj.bias", List.of(768L));
            m.put(h + "ln_2.weight", List.of(768L));
            m.put(h + "ln_2.bias", List.of(768L));
            m.put(h + "mlp.c_fc.weight", List.of(768L, 3072L));
            m.put(h + "mlp.c_fc.bias", List.of(3072L));
            m.put(h + "mlp.c_proj.weight", List.of(3072L, 768L));
            m.put(h + "mlp.c_proj.bias", List.of(768L));
        }
        m.put("transformer.ln_f.weight", List.of(768L));
        m.put("transformer.ln_f.bias", List.of(768L));
        return m;
    }

    private static Map<String, List<Long>> shapes(List<HfGpt2.Tensor> tensors) {
        Map<String, List<Long>> m = new TreeMap<>();
        for (HfGpt2.Tensor t : tensors) {
            m.put(t.hfName(), Arrays.stream(t.hfShape()).boxed().toList());
        }
        return m;
    }

    @Test
    void gpt2_124mHasGpt2SmallsPublishedTensors() {
        Map<String, List<Long>> published = publishedGpt2Small(12);
        assertEquals(12 * 12 + 4, published.size());
        long count = published.values().stream().mapToLong(s -> s.stream().reduce(1L, (a, b) -> a * b)).sum();
        assertEquals(124_439_808L, count, "GPT-2 small's parameter count");
        assertEquals(published, shapes(HfGpt2.tensors(gpt2Small())));
    }

    @Test
    void gpt2_124msConfigJsonHasGpt2SmallsPublishedValues() {
        Map<String, Object> c = HfGpt2.configJson(gpt2Small(), 50256);
        Map<String, Object> published = Map.ofEntries(Map.entry("model_type", "gpt2"),
                Map.entry("architectures", List.of("GPT2LMHeadModel")), Map.entry("vocab_size", 50257),
                Map.entry("n_positions", 1024), Map.entry("n_ctx", 1024), Map.entry("n_embd", 768),
                Map.entry("n_layer", 12), Map.entry("n_head", 12), Map.entry("activation_function", "gelu_new"),
                Map.entry("layer_norm_epsilon", 1e-5), Map.entry("bos_token_id", 50256), Map.entry("eos_token_id", 50256),
                Map.entry("initializer_range", 0.02), Map.entry("resid_pdrop", 0.0), Map.entry("tie_word_embeddings", true));
        published.forEach((k, v) -> assertEquals(v, c.get(k), k));
        assertEquals(null, c.get("n_inner"), "n_inner null = 4 x n_embd, as GPT-2's config");
    }

    /**
     * A written file, read back with a parser of the test's own: the header lists GPT-2 small's tensors (one block,
     * to keep the file at 185 MB), all F32, back to back in name order, and each holds dtrain's tensor unchanged
     * ([in, out], C order).
     */
    @Test
    void theWrittenFileHasTheLayoutAndTheValues() throws IOException {
        ModelConfig m = gpt2Small("model.n_layer=1");
        ParamLayout layout = GptNames.layout(m, new int[] {1});
        INDArray params = Nd4j.create(DataType.FLOAT, layout.size());
        var floats = NioViews.floats(params, 0, layout.size());
        for (int i = 0; i < layout.size(); i++) {
            floats.put(i, (i % 1000) * 0.001f - 0.5f);
        }
        Path file = tmp.resolve("model.safetensors");
        HfExport.writeModel(m, layout, params, file);

        JsonNode header;
        long headerLength;
        try (FileChannel ch = FileChannel.open(file)) {
            ByteBuffer len = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
            ch.read(len, 0);
            headerLength = len.getLong(0);
            ByteBuffer h = ByteBuffer.allocate((int) headerLength);
            ch.read(h, 8);
            header = new ObjectMapper().readTree(new String(h.array(), StandardCharsets.UTF_8));
        }
        assertEquals(0, (8 + headerLength) % 8, "data aligned to 8 bytes");
        assertEquals("pt", header.path("__metadata__").path("format").asText());
        Map<String, List<Long>> shapes = new TreeMap<>();
        long expectedOffset = 0;
        String previous = "";
        for (Iterator<Map.Entry<String, JsonNode>> it = header.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            if (e.getKey().equals("__metadata__")) {
                continue;
            }
            assertTrue(e.getKey().compareTo(previous) > 0, "tensors in name order");
            previous = e.getKey();
            assertEquals("F32", e.getValue().path("dtype").asText(), e.getKey());
            List<Long> shape = new java.util.ArrayList<>();
            e.getValue().path("shape").forEach(d -> shape.add(d.asLong()));
            shapes.put(e.getKey(), shape);
            long size = 4L * shape.stream().reduce(1L, (a, b) -> a * b);
            assertEquals(expectedOffset, e.getValue().path("data_offsets").get(0).asLong(), e.getKey());
            assertEquals(expectedOffset + size, e.getValue().path("data_offsets").get(1).asLong(), e.getKey());
            expectedOffset += size;
        }
        assertEquals(publishedGpt2Small(1), shapes);
        assertEquals(8 + headerLength + expectedOffset, Files.size(file));

        // Element [3][1000] of c_attn.weight ([768, 2304], row-major [in, out]) is dtrain's element at 3 x 2304 + 1000.
        long dataStart = 8 + headerLength;
        long cAttn = header.path("transformer.h.0.attn.c_attn.weight").path("data_offsets").get(0).asLong();
        long index = 3L * 2304 + 1000;
        try (FileChannel ch = FileChannel.open(file)) {
            ByteBuffer v = ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN);
            ch.read(v, dataStart + cAttn + 4 * index);
            assertEquals(floats.get((int) (layout.spec("h.0.attn.c_attn.weight").offset() + index)), v.getFloat(0));
        }
    }

    @Test
    void postLayerNormIsRefusedWithTheReason() {
        ModelConfig post = gpt2Small("model.norm=post");
        ModelFileException e = assertThrows(ModelFileException.class, () -> HfGpt2.requireExpressible(post, "export x"));
        assertTrue(e.getMessage().contains("model.norm is 'post'") && e.getMessage().contains("pre-LN"), e.getMessage());
    }

    @Test
    void reluAndNoBiasHaveDocumentedAlternatives() {
        ModelConfig m = gpt2Small("model.activation=relu", "model.bias=false", "model.tie_embeddings=false");
        assertEquals("relu", HfGpt2.configJson(m, 50256).get("activation_function"));
        List<HfGpt2.Tensor> tensors = HfGpt2.tensors(m);
        HfGpt2.Tensor bias = tensors.stream().filter(t -> t.hfName().equals("transformer.h.0.attn.c_attn.bias"))
                .findFirst().orElseThrow();
        assertEquals(null, bias.source(), "a zero bias");
        HfGpt2.Tensor head = tensors.stream().filter(t -> t.hfName().equals("lm_head.weight")).findFirst().orElseThrow();
        assertEquals(List.of(50257L, 768L), Arrays.stream(head.hfShape()).boxed().toList(), "nn.Linear [out, in]");
        assertTrue(head.transposed());
    }
}
