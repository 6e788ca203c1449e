package io.dtrain.checkpoint;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.PropertyNamingStrategies;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.dtrain.model.ParamLayout;
import io.dtrain.model.ParamSpec;
import io.dtrain.optim.NioViews;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.UUID;

/**
 * Writes a checkpoint of named tensors and commits it atomically:
 *
 * <pre>
 * checkpointsDir/
 *   step-000120/                  written as .tmp-step-000120-&lt;random&gt;/, fsynced, then renamed
 *     manifest.json               format_version, step, dtype, tensors {name: {file, shape, dtype, bytes, crc32c}},
 *                                 optimizer {type, step, tensors {name: {m: {...}, v: {...}}}},
 *                                 every entry of {@code extra} (tokens_seen, rng, loader, config, ...),
 *                                 written_at, dtrain_version
 *     params/&lt;name&gt;.bin          raw little-endian values, C order, one file per parameter
 *     optim/&lt;name&gt;.m.bin, optim/&lt;name&gt;.v.bin
 *   latest                        "step-000120\n", replaced atomically after the rename
 * </pre>
 *
 * Only after the new checkpoint and {@code latest} are committed are older checkpoints deleted (keeping the
 * newest {@code keepLast} by step, always including the one just written) and leftovers of killed writes
 * ({@code .tmp-*}) removed. A crash at any point leaves either the previous or the new checkpoint loadable.
 */
public final class CheckpointWriter {
    /** Top-level manifest keys that {@code extra} may not use. */
    static final Set<String> RESERVED = Set.of("format_version", "step", "dtype", "tensors", "optimizer",
            "written_at", "dtrain_version");

    static final ObjectMapper JSON = new ObjectMapper()
            .setPropertyNamingStrategy(PropertyNamingStrategies.SNAKE_CASE)
            .enable(SerializationFeature.INDENT_OUTPUT);

    private CheckpointWriter() {
    }

    /**
     * Writes and commits the checkpoint of {@code step}.
     *
     * @param checkpointsDir e.g. {@code <output.dir>/checkpoints}; created if missing
     * @param params         flat parameters laid out by {@code layout} (float32 or float64)
     * @param adamM          AdamW first moments, same layout, or null to write no optimizer state
     * @param adamV          AdamW second moments, or null (exactly when adamM is null)
     * @param adamStep       AdamW step count (bias correction), ignored without optimizer state
     * @param extra          further manifest entries (tokens_seen, rng, loader, config, ...); values may be
     *                       maps, lists, scalars, records or JsonNodes (records get snake_case keys)
     * @param keepLast       keep this many newest checkpoints; 0 or less keeps all
     * @return the committed step directory
     */
    public static Path write(Path checkpointsDir, long step, ParamLayout layout, INDArray params,
                             INDArray adamM, INDArray adamV, long adamStep, Map<String, ?> extra,
                             int keepLast) throws IOException {
        if (step < 0) {
            throw new IllegalArgumentException("checkpoint step must be >= 0, got " + step);
        }
        checkBuffer("params", params, layout);
        if ((adamM == null) != (adamV == null)) {
            throw new IllegalArgumentException("pass both AdamW moments (m and v) or neither");
        }
        if (adamM != null) {
            checkBuffer("adamM", adamM, layout);
            checkBuffer("adamV", adamV, layout);
        }
        checkExtra(extra);

        Files.createDirectories(checkpointsDir);
        String name = CheckpointFiles.stepDirName(step);
        Path tmp = checkpointsDir.resolve(CheckpointFiles.TMP_PREFIX + name + "-" + randomSuffix());
        Path target = checkpointsDir.resolve(name);
        try {
            Files.createDirectory(tmp);
            Files.createDirectory(tmp.resolve("params"));
            if (adamM != null) {
                Files.createDirectory(tmp.resolve("optim"));
            }
            ObjectNode manifest = manifest(step, params.dataType(), layout, adamM != null, adamStep, extra,
                    (part, s) -> switch (part) {
                        case PARAMS -> writeEntry(tmp, paramsFile(s), params, s);
                        case ADAM_M -> writeEntry(tmp, momentFile(s, "m"), adamM, s);
                        case ADAM_V -> writeEntry(tmp, momentFile(s, "v"), adamV, s);
                    });
            CheckpointFiles.writeNew(tmp.resolve(CheckpointFiles.MANIFEST), JSON.writeValueAsBytes(manifest));
            CheckpointFiles.fsyncDirectory(tmp.resolve("params"));
            if (adamM != null) {
                CheckpointFiles.fsyncDirectory(tmp.resolve("optim"));
            }
            CheckpointFiles.fsyncDirectory(tmp);
            commit(checkpointsDir, tmp, target);
        } finally {
            CheckpointFiles.deleteRecursively(tmp);   // only left if the write failed before the rename
        }
        publish(checkpointsDir, target, keepLast);
        return target;
    }

