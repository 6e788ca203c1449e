package io.dtrain.hf;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.dtrain.config.ModelConfig;
import io.dtrain.model.GptNames;
import io.dtrain.model.ParamLayout;
import io.dtrain.model.ParamSpec;
import io.dtrain.optim.NioViews;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * {@code model.init_from}: GPT-2-layout weights (a {@code model.safetensors} that {@code dtrain export} or
 * Hugging Face wrote, or a model directory holding one) read by name into the trainer's flat parameters, converted
 * to the model's dtype (F32, F64, F16 and BF16 are read). Every tensor the configuration needs must be in the file
 * with the shape the configuration gives it; names with or without the {@code transformer.} prefix are accepted and
 * GPT-2's causal-mask buffers ignored. A tied model accepts a stored {@code lm_head.weight} only if it equals
 * {@code wte}; a model without biases accepts only zero biases. A directory's {@code config.json}, when present, must
 * agree on what shapes cannot show (heads, activation, LayerNorm epsilon).
 */
public final class HfImport {
    private static final ObjectMapper JSON = new ObjectMapper();

    private final Path file;
    private final ModelConfig cfg;
    private final Safetensors.Header header;
    /** dtrain name (or the HF name of a zero bias) -> the file's entry. */
    private final Map<String, Safetensors.Entry> byName = new LinkedHashMap<>();

    private HfImport(Path file, ModelConfig cfg, Safetensors.Header header) {
        this.file = file;
        this.cfg = cfg;
        this.header = header;
    }

    /**
     * Reads the weights at {@code path} into {@code params}, laid out by {@code layout} (the whole model's or one
     * pipeline stage's, whose tensors are found by name). Returns the safetensors file read.
     */
    public static Path load(String path, ModelConfig cfg, ParamLayout layout, INDArray params) {
        Path location = Path.of(path);
        HfGpt2.requireExpressible(cfg, "start from " + path + " (model.init_from)");
        Path file = location;
        if (Files.isDirectory(location)) {
            file = location.resolve(HfExport.MODEL_FILE);
            if (!Files.isRegularFile(file)) {
                throw new ModelFileException("model.init_from: " + location + " has no " + HfExport.MODEL_FILE
                        + (Files.exists(location.resolve("pytorch_model.bin")) ? " (only pytorch_model.bin, which dtrain"
                        + " does not read: save the model with safe_serialization=True)" : "")
                        + "; give a Hugging Face GPT-2 model directory or a .safetensors file");
            }
            checkConfigJson(location.resolve(HfExport.CONFIG_FILE), cfg);
        } else if (!Files.isRegularFile(location)) {
            throw new ModelFileException("model.init_from: " + location + " does not exist; give a .safetensors file or"
                    + " a Hugging Face GPT-2 model directory");
        }
        try {
            HfImport in = new HfImport(file, cfg, Safetensors.readHeader(file));
            in.matchNames();
            in.read(layout, params);
            return file;
        } catch (IOException e) {
            throw new UncheckedIOException("reading " + file + " (model.init_from): " + e.getMessage(), e);
        }
    }

    /** Pairs the file's tensors with the configuration's: every one present, with the right shape, nothing left over. */
    private void matchNames() throws IOException {
        Map<String, Safetensors.Entry> fileTensors = new LinkedHashMap<>();
        for (Safetensors.Entry e : header.tensors().values()) {
            String name = HfGpt2.dtrainName(e.name());
            if (name != null) {
                fileTensors.put(name, e);
            }
        }
        List<String> missing = new ArrayList<>();
        for (HfGpt2.Tensor t : HfGpt2.tensors(cfg)) {
            String name = HfGpt2.dtrainName(t.hfName());
            Safetensors.Entry e = fileTensors.remove(name);
            if (e == null) {
                missing.add(t.hfName());
                continue;
            }
            if (!Arrays.equals(e.shape(), t.hfShape())) {
                throw new ModelFileException("model.init_from: " + file + ": " + e.name() + " is " + e.shapeText()
                        + " in the file but " + Arrays.toString(t.hfShape()) + " in this configuration ("
                        + shapeKeys() + "); set the model keys to the file's shapes");
            }
            byName.put(t.source() != null ? t.source() : t.hfName(), e);
            if (t.source() == null) {
                requireZero(e, "model.bias is false; set model.bias: true to use them");
            }
        }
        if (!missing.isEmpty()) {
            throw new ModelFileException("model.init_from: " + file + " has no " + String.join(", ", first(missing))
                    + " (" + missing.size() + " of the configuration's tensors missing; " + shapeKeys()
                    + "); it is not a GPT-2 model of this shape");
        }
        Safetensors.Entry head = fileTensors.remove(GptNames.LM_HEAD_WEIGHT);
        if (head != null) {
            requireTiedCopy(head);
        }
        if (!fileTensors.isEmpty()) {
            List<String> extra = fileTensors.values().stream().map(Safetensors.Entry::name).toList();
            throw new ModelFileException("model.init_from: " + file + " has tensors this configuration does not: "
                    + String.join(", ", first(extra)) + " (" + extra.size() + " in all; " + shapeKeys()
                    + "); set the model keys to the file's model");
        }
    }

