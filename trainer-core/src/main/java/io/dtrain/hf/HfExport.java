package io.dtrain.hf;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import io.dtrain.checkpoint.Checkpoint;
import io.dtrain.common.AtomicFiles;
import io.dtrain.config.ModelConfig;
import io.dtrain.config.RunConfig;
import io.dtrain.data.tokenizer.HfTokenizerFiles;
import io.dtrain.model.GptNames;
import io.dtrain.model.ParamLayout;
import io.dtrain.model.ParamSpec;
import io.dtrain.optim.NioViews;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

import java.io.IOException;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * {@code dtrain export --format hf}: a checkpoint as a Hugging Face GPT-2 model directory that
 * {@code GPT2LMHeadModel.from_pretrained(DIR)} and {@code AutoTokenizer.from_pretrained(DIR)} load:
 * {@code model.safetensors} (names, shapes and layout of {@link HfGpt2}), {@code config.json} and the tokenizer's
 * files ({@link HfTokenizerFiles}). Each file is written under a temporary name and renamed.
 */
public final class HfExport {
    public static final String MODEL_FILE = "model.safetensors";
    public static final String CONFIG_FILE = "config.json";
    /** The only metadata: transformers refuses a safetensors file whose {@code format} is not a framework it knows. */
    static final Map<String, String> METADATA = Map.of("format", "pt");
    private static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
    private static final int COPY_BYTES = 1 << 20;

    private HfExport() {
    }

    /** Writes the model of {@code ck} (trained with {@code cfg}) into {@code outDir}; returns the files written. */
    public static List<Path> export(Checkpoint ck, RunConfig cfg, Path outDir) {
        ModelConfig m = cfg.model();
        HfGpt2.requireExpressible(m, "export " + ck.directory() + " in GPT-2's layout");
        if (Files.exists(outDir) && !Files.isDirectory(outDir)) {
            throw new ModelFileException("--out " + outDir + " is a file; give a directory (created if missing)");
        }
        ParamLayout layout = GptNames.layout(m, new int[] {m.nLayer()});
        INDArray params = Nd4j.zeros(m.isDouble() ? DataType.DOUBLE : DataType.FLOAT, layout.size());
        ck.readParams(layout, params);
        try {
            Files.createDirectories(outDir);
            List<Path> written = new ArrayList<>();
            Path model = outDir.resolve(MODEL_FILE);
            writeModel(m, layout, params, model);
            written.add(model);
            HfTokenizerFiles.Written tok = HfTokenizerFiles.write(cfg.data().tokenizer(), cfg.data().tokenizerDir(),
                    m.seqLen(), outDir);
            Path config = outDir.resolve(CONFIG_FILE);
            AtomicFiles.writeString(config, JSON.writeValueAsString(HfGpt2.configJson(m, tok.eotId())) + "\n");
            written.add(config);
            written.addAll(tok.files());
            return written;
        } catch (IOException e) {
            throw new UncheckedIOException("exporting " + ck.directory() + " to " + outDir + ": " + e.getMessage(), e);
        }
    }

    /**
     * Writes the parameters {@code params} (laid out by {@code layout}, the whole model of {@code cfg}) as GPT-2's
     * {@code model.safetensors}: F32 for a float32 model, F64 for float64.
     */
    public static void writeModel(ModelConfig cfg, ParamLayout layout, INDArray params, Path file) throws IOException {
        NioViews.checkFlat("parameters", params);
        Safetensors.Dtype dtype = params.dataType() == DataType.DOUBLE ? Safetensors.Dtype.F64 : Safetensors.Dtype.F32;
        List<Safetensors.Output> outputs = new ArrayList<>();
        for (HfGpt2.Tensor t : HfGpt2.tensors(cfg)) {
            Safetensors.Data data;
            if (t.source() == null) {
                data = out -> zeros(out, elements(t.hfShape()) * dtype.bytes());
            } else if (t.transposed()) {
                data = out -> transposed(out, params, layout.spec(t.source()));
            } else {
                data = out -> copy(out, params, layout.spec(t.source()));
            }
            outputs.add(new Safetensors.Output(t.hfName(), dtype, t.hfShape(), data));
        }
        Safetensors.write(file, outputs, METADATA);
    }

    private static void copy(OutputStream out, INDArray params, ParamSpec s) throws IOException {
        byte[] chunk = new byte[COPY_BYTES];
        for (long from = s.offset(); from < s.end(); from += NioViews.MAX_CHUNK) {
            ByteBuffer b = NioViews.bytes(params, from, Math.min(s.end(), from + NioViews.MAX_CHUNK));
            while (b.hasRemaining()) {
                int n = Math.min(chunk.length, b.remaining());
                b.get(chunk, 0, n);
                out.write(chunk, 0, n);
            }
        }
    }

    /** dtrain's [rows, cols] tensor as [cols, rows] (the untied head: [d_model, vocab] to nn.Linear's [vocab, d_model]). */
    private static void transposed(OutputStream out, INDArray params, ParamSpec s) throws IOException {
        int rows = Math.toIntExact(s.shape()[0]);
        int cols = Math.toIntExact(s.shape()[1]);
        // slice(): index 0 at the tensor's first element (the view's position is its offset in the allocation)
        ByteBuffer src = NioViews.bytes(params, s.offset(), s.end()).slice().order(ByteOrder.LITTLE_ENDIAN);
        int es = (int) params.data().getElementSize();
        ByteBuffer row = ByteBuffer.allocate(rows * es).order(ByteOrder.LITTLE_ENDIAN);
        for (int c = 0; c < cols; c++) {
            row.clear();
            for (int r = 0; r < rows; r++) {
                int at = (r * cols + c) * es;
                if (es == 8) {
                    row.putDouble(src.getDouble(at));
                } else {
                    row.putFloat(src.getFloat(at));
                }
            }
            out.write(row.array(), 0, row.position());
        }
    }

    private static void zeros(OutputStream out, long bytes) throws IOException {
        byte[] chunk = new byte[(int) Math.min(COPY_BYTES, Math.max(1, bytes))];
        for (long left = bytes; left > 0; left -= chunk.length) {
            out.write(chunk, 0, (int) Math.min(chunk.length, left));
        }
    }

    static long elements(long[] shape) {
        long n = 1;
        for (long d : shape) {
            n *= d;
        }
        return n;
    }
}
