package io.dtrain.checkpoint;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.dtrain.model.ParamLayout;
import io.dtrain.model.ParamSpec;
import io.dtrain.optim.NioViews;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Comparator;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;

/**
 * Writes one checkpoint from several ranks, each holding part of the state (ZeRO-1 optimizer shards, pipeline
 * stages), in exactly the format of {@link CheckpointWriter}, so {@link Checkpoint} reads it unchanged. Every rank
 * of the group calls {@link #write} for the same step; rank 0 commits:
 *
 * <ol>
 *   <li>rank 0 replaces any leftover {@code .tmp-step-NNNNNN-shared/} of a crashed attempt with a fresh one in
 *       which every tensor file of the global layout already has its final size; barrier;</li>
 *   <li>every rank writes its {@link Piece}s at their offsets (positional writes into the existing files), fsyncs,
 *       and records the ranges in {@code parts/rank-R.json}; barrier;</li>
 *   <li>rank 0 checks that the ranges of all ranks cover every tensor exactly once (a gap or an overlap names the
 *       tensor, the elements and the ranks), computes each file's CRC32C by reading it back, deletes
 *       {@code parts/}, writes {@code manifest.json}, renames the directory to {@code step-NNNNNN}, replaces
 *       {@code latest} and prunes old checkpoints as {@link CheckpointWriter} does; barrier.</li>
 * </ol>
 *
 * Every rank always takes part in all three barriers, also after a failure of its own, so the group's collectives
 * stay in step and every rank fails promptly: a rank that fails writes no parts file, which makes rank 0 refuse to
 * commit; rank 0 leaves its reason in {@code FAILED} inside the temporary directory, which the other ranks read and
 * throw. An uncommitted attempt never touches {@code latest} or older checkpoints. The ranks must share the
 * checkpoints directory (one host, or a file system with close-to-open consistency such as NFS).
 */
public final class ShardedCheckpointWriter {
    /** A collective over all ranks of the group; throws (e.g. on a timeout naming the missing rank) if it fails. */
    @FunctionalInterface
    public interface Barrier {
        void await(String what);
    }

    /** Which of a tensor's files a piece belongs to. */
    public enum Part {
        PARAMS("parameters"), ADAM_M("AdamW m"), ADAM_V("AdamW v");

        private final String description;

        Part(String description) {
            this.description = description;
        }

        String file(ParamSpec s) {
            return switch (this) {
                case PARAMS -> CheckpointWriter.paramsFile(s);
                case ADAM_M -> CheckpointWriter.momentFile(s, "m");
                case ADAM_V -> CheckpointWriter.momentFile(s, "v");
            };
        }
    }

    /**
     * Elements {@code [from, to)} of tensor {@code tensor} (C order, as in its checkpoint file), taken from the flat
     * buffer {@code src} starting at element {@code srcOffset}.
     */
    public record Piece(Part part, String tensor, long from, long to, INDArray src, long srcOffset) {
        public Piece {
            Objects.requireNonNull(part, "part");
            Objects.requireNonNull(tensor, "tensor");
            Objects.requireNonNull(src, "src");
            if (from < 0 || to < from || srcOffset < 0) {
                throw new IllegalArgumentException("piece of " + tensor + ": bad range [" + from + ", " + to
                        + ") from source offset " + srcOffset);
            }
        }

        long size() {
            return to - from;
        }
    }

    private static final String SHARED_SUFFIX = "-shared";
    private static final String PARTS_DIR = "parts";
    private static final String FAILED = "FAILED";

    private final Path checkpointsDir;
    private final ParamLayout layout;
    private final DataType dtype;
    private final int keepLast;
    private final int rank;
    private final int worldSize;
    private final Barrier barrier;

