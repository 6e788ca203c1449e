package io.dtrain.checkpoint;

import com.fasterxml.jackson.databind.JsonNode;
import io.dtrain.config.OutputConfig;
import io.dtrain.model.ParamKind;
import io.dtrain.model.ParamLayout;
import io.dtrain.model.ParamSpec;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.stream.Collectors;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class CheckpointTest {
    @TempDir
    Path run;

    static ParamLayout layout() {
        return ParamLayout.builder()
                .add("wte.weight", ParamKind.EMBEDDING, 0, 8, 4)
                .add("h.0.ln_1.weight", ParamKind.NORM, 0, 4)
                .add("h.0.attn.c_attn.weight", ParamKind.MATRIX, 0, 4, 6)
                .add("h.0.attn.c_attn.bias", ParamKind.BIAS, 1, 6)
                .add("ln_f.bias", ParamKind.NORM, 1, 4)
                .build();
    }

    /** Same tensors, another order and stage split. */
    static ParamLayout reordered() {
        return ParamLayout.builder()
                .add("ln_f.bias", ParamKind.NORM, 0, 4)
                .add("h.0.attn.c_attn.bias", ParamKind.BIAS, 0, 6)
                .add("h.0.attn.c_attn.weight", ParamKind.MATRIX, 1, 4, 6)
                .add("wte.weight", ParamKind.EMBEDDING, 1, 8, 4)
                .add("h.0.ln_1.weight", ParamKind.NORM, 1, 4)
                .build();
    }

    static INDArray random(ParamLayout layout, DataType dt, long seed) {
        Random r = new Random(seed);
        double[] d = new double[(int) layout.size()];
        for (int i = 0; i < d.length; i++) {
            d[i] = r.nextGaussian();
        }
        INDArray a = Nd4j.createFromArray(d).castTo(dt);
        // values whose bits a lossy path would change
        a.putScalar(0, -0.0);
        a.putScalar(1, Double.NaN);
        a.putScalar(2, dt == DataType.FLOAT ? Float.MIN_VALUE : Double.MIN_VALUE);
        a.putScalar(3, Double.NEGATIVE_INFINITY);
        return a;
    }

    static long[] bits(INDArray a) {
        long[] out = new long[(int) a.length()];
        for (int i = 0; i < out.length; i++) {
            out[i] = a.dataType() == DataType.FLOAT ? Float.floatToRawIntBits(a.getFloat(i))
                    : Double.doubleToRawLongBits(a.getDouble(i));
        }
        return out;
    }

    Path checkpoints() {
        return run.resolve("checkpoints");
    }

    Path write(long step, ParamLayout layout, INDArray p, INDArray m, INDArray v, int keep) throws IOException {
        return CheckpointWriter.write(checkpoints(), step, layout, p, m, v, step, Map.of("tokens_seen", step * 1024),
                keep);
    }

    @Test
    void roundTripIsBitExactForFloat32AndFloat64() throws IOException {
        ParamLayout layout = layout();
        for (DataType dt : new DataType[] {DataType.FLOAT, DataType.DOUBLE}) {
            INDArray p = random(layout, dt, 1);
            INDArray m = random(layout, dt, 2);
            INDArray v = random(layout, dt, 3);
            Map<String, Object> extra = Map.of("tokens_seen", 123456789012L,
                    "rng", Map.of("seed", 1337, "state", List.of(1, 2, 3)),
                    "loader", Map.of("shard", "train-00001.jsonl.zst", "offset", 4096),
                    "config", new OutputConfig("runs/x", 3));
            long step = dt == DataType.FLOAT ? 120 : 121;
            Path dir = CheckpointWriter.write(checkpoints(), step, layout, p, m, v, 77, extra, 0);
            assertEquals(checkpoints().resolve(dt == DataType.FLOAT ? "step-000120" : "step-000121"), dir);
            assertTrue(Files.isRegularFile(dir.resolve("params/h.0.attn.c_attn.weight.bin")));
            assertEquals(24 * (dt == DataType.FLOAT ? 4 : 8), Files.size(dir.resolve("params/h.0.attn.c_attn.weight.bin")));
            assertTrue(Files.isRegularFile(dir.resolve("optim/wte.weight.m.bin")));

            Checkpoint c = Checkpoint.load(run);
            assertEquals(dir, c.directory());
            assertEquals(step, c.step());
            assertEquals(123456789012L, c.tokensSeen());
            assertEquals(77, c.adamStep());
            assertTrue(c.hasOptimizerState());
            assertEquals(3, c.config().get("keep_checkpoints").asInt());
            assertEquals("runs/x", c.config().get("dir").asText());
            assertEquals(Map.of("seed", 1337, "state", List.of(1, 2, 3)), c.extra().get("rng"));
            assertEquals(4096, ((Map<?, ?>) c.extra().get("loader")).get("offset"));
            assertEquals(Set.of("tokens_seen", "rng", "loader", "config"), c.extra().keySet());
            JsonNode man = c.manifest();
            assertEquals(1, man.get("format_version").asInt());
            assertEquals(dt == DataType.FLOAT ? "float32" : "float64", man.get("dtype").asText());
            assertEquals("[4,6]", man.get("tensors").get("h.0.attn.c_attn.weight").get("shape").toString());
            assertTrue(man.get("written_at").asText().endsWith("Z"));

            INDArray p2 = Nd4j.zeros(dt, layout.size());
            INDArray m2 = Nd4j.zeros(dt, layout.size());
            INDArray v2 = Nd4j.zeros(dt, layout.size());
            c.readParams(layout, p2);
            c.readOptimizer(layout, m2, v2);
            assertArrayEquals(bits(p), bits(p2), dt.toString());
            assertArrayEquals(bits(m), bits(m2));
            assertArrayEquals(bits(v), bits(v2));
            c.verify();
        }
    }

    @Test
    void loadsByNameIntoAnotherOrderAndConvertsDtype() throws IOException {
        ParamLayout a = layout();
        ParamLayout b = reordered();
        INDArray p = random(a, DataType.FLOAT, 5);
        p.putScalar(1, 0.25);   // no NaN here: compared with equals below
        INDArray m = random(a, DataType.FLOAT, 6);
        m.putScalar(1, 0.5);
        write(10, a, p, m, m, 0);
        Checkpoint c = Checkpoint.load(checkpoints());

        INDArray pb = Nd4j.zeros(DataType.FLOAT, b.size());
        c.readParams(b, pb);
        INDArray pd = Nd4j.zeros(DataType.DOUBLE, b.size());
        c.readParams(b, pd);
        for (ParamSpec s : a.specs()) {
            assertEquals(a.view(p, s.name()), b.view(pb, s.name()), s.name());
            assertArrayEquals(a.view(p, s.name()).castTo(DataType.DOUBLE).ravel().toDoubleVector(),
                    b.view(pd, s.name()).ravel().toDoubleVector(), 0.0, s.name());
        }
        assertFalse(p.equals(pb));   // the order really differs

        // a ZeRO-1 shard of the optimizer state, crossing tensor boundaries
        INDArray ms = Nd4j.zeros(DataType.FLOAT, 30);
        INDArray vs = Nd4j.zeros(DataType.FLOAT, 30);
        c.readOptimizerShard(a, 20, 50, ms, vs);
        assertEquals(m.get(NDArrayIndex.interval(20, 50)), ms);

        // float64 checkpoint into float32 buffers: an explicit rounding cast
        INDArray p64 = random(a, DataType.DOUBLE, 8);
        p64.putScalar(1, 1.0 / 3.0);
        write(11, a, p64, null, null, 0);
        INDArray p32 = Nd4j.zeros(DataType.FLOAT, a.size());
        Checkpoint c11 = Checkpoint.load(checkpoints());
        assertFalse(c11.hasOptimizerState());
        c11.readParams(a, p32);
        assertEquals((float) (1.0 / 3.0), p32.getFloat(1));
        assertEquals((float) p64.getDouble(17), p32.getFloat(17));
        CheckpointException e = assertThrows(CheckpointException.class, c11::adamStep);
        assertTrue(e.getMessage().contains("has no optimizer state"), e.getMessage());
    }

    @Test
    void latestFollowsTheNewestAndOnlyTheLastKAreKept() throws IOException {
        ParamLayout layout = layout();
        INDArray p = random(layout, DataType.FLOAT, 1);
        for (long step = 10; step <= 50; step += 10) {
            write(step, layout, p, p, p, 2);
            assertEquals(String.format("step-%06d", step),
                    Files.readString(checkpoints().resolve("latest")).trim());
            assertEquals(step, Checkpoint.load(run).step());
        }
        assertEquals(List.of("latest", "step-000040", "step-000050"), listing());
        // an earlier step written after later ones (a resume from an older checkpoint) is kept: it is the newest
        write(20, layout, p, p, p, 2);
        assertEquals(List.of("latest", "step-000020", "step-000050"), listing());
        assertEquals(20, Checkpoint.load(run).step());
        // keepLast <= 0 keeps everything; rewriting a step replaces it
        write(60, layout, p, p, p, 0);
        write(60, layout, p, p, p, 0);
        assertEquals(List.of("latest", "step-000020", "step-000050", "step-000060"), listing());
        assertEquals(60, Checkpoint.load(checkpoints().resolve("step-000060")).step());
        assertEquals(50, Checkpoint.load(checkpoints().resolve("step-000050")).step());
    }

    @Test
    void aKilledWriteIsIgnoredAndCleanedUp() throws IOException {
        ParamLayout layout = layout();
        INDArray p = random(layout, DataType.FLOAT, 1);
        write(10, layout, p, p, p, 3);
        // what a write killed half-way leaves behind
        Path dead = checkpoints().resolve(".tmp-step-000020-deadbeef");
        Files.createDirectories(dead.resolve("params"));
        Files.writeString(dead.resolve("params/wte.weight.bin"), "partial");
        Files.writeString(checkpoints().resolve("latest.tmp-123"), "step-0000");
        assertEquals(10, Checkpoint.load(run).step());
        write(30, layout, p, p, p, 3);
        assertEquals(List.of("latest", "step-000010", "step-000030"), listing());
        // killed between the rename and the `latest` update: the newest complete one is used
        Files.delete(checkpoints().resolve("latest"));
        assertEquals(30, Checkpoint.load(run).step());
        assertEquals(30, Checkpoint.load(checkpoints()).step());
    }

    @Test
    void freshRunHasNoCheckpoint() throws IOException {
        Files.createDirectories(checkpoints());
        assertTrue(Checkpoint.findLatest(run).isEmpty());
        CheckpointException e = assertThrows(CheckpointException.class, () -> Checkpoint.load(run));
        assertTrue(e.getMessage().startsWith("no checkpoint under " + run), e.getMessage());
        e = assertThrows(CheckpointException.class, () -> Checkpoint.load(run.resolve("nope")));
        assertTrue(e.getMessage().contains("nope: the directory does not exist"), e.getMessage());
    }

    @Test
    void aLatestPointerToAMissingOrGarbledStepNamesTheCheckpointsThatExist() throws IOException {
        ParamLayout layout = layout();
        INDArray p = random(layout, DataType.FLOAT, 1);
        write(10, layout, p, p, p, 3);
        Files.writeString(checkpoints().resolve("latest"), "step-000099\n");
        CheckpointException e = assertThrows(CheckpointException.class, () -> Checkpoint.load(run));
        assertTrue(e.getMessage().startsWith("no checkpoint under " + checkpoints()), e.getMessage());
        assertTrue(e.getMessage().contains("names step-000099 but"), e.getMessage());
        assertTrue(e.getMessage().contains("write one of [step-000010] into it"), e.getMessage());
        Files.writeString(checkpoints().resolve("latest"), "garbage");
        e = assertThrows(CheckpointException.class, () -> Checkpoint.load(run));
        assertTrue(e.getMessage().contains("says 'garbage'"), e.getMessage());
    }

    @Test
    void damagedFilesGiveClearErrors() throws IOException {
        ParamLayout layout = layout();
        INDArray p = random(layout, DataType.FLOAT, 1);
        Path dir = write(10, layout, p, p, p, 0);
        Path weight = dir.resolve("params/h.0.attn.c_attn.weight.bin");
        INDArray into = Nd4j.zeros(DataType.FLOAT, layout.size());

        // flipped byte: size fine, checksum not
        byte[] original = Files.readAllBytes(weight);
        try (RandomAccessFile f = new RandomAccessFile(weight.toFile(), "rw")) {
            f.seek(37);
            int b = f.read();
            f.seek(37);
            f.write(b ^ 0x10);
        }
        Checkpoint c = Checkpoint.load(dir);
        CheckpointException e = assertThrows(CheckpointException.class, () -> c.readParams(layout, into));
        assertTrue(e.getMessage().startsWith("checksum mismatch in " + weight + " (h.0.attn.c_attn.weight)"),
                e.getMessage());
        assertTrue(e.getMessage().contains("the file is corrupt"), e.getMessage());
        assertThrows(CheckpointException.class, c::verify);

        // truncated
        Files.write(weight, java.util.Arrays.copyOf(original, 50));
        e = assertThrows(CheckpointException.class, () -> Checkpoint.load(dir));
        assertEquals(weight + " has 50 bytes but the manifest says h.0.attn.c_attn.weight is [4, 6] float32 = 96 "
                + "bytes: the file is truncated or corrupt; resume from an older step directory", e.getMessage());

        // missing
        Files.delete(weight);
        e = assertThrows(CheckpointException.class, () -> Checkpoint.load(dir));
        assertTrue(e.getMessage().startsWith("missing tensor file " + weight + " for h.0.attn.c_attn.weight"),
                e.getMessage());
        Files.write(weight, original);
        Checkpoint.load(dir).readParams(layout, into);
        assertEquals(p.get(NDArrayIndex.interval(5, 60)), into.get(NDArrayIndex.interval(5, 60)));

        // garbage manifest, then missing manifest
        Path manifest = dir.resolve("manifest.json");
        String good = Files.readString(manifest);
        Files.writeString(manifest, "{\"format_version\": 1, \"step\": 10, \"tensors\": {");
        e = assertThrows(CheckpointException.class, () -> Checkpoint.load(dir));
        assertTrue(e.getMessage().startsWith("cannot parse " + manifest), e.getMessage());
        assertTrue(e.getMessage().contains("the manifest is corrupt"), e.getMessage());
        Files.writeString(manifest, good.replace("\"step\" : 10", "\"step\" : \"ten\""));
        e = assertThrows(CheckpointException.class, () -> Checkpoint.load(dir));
        assertTrue(e.getMessage().contains(manifest + ": step is missing or not an integer"), e.getMessage());
        Files.delete(manifest);
        e = assertThrows(CheckpointException.class, () -> Checkpoint.load(dir));
        assertTrue(e.getMessage().contains(manifest + " is missing"), e.getMessage());
    }

    @Test
    void aLayoutThatDoesNotMatchIsNamed() throws IOException {
        ParamLayout layout = layout();
        INDArray p = random(layout, DataType.FLOAT, 1);
        write(10, layout, p, null, null, 0);
        Checkpoint c = Checkpoint.load(run);

        ParamLayout wider = ParamLayout.builder().add("h.0.attn.c_attn.weight", ParamKind.MATRIX, 0, 4, 8).build();
        CheckpointException e = assertThrows(CheckpointException.class,
                () -> c.readParams(wider, Nd4j.zeros(DataType.FLOAT, wider.size())));
        assertTrue(e.getMessage().startsWith("h.0.attn.c_attn.weight: file has 24 values, layout expects [4, 8]"),
                e.getMessage());

        ParamLayout transposed = ParamLayout.builder().add("h.0.attn.c_attn.weight", ParamKind.MATRIX, 0, 6, 4).build();
        e = assertThrows(CheckpointException.class,
                () -> c.readParams(transposed, Nd4j.zeros(DataType.FLOAT, transposed.size())));
        assertTrue(e.getMessage().startsWith("h.0.attn.c_attn.weight: checkpoint shape [4, 6], layout expects [6, 4]"),
                e.getMessage());

        ParamLayout deeper = ParamLayout.builder().add("h.1.attn.c_attn.weight", ParamKind.MATRIX, 0, 4, 6).build();
        e = assertThrows(CheckpointException.class,
                () -> c.readParams(deeper, Nd4j.zeros(DataType.FLOAT, deeper.size())));
        assertTrue(e.getMessage().contains("has no parameter h.1.attn.c_attn.weight (it has 5 tensors, e.g. "
                + "wte.weight, h.0.ln_1.weight, h.0.attn.c_attn.weight)"), e.getMessage());

        // a stage that holds only some of the tensors loads them by name
        ParamLayout stage1 = ParamLayout.builder().add("ln_f.bias", ParamKind.NORM, 1, 4).build();
        INDArray s1 = Nd4j.zeros(DataType.FLOAT, 4);
        c.readParams(stage1, s1);
        assertEquals(layout.view(p, "ln_f.bias"), s1);
    }

    List<String> listing() throws IOException {
        try (Stream<Path> s = Files.list(checkpoints())) {
            return s.map(x -> x.getFileName().toString()).sorted().collect(Collectors.toList());
        }
    }
}
