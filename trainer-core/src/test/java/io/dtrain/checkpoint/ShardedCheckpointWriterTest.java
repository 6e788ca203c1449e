package io.dtrain.checkpoint;

import io.dtrain.checkpoint.ShardedCheckpointWriter.Part;
import io.dtrain.checkpoint.ShardedCheckpointWriter.Piece;
import io.dtrain.model.ParamKind;
import io.dtrain.model.ParamLayout;
import io.dtrain.model.ParamSpec;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.BrokenBarrierException;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.stream.Collectors;
import java.util.stream.Stream;

import static io.dtrain.checkpoint.CheckpointTest.bits;
import static io.dtrain.checkpoint.CheckpointTest.random;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Threads play the ranks; a CyclicBarrier with a timeout plays the process group's barrier. */
class ShardedCheckpointWriterTest {
    @TempDir
    Path run;

    static ExecutorService pool;

    @BeforeAll
    static void startPool() {
        pool = Executors.newFixedThreadPool(3);
    }

    @AfterAll
    static void stopPool() {
        pool.shutdownNow();
    }

    /** 1001 elements, so a 3-way ZeRO-1 split is uneven (334/334/333) and cuts through wte and c_attn.weight. */
    static ParamLayout layout() {
        return ParamLayout.builder()
                .add("wte.weight", ParamKind.EMBEDDING, 0, 40, 10)
                .add("h.0.ln_1.weight", ParamKind.NORM, 0, 10)
                .add("h.0.attn.c_attn.weight", ParamKind.MATRIX, 0, 10, 30)
                .add("h.0.attn.c_attn.bias", ParamKind.BIAS, 1, 30)
                .add("h.0.mlp.c_fc.weight", ParamKind.MATRIX, 1, 10, 26)
                .add("ln_f.bias", ParamKind.NORM, 1, 1)
                .build();
    }

    static final long[][] ZERO_RANGES = {{0, 334}, {334, 668}, {668, 1001}};

    record Outcome(Path dir, Throwable error) {
    }

    Path checkpoints(String name) {
        return run.resolve(name).resolve("checkpoints");
    }

    static Map<String, Object> extra(long step) {
        Map<String, Object> e = new LinkedHashMap<>();
        e.put("tokens_seen", step * 4096);
        e.put("rng", Map.of("seed", 1337));
        e.put("config", Map.of("model", Map.of("n_layer", 1)));
        return e;
    }