    /** A tied model reads no head; a stored one must be wte itself (some conversions store both). */
    private void requireTiedCopy(Safetensors.Entry head) throws IOException {
        Safetensors.Entry wte = byName.get(GptNames.WTE);
        if (!Arrays.equals(head.shape(), wte.shape())
                || !Safetensors.readBytes(file, header, head).equals(Safetensors.readBytes(file, header, wte))) {
            throw new ModelFileException("model.init_from: " + file + " has an lm_head.weight that differs from"
                    + " transformer.wte.weight, but model.tie_embeddings is true; set model.tie_embeddings: false");
        }
    }

    private void requireZero(Safetensors.Entry e, String fix) throws IOException {
        ByteBuffer b = Safetensors.readBytes(file, header, e);
        for (int i = 0; i < e.elements(); i++) {
            if (Safetensors.value(b, e.dtype(), i) != 0) {
                throw new ModelFileException("model.init_from: " + file + ": " + e.name() + " has non-zero values"
                        + " but " + fix);
            }
        }
    }

    private void read(ParamLayout layout, INDArray params) throws IOException {
        NioViews.checkFlat("parameters", params);
        if (params.length() != layout.size()) {
            throw new IllegalArgumentException("parameters have " + params.length() + " elements, the layout "
                    + layout.size());
        }
        boolean dbl = params.dataType() == DataType.DOUBLE;
        for (ParamSpec s : layout.specs()) {
            Safetensors.Entry e = byName.get(s.name());
            if (e == null) {
                throw new IllegalStateException("no tensor matched for " + s.name());
            }
            ByteBuffer src = Safetensors.readBytes(file, header, e);
            // slice(): index 0 at the tensor's first element (the view's position is its offset in the allocation)
            ByteBuffer dst = NioViews.bytes(params, s.offset(), s.end()).slice().order(ByteOrder.LITTLE_ENDIAN);
            int es = dbl ? 8 : 4;
            boolean transposed = s.name().equals(GptNames.LM_HEAD_WEIGHT);
            int rows = transposed ? Math.toIntExact(s.shape()[0]) : 0;
            int cols = transposed ? Math.toIntExact(s.shape()[1]) : 0;
            for (int i = 0; i < s.size(); i++) {
                // dtrain's head is [d_model, vocab]; the file's [vocab, d_model]
                int from = transposed ? (i % cols) * rows + i / cols : i;
                double v = Safetensors.value(src, e.dtype(), from);
                if (dbl) {
                    dst.putDouble(i * es, v);
                } else {
                    dst.putFloat(i * es, (float) v);
                }
            }
        }
    }

    private static void checkConfigJson(Path configFile, ModelConfig cfg) {
        if (!Files.isRegularFile(configFile)) {
            return;
        }
        JsonNode c;
        try {
            c = JSON.readTree(configFile.toFile());
        } catch (IOException e) {
            throw new ModelFileException("model.init_from: " + configFile + " is not valid JSON: " + e.getMessage(), e);
        }
        String type = c.path("model_type").asText("gpt2");
        if (!type.equals("gpt2")) {
            throw new ModelFileException("model.init_from: " + configFile + " says model_type \"" + type + "\"; dtrain"
                    + " reads GPT-2 models (model_type \"gpt2\") only");
        }
        requireEqual(configFile, "n_head", c.path("n_head").asInt(cfg.nHead()), "model.n_head", cfg.nHead());
        String act = c.path("activation_function").asText(HfGpt2.hfActivation(cfg.activation()));
        if (!HfGpt2.sameActivation(act, cfg.activation())) {
            throw new ModelFileException("model.init_from: " + configFile + " says activation_function \"" + act
                    + "\" but model.activation is " + cfg.activation() + " (GPT-2's name for it: \""
                    + HfGpt2.hfActivation(cfg.activation()) + "\"); dtrain computes gelu_new (tanh GELU) and relu");
        }
        double eps = c.path("layer_norm_epsilon").asDouble(cfg.layerNormEps());
        if (eps != cfg.layerNormEps()) {
            throw new ModelFileException("model.init_from: " + configFile + " says layer_norm_epsilon " + eps
                    + " but model.layer_norm_eps is " + cfg.layerNormEps() + "; set model.layer_norm_eps: " + eps);
        }
    }

    private static void requireEqual(Path file, String key, int value, String ourKey, int ours) {
        if (value != ours) {
            throw new ModelFileException("model.init_from: " + file + " says " + key + " " + value + " but " + ourKey
                    + " is " + ours + "; set " + ourKey + ": " + value);
        }
    }

    private String shapeKeys() {
        return "model.vocab_size " + cfg.vocabSize() + ", seq_len " + cfg.seqLen() + ", d_model " + cfg.dModel()
                + ", n_layer " + cfg.nLayer() + ", d_ff " + cfg.ffWidth() + ", tie_embeddings " + cfg.tieEmbeddings();
    }

    private static List<String> first(List<String> names) {
        return names.size() <= 5 ? names : names.subList(0, 5);
    }
}