    // Package-private pieces of the write, shared with ShardedCheckpointWriter so both write the same format.

    static void checkExtra(Map<String, ?> extra) {
        if (extra != null) {
            for (String k : extra.keySet()) {
                if (RESERVED.contains(k)) {
                    throw new IllegalArgumentException("extra manifest entry '" + k + "' clashes with a reserved key "
                            + RESERVED);
                }
            }
        }
    }

    /** The manifest entry of one tensor file (written or checked by the caller). */
    @FunctionalInterface
    interface TensorEntries {
        ObjectNode entry(ShardedCheckpointWriter.Part part, ParamSpec s) throws IOException;
    }

    /**
     * The whole manifest: header, {@code tensors} and (with optimizer state) {@code optimizer} for every parameter
     * of the layout in order, then {@code extra}, written_at and dtrain_version. Both writers build it here.
     */
    static ObjectNode manifest(long step, DataType dtype, ParamLayout layout, boolean withOptimizer, long adamStep,
                               Map<String, ?> extra, TensorEntries entries) throws IOException {
        ObjectNode manifest = newManifest(step, dtype);
        ObjectNode tensors = manifest.putObject("tensors");
        for (ParamSpec s : layout.specs()) {
            tensors.set(s.name(), entries.entry(ShardedCheckpointWriter.Part.PARAMS, s));
        }
        if (withOptimizer) {
            ObjectNode opt = manifest.putObject("optimizer");
            opt.put("type", "adamw");
            opt.put("step", adamStep);
            ObjectNode optTensors = opt.putObject("tensors");
            for (ParamSpec s : layout.specs()) {
                ObjectNode e = optTensors.putObject(s.name());
                e.set("m", entries.entry(ShardedCheckpointWriter.Part.ADAM_M, s));
                e.set("v", entries.entry(ShardedCheckpointWriter.Part.ADAM_V, s));
            }
        }
        finishManifest(manifest, extra);
        return manifest;
    }

    private static ObjectNode newManifest(long step, DataType dtype) {
        ObjectNode manifest = JSON.createObjectNode();
        manifest.put("format_version", CheckpointFiles.FORMAT_VERSION);
        manifest.put("step", step);
        manifest.put("dtype", CheckpointFiles.dtypeName(dtype));
        return manifest;
    }

    private static void finishManifest(ObjectNode manifest, Map<String, ?> extra) {
        if (extra != null) {
            for (Map.Entry<String, ?> e : extra.entrySet()) {
                manifest.set(e.getKey(), JSON.valueToTree(e.getValue()));
            }
        }
        manifest.put("written_at", Instant.now().toString());
        manifest.put("dtrain_version", version());
    }

    static String paramsFile(ParamSpec s) {
        return "params/" + CheckpointFiles.fileStem(s.name()) + ".bin";
    }

    static String momentFile(ParamSpec s, String moment) {
        return "optim/" + CheckpointFiles.fileStem(s.name()) + "." + moment + ".bin";
    }

    static ObjectNode tensorEntry(String file, ParamSpec s, DataType dtype, long crc) {
        ObjectNode e = JSON.createObjectNode();
        e.put("file", file);
        ArrayNode shape = e.putArray("shape");
        for (long d : s.shape()) {
            shape.add(d);
        }
        e.put("dtype", CheckpointFiles.dtypeName(dtype));
        e.put("bytes", s.size() * CheckpointFiles.elementBytes(dtype));
        e.put("crc32c", CheckpointFiles.crcHex(crc));
        return e;
    }