    /** Runs {@code write} on one thread per rank and returns each rank's outcome. */
    static List<Outcome> runRanks(Path checkpointsDir, ParamLayout layout, DataType dt, int keepLast, long step,
                                  boolean withOptimizer, List<List<Piece>> pieces) throws Exception {
        int n = pieces.size();
        CyclicBarrier cb = new CyclicBarrier(n);
        ShardedCheckpointWriter.Barrier barrier = what -> {
            try {
                cb.await(10, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException("interrupted in barrier '" + what + "'", e);
            } catch (BrokenBarrierException | TimeoutException e) {
                throw new IllegalStateException("barrier '" + what + "' failed: " + e, e);
            }
        };
        List<Future<Path>> futures = new ArrayList<>();
        for (int r = 0; r < n; r++) {
            ShardedCheckpointWriter w = new ShardedCheckpointWriter(checkpointsDir, layout, dt, keepLast, r, n, barrier);
            List<Piece> mine = pieces.get(r);
            futures.add(pool.submit(() -> w.write(step, withOptimizer, step, extra(step), mine)));
        }
        List<Outcome> out = new ArrayList<>();
        for (Future<Path> f : futures) {
            try {
                out.add(new Outcome(f.get(30, TimeUnit.SECONDS), null));
            } catch (java.util.concurrent.ExecutionException e) {
                out.add(new Outcome(null, e.getCause()));
            }
        }
        return out;
    }

    static Path committed(List<Outcome> outcomes) {
        for (Outcome o : outcomes) {
            if (o.error() != null) {
                throw new AssertionError("a rank failed", o.error());
            }
        }
        Path dir = outcomes.get(0).dir();
        for (Outcome o : outcomes) {
            assertEquals(dir, o.dir());
        }
        return dir;
    }

    /** Every rank holds its ZeRO-1 shard of m and v; rank 0 also writes all parameters. */
    static List<List<Piece>> zeroPieces(ParamLayout layout, INDArray p, INDArray m, INDArray v) {
        List<List<Piece>> all = new ArrayList<>();
        for (int r = 0; r < ZERO_RANGES.length; r++) {
            long from = ZERO_RANGES[r][0];
            long to = ZERO_RANGES[r][1];
            List<Piece> mine = new ArrayList<>();
            if (r == 0) {
                mine.addAll(ShardedCheckpointWriter.wholeTensors(Part.PARAMS, layout, p,
                        layout.specs().stream().map(ParamSpec::name).toList()));
            }
            // what each rank really holds: a copy of its range only
            mine.addAll(ShardedCheckpointWriter.shardOf(Part.ADAM_M, layout,
                    m.get(NDArrayIndex.interval(from, to)).dup(), from, to));
            mine.addAll(ShardedCheckpointWriter.shardOf(Part.ADAM_V, layout,
                    v.get(NDArrayIndex.interval(from, to)).dup(), from, to));
            all.add(mine);
        }
        return all;
    }

    @Test
    void zeroShardsCuttingAcrossTensorsGiveTheSameFilesAsOneWriter() throws Exception {
        ParamLayout layout = layout();
        assertEquals(1001, layout.size());
        for (DataType dt : new DataType[] {DataType.FLOAT, DataType.DOUBLE}) {
            INDArray p = random(layout, dt, 11);
            INDArray m = random(layout, dt, 12);
            INDArray v = random(layout, dt, 13);
            long step = dt == DataType.FLOAT ? 120 : 130;
            Path dir = committed(runRanks(checkpoints("sharded"), layout, dt, 0, step, true, zeroPieces(layout, p, m, v)));
            assertEquals(checkpoints("sharded").resolve(CheckpointFiles.stepDirName(step)), dir);
            Path reference = CheckpointWriter.write(checkpoints("single"), step, layout, p, m, v, step, extra(step), 0);
            assertSameFiles(reference, dir);
            assertEquals(CheckpointFiles.stepDirName(step) + "\n",
                    Files.readString(checkpoints("sharded").resolve("latest")));

            Checkpoint c = Checkpoint.load(run.resolve("sharded"));
            assertEquals(step, c.step());
            assertEquals(step, c.adamStep());
            assertEquals(step * 4096, c.tokensSeen());
            c.verify();
            INDArray p2 = Nd4j.zeros(dt, layout.size());
            INDArray m2 = Nd4j.zeros(dt, layout.size());
            INDArray v2 = Nd4j.zeros(dt, layout.size());
            c.readParams(layout, p2);
            c.readOptimizer(layout, m2, v2);
            assertArrayEquals(bits(p), bits(p2), dt.toString());
            assertArrayEquals(bits(m), bits(m2), dt.toString());
            assertArrayEquals(bits(v), bits(v2), dt.toString());
            // resuming with another world size: a 2-way shard of what 3 ranks wrote
            INDArray ms = Nd4j.zeros(dt, 500);
            INDArray vs = Nd4j.zeros(dt, 500);
            c.readOptimizerShard(layout, 501, 1001, ms, vs);
            assertArrayEquals(bits(m.get(NDArrayIndex.interval(501, 1001))), bits(ms));
        }
        assertEquals(List.of("latest", "step-000120", "step-000130"), listing(checkpoints("sharded")));
    }

    /** A stage-local layout: the stage's tensors in global order, plus optional replicas (e.g. a tied wte). */
    static ParamLayout stageLayout(ParamLayout global, int stage, String... replicas) {
        ParamLayout.Builder b = ParamLayout.builder();
        for (ParamSpec s : global.stageSpecs(stage)) {
            b.add(s.name(), s.kind(), stage, s.shape());
        }
        for (String r : replicas) {
            ParamSpec s = global.spec(r);
            b.add(s.name(), s.kind(), stage, s.shape());
        }
        return b.build();
    }

    static INDArray gather(ParamLayout from, INDArray flat, ParamLayout to) {
        INDArray out = Nd4j.zeros(flat.dataType(), to.size());
        for (ParamSpec s : to.specs()) {
            to.view(out, s.name()).assign(from.view(flat, s.name()));
        }
        return out;
    }

    @Test
    void pipelineStagesWriteTheirOwnTensorsAndTheWteReplicaIsNotWritten() throws Exception {
        ParamLayout global = layout();
        ParamLayout stage0 = stageLayout(global, 0);
        ParamLayout stage1 = stageLayout(global, 1, "wte.weight");
        DataType dt = DataType.FLOAT;
        INDArray p = random(global, dt, 21);
        INDArray m = random(global, dt, 22);
        INDArray v = random(global, dt, 23);

        // ranks: 0 = stage 0; 1 = stage 1's DP rank 0; 2 = stage 1's DP rank 1, which writes nothing
        List<List<Piece>> pieces = List.of(new ArrayList<>(), new ArrayList<>(), List.of());
        ParamLayout[] stages = {stage0, stage1};
        for (int s = 0; s < 2; s++) {
            List<String> own = global.stageSpecs(s).stream().map(ParamSpec::name).toList();
            INDArray sp = gather(global, p, stages[s]);
            INDArray sm = gather(global, m, stages[s]);
            INDArray sv = gather(global, v, stages[s]);
            if (s == 1) {
                // the replica differs from the real wte (as before a sync): writing it would be caught
                stage1.view(sp, "wte.weight").assign(7);
                stage1.view(sm, "wte.weight").assign(7);
                stage1.view(sv, "wte.weight").assign(7);
            }
            pieces.get(s).addAll(ShardedCheckpointWriter.wholeTensors(Part.PARAMS, stages[s], sp, own));
            pieces.get(s).addAll(ShardedCheckpointWriter.wholeTensors(Part.ADAM_M, stages[s], sm, own));
            pieces.get(s).addAll(ShardedCheckpointWriter.wholeTensors(Part.ADAM_V, stages[s], sv, own));
        }
        Path dir = committed(runRanks(checkpoints("stages"), global, dt, 3, 40, true, pieces));
        Path reference = CheckpointWriter.write(checkpoints("single"), 40, global, p, m, v, 40, extra(40), 3);
        assertSameFiles(reference, dir);

        Checkpoint c = Checkpoint.load(dir);
        INDArray all = Nd4j.zeros(dt, global.size());
        c.readParams(global, all);
        assertArrayEquals(bits(p), bits(all));
        for (ParamLayout stage : stages) {
            INDArray local = Nd4j.zeros(dt, stage.size());
            INDArray lm = Nd4j.zeros(dt, stage.size());
            INDArray lv = Nd4j.zeros(dt, stage.size());
            c.readParams(stage, local);
            c.readOptimizer(stage, lm, lv);
            assertArrayEquals(bits(gather(global, p, stage)), bits(local));   // the replica gets stage 0's wte
            assertArrayEquals(bits(gather(global, v, stage)), bits(lv));
        }
    }

    @Test
    void aGapAnOverlapOrAFailedRankFailsEveryRankAndKeepsThePreviousCheckpoint() throws Exception {
        ParamLayout layout = layout();
        DataType dt = DataType.FLOAT;
        INDArray p = random(layout, dt, 31);
        INDArray m = random(layout, dt, 32);
        Path dir = checkpoints("failing");
        committed(runRanks(dir, layout, dt, 2, 10, true, zeroPieces(layout, p, m, m)));

        // gap: rank 2 drops its piece of the AdamW v of c_fc.weight (elements 18..260 of it)
        List<List<Piece>> gap = zeroPieces(layout, p, m, m);
        assertTrue(gap.get(2).removeIf(x -> x.part() == Part.ADAM_V && x.tensor().equals("h.0.mlp.c_fc.weight")));
        List<Outcome> out = runRanks(dir, layout, dt, 2, 20, true, gap);
        String expected = "h.0.mlp.c_fc.weight (AdamW v, 260 elements): elements [0, 260) were written by no rank";
        assertFailedEverywhere(out, expected);
        assertTrue(out.get(0).error().getMessage().contains("checkpoint step-000020 was not committed: the 3 ranks' "
                + "pieces do not cover every tensor exactly once"), out.get(0).error().getMessage());
        assertPreviousCheckpointKept(dir, layout, p);

        // gap inside a tensor, between two ranks' ranges
        List<List<Piece>> hole = zeroPieces(layout, p, m, m);
        hole.get(1).replaceAll(x -> x.part() == Part.ADAM_M && x.tensor().equals("h.0.attn.c_attn.weight")
                ? new Piece(x.part(), x.tensor(), x.from(), x.to() - 5, x.src(), x.srcOffset()) : x);
        out = runRanks(dir, layout, dt, 2, 20, true, hole);
        assertFailedEverywhere(out, "h.0.attn.c_attn.weight (AdamW m, 300 elements): elements [253, 258) were "
                + "written by no rank (rank 1 wrote up to 253, rank 2 from 258)");
        assertPreviousCheckpointKept(dir, layout, p);

        // overlap: rank 1 also writes part of a parameter that rank 0 writes
        List<List<Piece>> overlap = zeroPieces(layout, p, m, m);
        overlap.get(1).add(new Piece(Part.PARAMS, "h.0.ln_1.weight", 2, 5, p, 402));
        out = runRanks(dir, layout, dt, 2, 20, true, overlap);
        assertFailedEverywhere(out, "h.0.ln_1.weight (parameters, 10 elements): elements [2, 5) were written by both "
                + "rank 0 and rank 1");
        assertPreviousCheckpointKept(dir, layout, p);

        // a rank that fails on its own: it throws its error, rank 0 names it, the others report rank 0's reason
        List<List<Piece>> bad = zeroPieces(layout, p, m, m);
        bad.get(1).add(new Piece(Part.PARAMS, "h.9.nope", 0, 1, p, 0));
        out = runRanks(dir, layout, dt, 2, 20, true, bad);
        assertInstanceOf(IllegalArgumentException.class, out.get(1).error());
        assertEquals("rank 1 has a piece of h.9.nope, which is not in the checkpoint's layout",
                out.get(1).error().getMessage());
        assertTrue(out.get(0).error().getMessage().contains("rank 1 wrote no rank-1.json: it failed before finishing "
                + "its pieces"), out.get(0).error().getMessage());
        assertTrue(out.get(2).error().getMessage().startsWith("checkpoint step-000020 was not committed by rank 0; "
                + "rank 0 says: "), out.get(2).error().getMessage());
        assertTrue(out.get(2).error().getMessage().contains("rank 1 wrote no rank-1.json"));
        assertPreviousCheckpointKept(dir, layout, p);

        // the failed attempt's directory is replaced by the next one, and cleaned up after it commits
        committed(runRanks(dir, layout, dt, 2, 20, true, zeroPieces(layout, p, m, m)));
        assertEquals(List.of("latest", "step-000010", "step-000020"), listing(dir));
    }

    @Test
    void aCrashedAttemptsTemporaryDirectoryIsReplaced() throws Exception {
        ParamLayout layout = layout();
        DataType dt = DataType.DOUBLE;
        INDArray p = random(layout, dt, 41);
        INDArray m = random(layout, dt, 42);
        INDArray v = random(layout, dt, 43);
        Path dir = checkpoints("crashed");
        // what a crash of an earlier attempt (maybe with another world size) left: wrong sizes, parts files that
        // claim everything was written, even a manifest
        Path stale = dir.resolve(".tmp-step-000030-shared");
        Files.createDirectories(stale.resolve("params"));
        Files.createDirectories(stale.resolve("parts"));
        Files.writeString(stale.resolve("params/wte.weight.bin"), "partial");
        Files.writeString(stale.resolve("manifest.json"), "{}");
        for (int r = 0; r < 3; r++) {
            Files.writeString(stale.resolve("parts/rank-" + r + ".json"), "{\"rank\": " + r + ", \"step\": 30, "
                    + "\"pieces\": []}");
        }
        Files.writeString(stale.resolve("FAILED"), "old news");

        // its parts files must not count: a real gap is still found
        List<List<Piece>> gap = zeroPieces(layout, p, m, v);
        gap.get(0).removeIf(x -> x.part() == Part.PARAMS && x.tensor().equals("ln_f.bias"));
        assertFailedEverywhere(runRanks(dir, layout, dt, 0, 30, true, gap),
                "ln_f.bias (parameters, 1 elements): elements [0, 1) were written by no rank");

        Files.writeString(stale.resolve("params/wte.weight.bin"), "partial again");
        Path committedDir = committed(runRanks(dir, layout, dt, 0, 30, true, zeroPieces(layout, p, m, v)));
        assertSameFiles(CheckpointWriter.write(checkpoints("single"), 30, layout, p, m, v, 30, extra(30), 0),
                committedDir);
        assertEquals(List.of("latest", "step-000030"), listing(dir));
        assertFalse(Files.exists(committedDir.resolve("parts")));
    }

    @Test
    void aParametersOnlyCheckpointEqualsOneWritersAndMismatchedPiecesAreRefusedByTheirRank() throws Exception {
        ParamLayout layout = layout();
        INDArray p = random(layout, DataType.FLOAT, 51);
        List<String> names = layout.specs().stream().map(ParamSpec::name).toList();
        // two ranks split the tensors between them, no optimizer state
        List<List<Piece>> pieces = List.of(
                ShardedCheckpointWriter.wholeTensors(Part.PARAMS, layout, p, names.subList(0, 3)),
                ShardedCheckpointWriter.wholeTensors(Part.PARAMS, layout, p, names.subList(3, names.size())));
        Path dir = committed(runRanks(checkpoints("params"), layout, DataType.FLOAT, 0, 5, false, pieces));
        assertSameFiles(CheckpointWriter.write(checkpoints("single"), 5, layout, p, null, null, 5, extra(5), 0), dir);
        assertFalse(Checkpoint.load(dir).hasOptimizerState());

        // a float64 piece in a float32 checkpoint, and moments without optimizer state, are refused by their rank
        INDArray p64 = p.castTo(DataType.DOUBLE);
        List<List<Piece>> wrong = List.of(
                ShardedCheckpointWriter.wholeTensors(Part.PARAMS, layout, p64, names),
                ShardedCheckpointWriter.wholeTensors(Part.ADAM_M, layout, p, names));
        List<Outcome> out = runRanks(checkpoints("params"), layout, DataType.FLOAT, 0, 6, false, wrong);
        assertEquals("the piece of wte.weight comes from a DOUBLE buffer but the checkpoint is float32",
                out.get(0).error().getMessage());
        assertEquals("rank 1 has a piece of the AdamW m of wte.weight but the checkpoint is written without "
                + "optimizer state", out.get(1).error().getMessage());
        assertEquals(List.of("latest", "step-000005"), listing(checkpoints("params")).stream()
                .filter(n -> !n.startsWith(".tmp-")).toList());
    }

    @Test
    void aBrokenBarrierStopsTheRankAtOnceAndCommitsNothing() throws Exception {
        ParamLayout layout = layout();
        INDArray p = random(layout, DataType.FLOAT, 61);
        Path dir = checkpoints("broken");
        List<String> names = layout.specs().stream().map(ParamSpec::name).toList();
        List<String> seen = new ArrayList<>();
        // a peer died while writing: the group's barrier times out (the real one names the missing rank)
        ShardedCheckpointWriter.Barrier dies = what -> {
            seen.add(what);
            if (what.endsWith("pieces written")) {
                throw new IllegalStateException("barrier '" + what + "' timed out waiting for rank 1");
            }
        };
        ShardedCheckpointWriter w = new ShardedCheckpointWriter(dir, layout, DataType.FLOAT, 0, 0, 2, dies);
        IllegalStateException e = assertThrows(IllegalStateException.class,
                () -> w.write(70, false, 0, Map.of(), ShardedCheckpointWriter.wholeTensors(Part.PARAMS, layout, p,
                        names)));
        assertEquals("barrier 'checkpoint step-000070: pieces written' timed out waiting for rank 1", e.getMessage());
        assertEquals(List.of("checkpoint step-000070: files created", "checkpoint step-000070: pieces written"), seen);
        assertFalse(Files.exists(dir.resolve("step-000070")));
        assertFalse(Files.exists(dir.resolve("latest")));
    }

    static void assertFailedEverywhere(List<Outcome> out, String problem) {
        for (int r = 0; r < out.size(); r++) {
            Throwable e = out.get(r).error();
            assertNull(out.get(r).dir(), "rank " + r + " returned a directory");
            assertNotNull(e, "rank " + r + " did not fail");
            assertInstanceOf(IOException.class, e, "rank " + r);
            assertTrue(e.getMessage().contains(problem), "rank " + r + ": " + e.getMessage());
            if (r > 0) {
                assertTrue(e.getMessage().startsWith("checkpoint step-0000"), e.getMessage());
                assertTrue(e.getMessage().contains("was not committed by rank 0; rank 0 says: "), e.getMessage());
            }
        }
    }

    void assertPreviousCheckpointKept(Path dir, ParamLayout layout, INDArray p) throws IOException {
        assertEquals("step-000010\n", Files.readString(dir.resolve("latest")));
        assertFalse(Files.exists(dir.resolve("step-000020")));
        Checkpoint c = Checkpoint.load(dir);
        assertEquals(10, c.step());
        INDArray back = Nd4j.zeros(p.dataType(), layout.size());
        c.readParams(layout, back);
        assertArrayEquals(bits(p), bits(back));
    }

    /** Same relative files with the same bytes; manifests equal except for written_at. */
    static void assertSameFiles(Path expected, Path actual) throws IOException {
        List<String> files = relativeFiles(expected);
        assertEquals(files, relativeFiles(actual));
        for (String f : files) {
            byte[] a = Files.readAllBytes(expected.resolve(f));
            byte[] b = Files.readAllBytes(actual.resolve(f));
            if (f.equals(CheckpointFiles.MANIFEST)) {
                String sa = withoutWrittenAt(new String(a, StandardCharsets.UTF_8));
                String sb = withoutWrittenAt(new String(b, StandardCharsets.UTF_8));
                assertEquals(sa, sb);
            } else {
                assertArrayEquals(a, b, f);
            }
        }
    }

    static String withoutWrittenAt(String manifest) {
        String s = manifest.replaceAll("\"written_at\" : \"[^\"]*\"", "\"written_at\" : \"-\"");
        assertFalse(s.equals(manifest), "no written_at in " + manifest);
        return s;
    }

    static List<String> relativeFiles(Path dir) throws IOException {
        try (Stream<Path> s = Files.walk(dir)) {
            return s.filter(Files::isRegularFile).map(x -> dir.relativize(x).toString()).sorted()
                    .collect(Collectors.toList());
        }
    }

    static List<String> listing(Path dir) throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            return s.map(x -> x.getFileName().toString()).sorted().collect(Collectors.toList());
        }
    }
}