    /**
     * @param checkpointsDir shared by all ranks, e.g. {@code <output.dir>/checkpoints}; created by rank 0 if missing
     * @param globalLayout   every tensor of the model: the checkpoint holds exactly these
     * @param dtype          FLOAT or DOUBLE: the dtype of every file and of every piece's source buffer
     * @param keepLast       keep this many newest checkpoints; 0 or less keeps all
     * @param rank           this rank within the group {@code barrier} spans; rank 0 commits
     * @param worldSize      number of ranks in that group (each calls {@link #write}, with or without pieces)
     */
    public ShardedCheckpointWriter(Path checkpointsDir, ParamLayout globalLayout, DataType dtype, int keepLast,
                                   int rank, int worldSize, Barrier barrier) {
        this.checkpointsDir = Objects.requireNonNull(checkpointsDir, "checkpointsDir");
        this.layout = Objects.requireNonNull(globalLayout, "globalLayout");
        CheckpointFiles.dtypeName(dtype);   // rejects anything but float32/float64
        this.dtype = dtype;
        this.keepLast = keepLast;
        if (worldSize < 1 || rank < 0 || rank >= worldSize) {
            throw new IllegalArgumentException("rank " + rank + " is outside a group of " + worldSize + " ranks");
        }
        this.rank = rank;
        this.worldSize = worldSize;
        this.barrier = Objects.requireNonNull(barrier, "barrier");
    }

    /** Pieces covering whole tensors: every spec of {@code layout} named in {@code names}, from {@code flat}. */
    public static List<Piece> wholeTensors(Part part, ParamLayout layout, INDArray flat, Collection<String> names) {
        NioViews.checkFlat(part.description, flat);
        if (flat.length() != layout.size()) {
            throw new IllegalArgumentException(part.description + " buffer has " + flat.length()
                    + " elements, its layout has " + layout.size());
        }
        for (String n : names) {
            if (!layout.contains(n)) {
                throw new IllegalArgumentException("no tensor named " + n + " in the layout to write from");
            }
        }
        List<Piece> out = new ArrayList<>();
        for (ParamSpec s : layout.specs()) {
            if (names.contains(s.name())) {
                out.add(new Piece(part, s.name(), 0, s.size(), flat, s.offset()));
            }
        }
        return out;
    }

    /** Pieces of a ZeRO-1 shard: elements {@code [from, to)} of {@code globalLayout}, held in {@code shard}. */
    public static List<Piece> shardOf(Part part, ParamLayout globalLayout, INDArray shard, long from, long to) {
        NioViews.checkFlat(part.description + " shard", shard);
        if (from < 0 || to < from || to > globalLayout.size() || shard.length() != to - from) {
            throw new IllegalArgumentException(part.description + " shard of " + shard.length()
                    + " elements does not fit the range [" + from + ", " + to + ") of a layout of "
                    + globalLayout.size() + " elements");
        }
        List<Piece> out = new ArrayList<>();
        for (ParamSpec s : globalLayout.specs()) {
            long a = Math.max(from, s.offset());
            long b = Math.min(to, s.end());
            if (a < b) {
                out.add(new Piece(part, s.name(), a - s.offset(), b - s.offset(), shard, a - from));
            }
        }
        return out;
    }

    /**
     * Writes this rank's pieces of the checkpoint of {@code step}; called by every rank with the same arguments
     * except {@code mine}. Returns the committed step directory on every rank, or throws on every rank (each with
     * its own reason, or rank 0's) if it was not committed.
     *
     * @param withOptimizer whether the checkpoint holds AdamW moments (then the ranks' pieces must cover them too)
     * @param adamStep      AdamW step count (bias correction), ignored without optimizer state
     * @param extra         further manifest entries, as for {@link CheckpointWriter#write}; only rank 0's are used
     */
    public Path write(long step, boolean withOptimizer, long adamStep, Map<String, ?> extra, List<Piece> mine)
            throws IOException {
        if (step < 0) {
            throw new IllegalArgumentException("checkpoint step must be >= 0, got " + step);
        }
        CheckpointWriter.checkExtra(extra);
        String name = CheckpointFiles.stepDirName(step);
        Path tmp = checkpointsDir.resolve(CheckpointFiles.TMP_PREFIX + name + SHARED_SUFFIX);
        Path target = checkpointsDir.resolve(name);
        boolean committer = rank == 0;
        Throwable failure = null;

        if (committer) {
            try {
                prepare(tmp, withOptimizer);
            } catch (IOException | RuntimeException e) {
                failure = e;
            }
        }
        failure = await("checkpoint " + name + ": files created", failure);

        if (failure == null) {
            try {
                if (!Files.isDirectory(tmp.resolve(PARTS_DIR))) {
                    throw new IOException("checkpoint " + name + " was not committed: rank 0 did not create " + tmp
                            + "; see rank 0's log");
                }
                writePieces(tmp, withOptimizer, step, mine);
            } catch (IOException | RuntimeException e) {
                failure = e;
            }
        }
        failure = await("checkpoint " + name + ": pieces written", failure);

        if (committer) {
            try {
                if (failure == null) {
                    commit(tmp, target, step, withOptimizer, adamStep, extra);
                }
            } catch (IOException | RuntimeException e) {
                failure = e;
            }
            if (failure != null) {
                leaveFailureNote(tmp, failure);
            }
        }
        failure = await("checkpoint " + name + ": committed", failure);

        if (!committer && failure == null) {
            failure = checkCommitted(tmp, target, name);
        }
        if (failure != null) {
            throw rethrow(failure);
        }
        return target;
    }