    /** After the rename: points {@code latest} at the new checkpoint, prunes old ones, removes leftovers. */
    static void publish(Path checkpointsDir, Path target, int keepLast) throws IOException {
        CheckpointFiles.writeAtomically(checkpointsDir.resolve(CheckpointFiles.LATEST),
                (target.getFileName() + "\n").getBytes(StandardCharsets.UTF_8));
        pruneOld(checkpointsDir, target, keepLast);
        cleanStaleTemporaries(checkpointsDir);
    }

    private static ObjectNode writeEntry(Path dir, String file, INDArray flat, ParamSpec s) throws IOException {
        long crc = CheckpointFiles.writeTensor(dir.resolve(file), flat, s.offset(), s.end());
        return tensorEntry(file, s, flat.dataType(), crc);
    }

    /** Renames tmp to target; an existing checkpoint of the same step is replaced (moved aside, then deleted). */
    static void commit(Path checkpointsDir, Path tmp, Path target) throws IOException {
        Path aside = null;
        if (Files.exists(target)) {
            aside = checkpointsDir.resolve(CheckpointFiles.TMP_PREFIX + "replaced-" + target.getFileName() + "-"
                    + randomSuffix());
            Files.move(target, aside, StandardCopyOption.ATOMIC_MOVE);
        }
        Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE);
        CheckpointFiles.fsyncDirectory(checkpointsDir);
        if (aside != null) {
            CheckpointFiles.deleteRecursively(aside);
        }
    }

    private static void pruneOld(Path checkpointsDir, Path justWritten, int keepLast) throws IOException {
        if (keepLast <= 0) {
            return;
        }
        List<Path> dirs = CheckpointFiles.committedStepDirs(checkpointsDir);
        dirs.removeIf(p -> p.getFileName().equals(justWritten.getFileName()));
        int toDelete = dirs.size() - (keepLast - 1);
        for (int i = 0; i < toDelete; i++) {
            Path old = dirs.get(i);
            // Renamed first so a crash half-way through the delete never leaves a half-deleted step-* directory.
            Path doomed = checkpointsDir.resolve(CheckpointFiles.TMP_PREFIX + "deleting-" + old.getFileName() + "-"
                    + randomSuffix());
            Files.move(old, doomed, StandardCopyOption.ATOMIC_MOVE);
            CheckpointFiles.deleteRecursively(doomed);
        }
    }

    /**
     * Deletes leftovers of killed writes under {@code checkpointsDir}: {@code .tmp-*} directories and
     * {@code latest.tmp-*} files. Only safe while no other process writes checkpoints there.
     */
    public static void cleanStaleTemporaries(Path checkpointsDir) throws IOException {
        if (!Files.isDirectory(checkpointsDir)) {
            return;
        }
        try (DirectoryStream<Path> ds = Files.newDirectoryStream(checkpointsDir)) {
            for (Path p : ds) {
                String n = p.getFileName().toString();
                if (n.startsWith(CheckpointFiles.TMP_PREFIX)
                        || n.startsWith(CheckpointFiles.LATEST + CheckpointFiles.TMP_PREFIX)) {
                    CheckpointFiles.deleteRecursively(p);
                }
            }
        }
    }

    private static void checkBuffer(String what, INDArray flat, ParamLayout layout) {
        NioViews.checkFlat(what, flat);
        if (flat.length() != layout.size()) {
            throw new IllegalArgumentException(what + " has " + flat.length() + " elements, the layout has "
                    + layout.size());
        }
    }

    static String randomSuffix() {
        return UUID.randomUUID().toString().substring(0, 8);
    }

    static String version() {
        String v = CheckpointWriter.class.getPackage().getImplementationVersion();
        return v != null ? v : "dev";
    }

    static JsonNode toJson(Object value) {
        return JSON.valueToTree(value);
    }
}
