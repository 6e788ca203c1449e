package io.dtrain.hf;

import io.dtrain.config.ModelConfig;
import io.dtrain.model.GptNames;
import io.dtrain.model.ParamLayout;
import io.dtrain.model.ParamSpec;
import io.dtrain.optim.NioViews;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** model.init_from: reading GPT-2-layout safetensors back, by name, with the errors a user can act on. */
class HfImportTest {
    @TempDir
    Path tmp;

    static ModelConfig model(int dModel, boolean tied, boolean bias, String activation, String dtype) {
        return new ModelConfig(37, 8, dModel, 2, 2, 0, "pre", activation, 0.0, tied, bias, 0.02, 1e-5, dtype, "fused");
    }

    static INDArray randomParams(ParamLayout layout, DataType type, long seed) {
        INDArray p = Nd4j.create(type, layout.size());
        SplittableRandom rng = new SplittableRandom(seed);
        for (long i = 0; i < layout.size(); i++) {
            p.putScalar(i, rng.nextDouble(-1, 1));
        }
        return p;
    }

    private static ParamLayout layout(ModelConfig m) {
        return GptNames.layout(m, new int[] {m.nLayer()});
    }

    @Test
    void exportImportExportIsByteIdentical() throws IOException {
        for (ModelConfig m : List.of(model(8, true, true, "gelu", "float32"), model(8, false, false, "relu", "float32"),
                model(8, false, true, "gelu", "float64"))) {
            ParamLayout layout = layout(m);
            INDArray original = randomParams(layout, m.isDouble() ? DataType.DOUBLE : DataType.FLOAT, 7);
            Path first = tmp.resolve("first.safetensors");
            HfExport.writeModel(m, layout, original, first);

            INDArray imported = Nd4j.create(original.dataType(), layout.size());
            HfImport.load(first.toString(), m, layout, imported);
            assertEquals(original, imported, "imported parameters equal the exported ones: " + m);

            Path second = tmp.resolve("second.safetensors");
            HfExport.writeModel(m, layout, imported, second);
            assertArrayEquals(Files.readAllBytes(first), Files.readAllBytes(second), "byte-identical: " + m);
        }
    }

    @Test
    void theUntiedHeadIsStoredAsNnLinearVocabByDModel() throws IOException {
        ModelConfig m = model(8, false, true, "gelu", "float32");
        ParamLayout layout = layout(m);
        INDArray p = randomParams(layout, DataType.FLOAT, 3);
        Path file = tmp.resolve("m.safetensors");
        HfExport.writeModel(m, layout, p, file);
        Safetensors.Header h = Safetensors.readHeader(file);
        Safetensors.Entry head = h.tensors().get("lm_head.weight");
        assertArrayEquals(new long[] {37, 8}, head.shape());
        ByteBuffer b = Safetensors.readBytes(file, h, head);
        INDArray ours = layout.view(p, GptNames.LM_HEAD_WEIGHT);   // [d_model, vocab]
        assertEquals(ours.getFloat(5, 30), b.getFloat((30 * 8 + 5) * 4), "file[v][d] = dtrain[d][v]");
    }

    @Test
    void aPipelineStageReadsItsOwnTensorsByName() throws IOException {
        ModelConfig m = model(8, true, true, "gelu", "float32");
        INDArray full = randomParams(layout(m), DataType.FLOAT, 11);
        Path file = tmp.resolve("m.safetensors");
        HfExport.writeModel(m, layout(m), full, file);
        ParamLayout last = GptNames.stageLayout(m, new int[] {1, 1}, 1);   // h.1, ln_f and a replica of wte
        INDArray stage = Nd4j.create(DataType.FLOAT, last.size());
        HfImport.load(file.toString(), m, last, stage);
        for (ParamSpec s : last.specs()) {
            assertEquals(layout(m).view(full, s.name()), last.view(stage, s), s.name());
        }
    }

