package io.dtrain.checkpoint;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.MissingNode;
import io.dtrain.model.ParamLayout;
import io.dtrain.model.ParamSpec;
import io.dtrain.optim.NioViews;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;

/**
 * A loaded checkpoint written by {@link CheckpointWriter}. {@link #load} parses the manifest and checks that
 * every tensor file exists with the size the manifest gives; the CRC32C of each file is verified whenever it
 * is read. Tensors are matched to a {@link ParamLayout} by name and shape, so any layout order or stage split
 * can be loaded, and float32/float64 are converted to the destination buffer's dtype. If a read fails with a
 * {@link CheckpointException}, the destination buffer's contents are unspecified.
 */
public final class Checkpoint {
    private static final ObjectMapper JSON = new ObjectMapper();

    /** One tensor file as described by the manifest. */
    public record TensorFile(String name, Path file, long[] shape, DataType dtype, long crc32c) {
        public long elements() {
            long n = 1;
            for (long d : shape) {
                n *= d;
            }
            return n;
        }
    }

    private final Path dir;
    private final JsonNode manifest;
    private final long step;
    private final Map<String, TensorFile> params;
    private final Map<String, TensorFile> adamM;
    private final Map<String, TensorFile> adamV;
    private final long adamStep;

    private Checkpoint(Path dir, JsonNode manifest, long step, Map<String, TensorFile> params,
                       Map<String, TensorFile> adamM, Map<String, TensorFile> adamV, long adamStep) {
        this.dir = dir;
        this.manifest = manifest;
        this.step = step;
        this.params = params;
        this.adamM = adamM;
        this.adamV = adamV;
        this.adamStep = adamStep;
    }

    /**
     * Loads a checkpoint from a step directory, a checkpoints directory (follows {@code latest}, or the newest
     * step directory if there is no {@code latest}) or a run directory (its {@code checkpoints/}).
     */
    public static Checkpoint load(Path path) throws CheckpointException {
        Path dir = findLatest(path).orElseThrow(() -> new CheckpointException("no checkpoint under " + path
                + ": it has no " + CheckpointFiles.MANIFEST + ", no " + CheckpointFiles.LATEST
                + " file and no step-NNNNNN directories; pass a run directory, its checkpoints/ directory or "
                + "one step-NNNNNN directory"));
        return loadStepDir(dir);
    }

    /**
     * The step directory {@link #load} would use, or empty if {@code path} holds no checkpoint at all (a fresh
     * run). Throws if {@code path} does not exist or {@code latest} is broken.
     */
    public static Optional<Path> findLatest(Path path) throws CheckpointException {
        if (!Files.isDirectory(path)) {
            throw new CheckpointException("no checkpoint under " + path + ": the directory does not exist");
        }
        if (Files.exists(path.resolve(CheckpointFiles.MANIFEST))
                || CheckpointFiles.stepOf(path.getFileName() == null ? "" : path.getFileName().toString()) >= 0) {
            return Optional.of(path);   // a step directory (loading reports a missing manifest)
        }
        Path checkpointsDir = path;
        if (!Files.exists(path.resolve(CheckpointFiles.LATEST)) && Files.isDirectory(path.resolve("checkpoints"))) {
            checkpointsDir = path.resolve("checkpoints");
        }
        List<Path> committed;
        try {
            committed = CheckpointFiles.committedStepDirs(checkpointsDir);
        } catch (IOException e) {
            throw new CheckpointException("cannot list " + checkpointsDir + ": " + e.getMessage(), e);
        }
        Path latestFile = checkpointsDir.resolve(CheckpointFiles.LATEST);
        if (Files.exists(latestFile)) {
            String name;
            try {
                name = Files.readString(latestFile, StandardCharsets.UTF_8).trim();
            } catch (IOException e) {
                throw new CheckpointException("cannot read " + latestFile + ": " + e.getMessage(), e);
            }
            if (CheckpointFiles.stepOf(name) < 0) {
                throw new CheckpointException("no checkpoint under " + checkpointsDir + ": " + latestFile
                        + " should name a step-NNNNNN directory but says '" + name + "'; " + fixLatestHint(committed));
            }
            Path target = checkpointsDir.resolve(name);
            if (!Files.isDirectory(target)) {
                throw new CheckpointException("no checkpoint under " + checkpointsDir + ": " + latestFile
                        + " names " + name + " but " + target + " does not exist; " + fixLatestHint(committed));
            }
            return Optional.of(target);
        }
        // No `latest`: a crash between the rename and the pointer update; the newest committed one is complete.
        return committed.isEmpty() ? Optional.empty() : Optional.of(committed.get(committed.size() - 1));
    }