    /**
     * Calls the barrier even after a failure of this rank, so the group stays in step. A failing barrier means
     * the group itself is broken: then this rank stops at once, with its own failure (if any) as the cause.
     */
    private Throwable await(String what, Throwable failure) throws IOException {
        try {
            barrier.await(what);
        } catch (RuntimeException | Error e) {
            if (failure == null) {
                throw e;
            }
            failure.addSuppressed(e);
            throw rethrow(failure);
        }
        return failure;
    }

    private static IOException rethrow(Throwable failure) throws IOException {
        if (failure instanceof IOException io) {
            throw io;
        }
        if (failure instanceof RuntimeException re) {
            throw re;
        }
        if (failure instanceof Error err) {
            throw err;
        }
        throw new IOException(failure);
    }

    private void prepare(Path tmp, boolean withOptimizer) throws IOException {
        Files.createDirectories(checkpointsDir);
        CheckpointFiles.deleteRecursively(tmp);   // a crashed attempt's files must not count as written
        Files.createDirectory(tmp);
        Files.createDirectory(tmp.resolve("params"));
        if (withOptimizer) {
            Files.createDirectory(tmp.resolve("optim"));
        }
        long elem = CheckpointFiles.elementBytes(dtype);
        for (ParamSpec s : layout.specs()) {
            for (Part p : parts(withOptimizer)) {
                try (RandomAccessFile f = new RandomAccessFile(tmp.resolve(p.file(s)).toFile(), "rw")) {
                    f.setLength(s.size() * elem);
                }
            }
        }
        Files.createDirectory(tmp.resolve(PARTS_DIR));   // last: the other ranks' sign that the files exist
    }

    private static List<Part> parts(boolean withOptimizer) {
        return withOptimizer ? List.of(Part.PARAMS, Part.ADAM_M, Part.ADAM_V) : List.of(Part.PARAMS);
    }

    private void writePieces(Path tmp, boolean withOptimizer, long step, List<Piece> mine) throws IOException {
        for (Piece p : mine) {
            checkPiece(p, withOptimizer);
        }
        int elem = CheckpointFiles.elementBytes(dtype);
        long perChunk = CheckpointFiles.IO_CHUNK_BYTES / elem;
        ObjectNode record = CheckpointWriter.JSON.createObjectNode();
        record.put("rank", rank);
        record.put("world_size", worldSize);
        record.put("step", step);
        ArrayNode written = record.putArray("pieces");
        for (Piece p : mine) {
            if (p.size() == 0) {
                continue;
            }
            String file = p.part().file(layout.spec(p.tensor()));
            // No CREATE: rank 0 created every file, so a missing one is an error, not a new stray file.
            try (FileChannel ch = FileChannel.open(tmp.resolve(file), StandardOpenOption.WRITE)) {
                for (long c = 0; c < p.size(); c += perChunk) {
                    ByteBuffer src = NioViews.bytes(p.src(), p.srcOffset() + c,
                            p.srcOffset() + Math.min(p.size(), c + perChunk));
                    long pos = (p.from() + c) * elem;
                    while (src.hasRemaining()) {
                        pos += ch.write(src, pos);
                    }
                }
                ch.force(true);
            }
            ObjectNode w = written.addObject();
            w.put("file", file);
            w.put("from", p.from());
            w.put("to", p.to());
        }
        CheckpointFiles.writeNew(tmp.resolve(PARTS_DIR).resolve(partsFile(rank)),
                CheckpointWriter.JSON.writeValueAsBytes(record));
    }