    @Test
    void aShapeThatDoesNotMatchNamesTheTensorAndBothShapes() throws IOException {
        ModelConfig m = model(8, true, true, "gelu", "float32");
        Path file = tmp.resolve("m.safetensors");
        HfExport.writeModel(m, layout(m), randomParams(layout(m), DataType.FLOAT, 1), file);
        ModelConfig wider = model(16, true, true, "gelu", "float32");
        ModelFileException e = assertThrows(ModelFileException.class, () ->
                HfImport.load(file.toString(), wider, layout(wider), Nd4j.create(DataType.FLOAT, layout(wider).size())));
        assertTrue(e.getMessage().contains("transformer.wte.weight is [37, 8] in the file but [37, 16] in"
                + " this configuration (model.vocab_size 37, seq_len 8, d_model 16"), e.getMessage());
    }

    @Test
    void missingAndExtraTensorsAreNamed() throws IOException {
        ModelConfig two = model(8, true, true, "gelu", "float32");
        Path file = tmp.resolve("m.safetensors");
        HfExport.writeModel(two, layout(two), randomParams(layout(two), DataType.FLOAT, 1), file);
        ModelConfig three = new ModelConfig(37, 8, 8, 3, 2, 0, "pre", "gelu", 0.0, true, true, 0.02, 1e-5, "float32", "fused");
        ModelFileException missing = assertThrows(ModelFileException.class, () ->
                HfImport.load(file.toString(), three, layout(three), Nd4j.create(DataType.FLOAT, layout(three).size())));
        assertTrue(missing.getMessage().contains("has no transformer.h.2.ln_1.weight"), missing.getMessage());
        ModelConfig one = new ModelConfig(37, 8, 8, 1, 2, 0, "pre", "gelu", 0.0, true, true, 0.02, 1e-5, "float32", "fused");
        ModelFileException extra = assertThrows(ModelFileException.class, () ->
                HfImport.load(file.toString(), one, layout(one), Nd4j.create(DataType.FLOAT, layout(one).size())));
        assertTrue(extra.getMessage().contains("has tensors this configuration does not: transformer.h.1."), extra.getMessage());
    }

    /**
     * A file as OpenAI's original conversion wrote GPT-2 (no transformer. prefix, the causal-mask buffers h.N.attn.bias,
     * a stored lm_head equal to wte) in half precision loads, converted to float32.
     */
    @Test
    void originalGpt2NamingMaskBuffersAndHalfPrecisionLoad() throws IOException {
        ModelConfig m = model(8, true, true, "gelu", "float32");
        ParamLayout layout = layout(m);
        List<Safetensors.Output> outputs = new ArrayList<>();
        SplittableRandom rng = new SplittableRandom(5);
        Map<String, short[]> halves = new java.util.HashMap<>();
        for (HfGpt2.Tensor t : HfGpt2.tensors(m)) {
            short[] v = new short[(int) HfExport.elements(t.hfShape())];
            for (int i = 0; i < v.length; i++) {
                v[i] = (short) (0x3000 + rng.nextInt(0x800));   // positive halves between 0.125 and 0.5
            }
            String bare = t.hfName().substring(HfGpt2.PREFIX.length());
            halves.put(t.source(), v);
            outputs.add(new Safetensors.Output(bare, Safetensors.Dtype.F16, t.hfShape(), out -> out.write(bytes(v))));
        }
        short[] wte = halves.get(GptNames.WTE);
        outputs.add(new Safetensors.Output("lm_head.weight", Safetensors.Dtype.F16, new long[] {37, 8},
                out -> out.write(bytes(wte))));
        outputs.add(new Safetensors.Output("h.0.attn.bias", Safetensors.Dtype.F16, new long[] {1, 1, 8, 8},
                out -> out.write(new byte[128])));
        Path file = tmp.resolve("original.safetensors");
        Safetensors.write(file, outputs, Map.of("format", "pt"));

        INDArray p = Nd4j.create(DataType.FLOAT, layout.size());
        HfImport.load(file.toString(), m, layout, p);
        short h = halves.get("h.1.mlp.c_fc.weight")[17];
        assertEquals(Safetensors.halfToFloat(h), layout.view(p, "h.1.mlp.c_fc.weight").getFloat(17));
        assertEquals(0.125f, Safetensors.halfToFloat((short) 0x3000));
        assertEquals(-2.0f, Safetensors.halfToFloat((short) 0xc000));
        assertEquals(0x1p-24f, Safetensors.halfToFloat((short) 0x0001));
    }