    private static String fixLatestHint(List<Path> committed) {
        if (committed.isEmpty()) {
            return "there are no step-NNNNNN directories left: start without resuming";
        }
        List<String> names = new ArrayList<>();
        for (Path p : committed) {
            names.add(p.getFileName().toString());
        }
        return "write one of " + names + " into it, or pass a step directory explicitly";
    }

    private static Checkpoint loadStepDir(Path dir) {
        Path manifestFile = dir.resolve(CheckpointFiles.MANIFEST);
        if (!Files.exists(manifestFile)) {
            throw new CheckpointException("no checkpoint in " + dir + ": " + manifestFile + " is missing, so the "
                    + "checkpoint is incomplete or not a dtrain checkpoint; resume from another step directory");
        }
        JsonNode m;
        try {
            m = JSON.readTree(Files.readAllBytes(manifestFile));
        } catch (JsonProcessingException e) {
            throw new CheckpointException("cannot parse " + manifestFile + " (" + e.getOriginalMessage()
                    + "): the manifest is corrupt; resume from an older step directory", e);
        } catch (IOException e) {
            throw new CheckpointException("cannot read " + manifestFile + ": " + e.getMessage(), e);
        }
        if (m == null || !m.isObject()) {
            throw new CheckpointException("cannot parse " + manifestFile + ": expected a JSON object; the manifest "
                    + "is corrupt, resume from an older step directory");
        }
        int version = requireLong(m, "format_version", manifestFile).intValue();
        if (version != CheckpointFiles.FORMAT_VERSION) {
            throw new CheckpointException(manifestFile + ": format_version " + version + " is not supported by this "
                    + "dtrain (" + CheckpointWriter.version() + ", reads version " + CheckpointFiles.FORMAT_VERSION
                    + "); use the dtrain version that wrote it");
        }
        long step = requireLong(m, "step", manifestFile);
        Map<String, TensorFile> params = tensorEntries(dir, manifestFile, requireObject(m, "tensors", manifestFile),
                "tensors", null);
        Map<String, TensorFile> mm = Collections.emptyMap();
        Map<String, TensorFile> vv = Collections.emptyMap();
        long adamStep = 0;
        JsonNode opt = m.get("optimizer");
        if (opt != null && !opt.isNull()) {
            adamStep = requireLong(opt, "step", manifestFile);
            JsonNode ot = requireObject(opt, "tensors", manifestFile);
            mm = tensorEntries(dir, manifestFile, ot, "optimizer.tensors", "m");
            vv = tensorEntries(dir, manifestFile, ot, "optimizer.tensors", "v");
        }
        return new Checkpoint(dir, m, step, params, mm, vv, adamStep);
    }

    private static Map<String, TensorFile> tensorEntries(Path dir, Path manifestFile, JsonNode tensors, String key,
                                                         String sub) {
        Map<String, TensorFile> out = new LinkedHashMap<>();
        Iterator<Map.Entry<String, JsonNode>> it = tensors.fields();
        while (it.hasNext()) {
            Map.Entry<String, JsonNode> e = it.next();
            String where = key + "." + e.getKey() + (sub == null ? "" : "." + sub);
            JsonNode t = sub == null ? e.getValue() : e.getValue().get(sub);
            if (t == null || !t.isObject()) {
                throw corruptManifest(manifestFile, where, "is missing or not an object");
            }
            JsonNode file = t.get("file");
            JsonNode shape = t.get("shape");
            JsonNode dtype = t.get("dtype");
            JsonNode crc = t.get("crc32c");
            if (file == null || !file.isTextual() || shape == null || !shape.isArray() || dtype == null
                    || crc == null || !crc.isTextual()) {
                throw corruptManifest(manifestFile, where, "needs file, shape, dtype and crc32c");
            }
            Path f = dir.resolve(file.asText()).normalize();
            if (!f.startsWith(dir.normalize())) {
                throw corruptManifest(manifestFile, where + ".file", "points outside the checkpoint: " + file.asText());
            }
            long[] s = new long[shape.size()];
            for (int i = 0; i < s.length; i++) {
                if (!shape.get(i).canConvertToLong() || shape.get(i).asLong() < 0) {
                    throw corruptManifest(manifestFile, where + ".shape", "has a bad dimension " + shape.get(i));
                }
                s[i] = shape.get(i).asLong();
            }
            DataType dt = CheckpointFiles.dtypeOf(dtype.asText());
            if (dt == null) {
                throw corruptManifest(manifestFile, where + ".dtype", "'" + dtype.asText()
                        + "' is not float32 or float64");
            }
            long crcValue;
            try {
                crcValue = Long.parseLong(crc.asText(), 16);
            } catch (NumberFormatException ex) {
                throw corruptManifest(manifestFile, where + ".crc32c", "'" + crc.asText() + "' is not hex");
            }
            TensorFile tf = new TensorFile(e.getKey(), f, s, dt, crcValue);
            checkFileSize(tf);
            out.put(e.getKey(), tf);
        }
        return out;
    }