    private void checkPiece(Piece p, boolean withOptimizer) {
        if (!layout.contains(p.tensor())) {
            throw new IllegalArgumentException("rank " + rank + " has a piece of " + p.tensor()
                    + ", which is not in the checkpoint's layout");
        }
        if (p.part() != Part.PARAMS && !withOptimizer) {
            throw new IllegalArgumentException("rank " + rank + " has a piece of the " + p.part().description
                    + " of " + p.tensor() + " but the checkpoint is written without optimizer state");
        }
        ParamSpec s = layout.spec(p.tensor());
        if (p.to() > s.size()) {
            throw new IllegalArgumentException("rank " + rank + " has a piece [" + p.from() + ", " + p.to()
                    + ") of " + p.tensor() + ", which has " + s.size() + " elements");
        }
        NioViews.checkRange("source of the piece of " + p.tensor(), p.src(), p.srcOffset(),
                p.srcOffset() + p.size());
        if (p.src().dataType() != dtype) {
            throw new IllegalArgumentException("the piece of " + p.tensor() + " comes from a " + p.src().dataType()
                    + " buffer but the checkpoint is " + CheckpointFiles.dtypeName(dtype));
        }
    }

    private static String partsFile(int r) {
        return "rank-" + r + ".json";
    }

    private record Written(long from, long to, int rank) {
    }

    private void commit(Path tmp, Path target, long step, boolean withOptimizer, long adamStep,
                        Map<String, ?> extra) throws IOException {
        checkCoverage(tmp, step, withOptimizer);
        CheckpointFiles.deleteRecursively(tmp.resolve(PARTS_DIR));
        ObjectNode manifest = CheckpointWriter.manifest(step, dtype, layout, withOptimizer, adamStep, extra,
                (part, s) -> entry(tmp, part, s));
        CheckpointFiles.writeNew(tmp.resolve(CheckpointFiles.MANIFEST),
                CheckpointWriter.JSON.writeValueAsBytes(manifest));
        CheckpointFiles.fsyncDirectory(tmp.resolve("params"));
        if (withOptimizer) {
            CheckpointFiles.fsyncDirectory(tmp.resolve("optim"));
        }
        CheckpointFiles.fsyncDirectory(tmp);
        CheckpointWriter.commit(checkpointsDir, tmp, target);
        CheckpointWriter.publish(checkpointsDir, target, keepLast);
    }

    private ObjectNode entry(Path tmp, Part part, ParamSpec s) throws IOException {
        String file = part.file(s);
        Path f = tmp.resolve(file);
        long expected = s.size() * CheckpointFiles.elementBytes(dtype);
        long actual = Files.size(f);
        if (actual != expected) {
            throw new IOException(f + " has " + actual + " bytes, expected " + expected + " for " + s.name()
                    + ": a rank wrote outside its file or the file was changed during the checkpoint");
        }
        long crc = CheckpointFiles.readTensor(f, dtype, s.size(), 0, 0, null, 0);
        return CheckpointWriter.tensorEntry(file, s, dtype, crc);
    }