    @Test
    void aModelWithoutBiasesRefusesNonZeroBiases() throws IOException {
        ModelConfig withBias = model(8, true, true, "gelu", "float32");
        Path file = tmp.resolve("m.safetensors");
        HfExport.writeModel(withBias, layout(withBias), randomParams(layout(withBias), DataType.FLOAT, 1), file);
        ModelConfig noBias = model(8, true, false, "gelu", "float32");
        ModelFileException e = assertThrows(ModelFileException.class, () ->
                HfImport.load(file.toString(), noBias, layout(noBias), Nd4j.create(DataType.FLOAT, layout(noBias).size())));
        assertTrue(e.getMessage().contains("has non-zero values but model.bias is false"), e.getMessage());
    }

    @Test
    void aDirectorysConfigJsonMustAgreeOnHeadsAndActivation() throws IOException {
        ModelConfig m = model(8, true, true, "gelu", "float32");
        Path dir = Files.createDirectories(tmp.resolve("hf"));
        HfExport.writeModel(m, layout(m), randomParams(layout(m), DataType.FLOAT, 1), dir.resolve("model.safetensors"));
        Files.writeString(dir.resolve("config.json"), "{\"model_type\": \"gpt2\", \"n_head\": 4, \"activation_function\": \"gelu_new\"}");
        ModelFileException heads = assertThrows(ModelFileException.class, () ->
                HfImport.load(dir.toString(), m, layout(m), Nd4j.create(DataType.FLOAT, layout(m).size())));
        assertTrue(heads.getMessage().contains("says n_head 4 but model.n_head is 2"), heads.getMessage());
        Files.writeString(dir.resolve("config.json"), "{\"model_type\": \"gpt2\", \"n_head\": 2, \"activation_function\": \"gelu\"}");
        ModelFileException act = assertThrows(ModelFileException.class, () ->
                HfImport.load(dir.toString(), m, layout(m), Nd4j.create(DataType.FLOAT, layout(m).size())));
        assertTrue(act.getMessage().contains("activation_function \"gelu\" but model.activation is gelu"), act.getMessage());
        ModelFileException none = assertThrows(ModelFileException.class, () ->
                HfImport.load(tmp.resolve("nowhere").toString(), m, layout(m), Nd4j.create(DataType.FLOAT, layout(m).size())));
        assertTrue(none.getMessage().contains("does not exist"), none.getMessage());
    }

    @Test
    void aTruncatedFileIsNamed() throws IOException {
        ModelConfig m = model(8, true, true, "gelu", "float32");
        Path file = tmp.resolve("m.safetensors");
        HfExport.writeModel(m, layout(m), randomParams(layout(m), DataType.FLOAT, 1), file);
        byte[] all = Files.readAllBytes(file);
        Files.write(file, java.util.Arrays.copyOf(all, all.length - 100));
        ModelFileException e = assertThrows(ModelFileException.class, () ->
                HfImport.load(file.toString(), m, layout(m), Nd4j.create(DataType.FLOAT, layout(m).size())));
        assertTrue(e.getMessage().contains("truncated or corrupt"), e.getMessage());
    }

    private static byte[] bytes(short[] v) {
        ByteBuffer b = ByteBuffer.allocate(v.length * 2).order(ByteOrder.LITTLE_ENDIAN);
        for (short s : v) {
            b.putShort(s);
        }
        return b.array();
    }

    static float floatAt(INDArray p, long i) {
        return NioViews.floats(p, i, i + 1).get(0);
    }
}