    private static void checkFileSize(TensorFile t) {
        if (!Files.isRegularFile(t.file())) {
            throw new CheckpointException("missing tensor file " + t.file() + " for " + t.name()
                    + ": the checkpoint is incomplete; resume from an older step directory");
        }
        long expected = t.elements() * CheckpointFiles.elementBytes(t.dtype());
        long actual;
        try {
            actual = Files.size(t.file());
        } catch (IOException e) {
            throw new CheckpointException("cannot read " + t.file() + ": " + e.getMessage(), e);
        }
        if (actual != expected) {
            throw new CheckpointException(t.file() + " has " + actual + " bytes but the manifest says "
                    + t.name() + " is " + Arrays.toString(t.shape()) + " " + CheckpointFiles.dtypeName(t.dtype())
                    + " = " + expected + " bytes: the file is truncated or corrupt; resume from an older step "
                    + "directory");
        }
    }

    private static CheckpointException corruptManifest(Path manifestFile, String key, String what) {
        return new CheckpointException(manifestFile + ": " + key + " " + what + "; the manifest is corrupt, resume "
                + "from an older step directory");
    }

    private static Long requireLong(JsonNode n, String key, Path manifestFile) {
        JsonNode v = n.get(key);
        if (v == null || !v.canConvertToLong()) {
            throw corruptManifest(manifestFile, key, "is missing or not an integer");
        }
        return v.asLong();
    }

    private static JsonNode requireObject(JsonNode n, String key, Path manifestFile) {
        JsonNode v = n.get(key);
        if (v == null || !v.isObject()) {
            throw corruptManifest(manifestFile, key, "is missing or not an object");
        }
        return v;
    }

    /** Reads every parameter of {@code layout}, by name, into the flat buffer {@code into}. */
    public void readParams(ParamLayout layout, INDArray into) throws CheckpointException {
        readRange(layout, 0, layout.size(), params, "parameter", into, layout.size());
    }

    public boolean hasOptimizerState() {
        return !adamM.isEmpty() || manifest.has("optimizer");
    }

    /** AdamW step count (bias correction) at save time. */
    public long adamStep() {
        requireOptimizer();
        return adamStep;
    }

    /** Reads the AdamW moments of every parameter of {@code layout} into full-length flat buffers. */
    public void readOptimizer(ParamLayout layout, INDArray m, INDArray v) throws CheckpointException {
        readOptimizerShard(layout, 0, layout.size(), m, v);
    }

    /**
     * Reads the AdamW moments of elements {@code [from, to)} of {@code layout} into buffers of length
     * {@code to - from} (a ZeRO-1 shard, as {@code AdamW.m()} of an optimizer built for that range).
     */
    public void readOptimizerShard(ParamLayout layout, long from, long to, INDArray m, INDArray v)
            throws CheckpointException {
        requireOptimizer();
        readRange(layout, from, to, adamM, "AdamW m of", m, to - from);
        readRange(layout, from, to, adamV, "AdamW v of", v, to - from);
    }

    private void requireOptimizer() {
        if (!hasOptimizerState()) {
            throw new CheckpointException(dir + " has no optimizer state (it was written without AdamW moments); "
                    + "start the optimizer fresh or resume from a full checkpoint");
        }
    }