    /** Reads every rank's parts file and checks the union covers every file of the layout exactly once. */
    private void checkCoverage(Path tmp, long step, boolean withOptimizer) throws IOException {
        Map<String, List<Written>> byFile = new LinkedHashMap<>();
        List<String> problems = new ArrayList<>();
        for (int r = 0; r < worldSize; r++) {
            Path f = tmp.resolve(PARTS_DIR).resolve(partsFile(r));
            if (!Files.exists(f)) {
                problems.add("rank " + r + " wrote no " + f.getFileName() + ": it failed before finishing its pieces;"
                        + " see its log");
                continue;
            }
            JsonNode rec;
            try {
                rec = CheckpointWriter.JSON.readTree(Files.readAllBytes(f));
            } catch (IOException e) {
                throw new IOException("cannot read " + f + ": " + e.getMessage(), e);
            }
            if (rec == null || rec.path("rank").asInt(-1) != r || rec.path("step").asLong(-1) != step
                    || !rec.path("pieces").isArray()) {
                throw new IOException(f + " is not rank " + r + "'s record of step " + step + ": " + rec);
            }
            for (JsonNode w : rec.get("pieces")) {
                byFile.computeIfAbsent(w.path("file").asText(), k -> new ArrayList<>())
                        .add(new Written(w.path("from").asLong(), w.path("to").asLong(), r));
            }
        }
        Set<String> expectedFiles = new HashSet<>();
        for (ParamSpec s : layout.specs()) {
            for (Part p : parts(withOptimizer)) {
                String file = p.file(s);
                expectedFiles.add(file);
                coverageProblems(s, p, byFile.getOrDefault(file, List.of()), problems);
            }
        }
        for (String file : byFile.keySet()) {
            if (!expectedFiles.contains(file)) {
                problems.add(file + " was written but is not a file of this checkpoint");
            }
        }
        if (!problems.isEmpty()) {
            int shown = Math.min(problems.size(), 10);
            throw new IOException("checkpoint " + CheckpointFiles.stepDirName(step) + " was not committed: the "
                    + worldSize + " ranks' pieces do not cover every tensor exactly once (the ZeRO-1 shard ranges or "
                    + "the stages' tensor sets do not partition the layout); " + CheckpointFiles.LATEST
                    + " still names the previous checkpoint:\n  " + String.join("\n  ", problems.subList(0, shown))
                    + (shown < problems.size() ? "\n  ... and " + (problems.size() - shown) + " more" : ""));
        }
    }

    private static void coverageProblems(ParamSpec s, Part part, List<Written> ranges, List<String> problems) {
        String what = s.name() + " (" + part.description + ", " + s.size() + " elements)";
        List<Written> sorted = new ArrayList<>(ranges);
        sorted.sort(Comparator.comparingLong(Written::from).thenComparingLong(Written::to));
        long covered = 0;
        int lastRank = -1;
        for (Written w : sorted) {
            if (w.from() > covered) {
                problems.add(what + ": elements [" + covered + ", " + w.from() + ") were written by no rank ("
                        + (lastRank < 0 ? "" : "rank " + lastRank + " wrote up to " + covered + ", ")
                        + "rank " + w.rank() + " from " + w.from() + ")");
            } else if (w.from() < covered) {
                problems.add(what + ": elements [" + w.from() + ", " + Math.min(covered, w.to()) + ") were written "
                        + (lastRank == w.rank() ? "twice by rank " + w.rank()
                        : "by both rank " + lastRank + " and rank " + w.rank()));
            }
            if (w.to() > covered) {
                covered = w.to();
                lastRank = w.rank();
            }
        }
        if (covered < s.size()) {
            problems.add(what + ": elements [" + covered + ", " + s.size() + ") were written by no rank"
                    + (lastRank < 0 ? "" : " (rank " + lastRank + " wrote up to " + covered + ")"));
        }
    }

    private static void leaveFailureNote(Path tmp, Throwable failure) {
        try {
            if (Files.isDirectory(tmp)) {
                Files.write(tmp.resolve(FAILED), String.valueOf(failure.getMessage()).getBytes(StandardCharsets.UTF_8));
            }
        } catch (IOException e) {
            failure.addSuppressed(e);   // the other ranks then report that rank 0 did not commit, without its reason
        }
    }

    private static IOException checkCommitted(Path tmp, Path target, String name) {
        if (!Files.exists(tmp) && Files.exists(target.resolve(CheckpointFiles.MANIFEST))) {
            return null;
        }
        String reason = "see rank 0's log";
        try {
            if (Files.exists(tmp.resolve(FAILED))) {
                reason = "rank 0 says: " + Files.readString(tmp.resolve(FAILED), StandardCharsets.UTF_8);
            }
        } catch (IOException e) {
            reason = "see rank 0's log (cannot read " + tmp.resolve(FAILED) + ": " + e.getMessage() + ")";
        }
        return new IOException("checkpoint " + name + " was not committed by rank 0; " + reason);
    }
}