    private void readRange(ParamLayout layout, long from, long to, Map<String, TensorFile> files, String what,
                           INDArray dest, long destLength) {
        NioViews.checkFlat("destination", dest);
        if (from < 0 || to < from || to > layout.size()) {
            throw new IllegalArgumentException("range [" + from + ", " + to + ") is outside the layout of "
                    + layout.size() + " elements");
        }
        if (dest.length() != destLength) {
            throw new IllegalArgumentException("destination buffer has " + dest.length() + " elements, expected "
                    + destLength);
        }
        for (ParamSpec s : layout.specs()) {
            long a = Math.max(from, s.offset());
            long b = Math.min(to, s.end());
            if (a >= b) {
                continue;
            }
            TensorFile t = files.get(s.name());
            if (t == null) {
                throw new CheckpointException(dir.resolve(CheckpointFiles.MANIFEST) + " has no " + what + " "
                        + s.name() + " (it has " + files.size() + " tensors" + sample(files.keySet())
                        + "): the model config does not match the checkpoint's; use the config stored in the "
                        + "manifest");
            }
            checkShape(t, s);
            long crc;
            try {
                crc = CheckpointFiles.readTensor(t.file(), t.dtype(), t.elements(), a - s.offset(), b - s.offset(),
                        dest, a - from);
            } catch (IOException e) {
                throw new CheckpointException("cannot read " + t.file() + " (" + s.name() + "): " + e.getMessage(), e);
            }
            if (crc != t.crc32c()) {
                throw new CheckpointException("checksum mismatch in " + t.file() + " (" + s.name() + "): crc32c is "
                        + CheckpointFiles.crcHex(crc) + ", the manifest says " + CheckpointFiles.crcHex(t.crc32c())
                        + "; the file is corrupt, resume from an older step directory");
            }
        }
    }

    private static void checkShape(TensorFile t, ParamSpec s) {
        if (t.elements() != s.size()) {
            throw new CheckpointException(s.name() + ": file has " + t.elements() + " values, layout expects "
                    + Arrays.toString(s.shape()) + " (" + t.file() + "); the model config does not match the "
                    + "checkpoint's");
        }
        if (!Arrays.equals(t.shape(), s.shape())) {
            throw new CheckpointException(s.name() + ": checkpoint shape " + Arrays.toString(t.shape())
                    + ", layout expects " + Arrays.toString(s.shape()) + " (" + t.file() + "); the model config "
                    + "does not match the checkpoint's");
        }
    }

    private static String sample(Set<String> names) {
        List<String> first = new ArrayList<>();
        for (String n : names) {
            if (first.size() == 3) {
                break;
            }
            first.add(n);
        }
        return first.isEmpty() ? "" : ", e.g. " + String.join(", ", first);
    }

    /** Reads every tensor file once and checks its checksum, without keeping the data. */
    public void verify() throws CheckpointException {
        List<TensorFile> all = new ArrayList<>(params.values());
        all.addAll(adamM.values());
        all.addAll(adamV.values());
        for (TensorFile t : all) {
            long crc;
            try {
                crc = CheckpointFiles.readTensor(t.file(), t.dtype(), t.elements(), 0, 0, null, 0);
            } catch (IOException e) {
                throw new CheckpointException("cannot read " + t.file() + " (" + t.name() + "): " + e.getMessage(), e);
            }
            if (crc != t.crc32c()) {
                throw new CheckpointException("checksum mismatch in " + t.file() + " (" + t.name() + "): crc32c is "
                        + CheckpointFiles.crcHex(crc) + ", the manifest says " + CheckpointFiles.crcHex(t.crc32c())
                        + "; the file is corrupt, resume from an older step directory");
            }
        }
    }

    /** The step directory. */
    public Path directory() {
        return dir;
    }

    public long step() {
        return step;
    }

    /** {@code tokens_seen} from the manifest, or -1 if it was not written. */
    public long tokensSeen() {
        JsonNode t = manifest.get("tokens_seen");
        return t != null && t.canConvertToLong() ? t.asLong() : -1;
    }

    /** The resolved config stored under {@code config}, or a MissingNode. */
    public JsonNode config() {
        JsonNode c = manifest.get("config");
        return c != null ? c : MissingNode.getInstance();
    }

    /** Every manifest entry that the writer got through {@code extra} (rng, loader, config, tokens_seen, ...). */
    public Map<String, Object> extra() {
        Map<String, Object> out = new LinkedHashMap<>();
        Iterator<Map.Entry<String, JsonNode>> it = manifest.fields();
        while (it.hasNext()) {
            Map.Entry<String, JsonNode> e = it.next();
            if (!CheckpointWriter.RESERVED.contains(e.getKey())) {
                out.put(e.getKey(), JSON.convertValue(e.getValue(), Object.class));
            }
        }
        return out;
    }

    /** The whole manifest. */
    public JsonNode manifest() {
        return manifest;
    }

    /** Names of the parameter tensors, in the order they were written. */
    public Set<String> paramNames() {
        return Collections.unmodifiableSet(params.keySet());
    }

    public TensorFile param(String name) {
        TensorFile t = params.get(name);
        if (t == null) {
            throw new CheckpointException(dir + " has no parameter " + name);
        }
        return t;
    }

    @Override
    public String toString() {
        return "Checkpoint{" + dir + ", step " + step + ", " + params.size() + " tensors"
                + (hasOptimizerState() ? ", AdamW step " + adamStep : "") + "}";
    }
}
