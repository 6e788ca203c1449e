package io.dtrain.metrics;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.google.protobuf.ByteString;
import com.google.protobuf.UnknownFieldSet;
import io.dtrain.config.RunConfig;
import io.dtrain.train.RunContext;
import io.dtrain.train.StepStats;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The TensorBoard event files, read back independently of the writer: TFRecord framing with the CRC32C of the
 * Castagnoli polynomial computed bit by bit here and masked as TensorFlow's {@code crc32c::Mask}, and each record
 * decoded by protobuf-java's own wire-format parser ({@code UnknownFieldSet}) by the field numbers of
 * tensorflow/core/util/event.proto and summary.proto. Every value must be the JSONL record's.
 */
class TensorBoardEventsTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    /** One decoded Event. */
    record Event(double wallTime, long step, String fileVersion, Map<String, Float> values) {
    }

    /** CRC-32C, reflected polynomial 0x82F63B78, one bit at a time (deliberately not java.util.zip.CRC32C). */
    static int crc32c(byte[] data) {
        int crc = 0xffffffff;
        for (byte b : data) {
            crc ^= b & 0xff;
            for (int k = 0; k < 8; k++) {
                crc = (crc >>> 1) ^ (0x82F63B78 & -(crc & 1));
            }
        }
        return ~crc;
    }

    static int mask(int crc) {
        return Integer.rotateRight(crc, 15) + 0xa282ead8;
    }

    static List<Event> read(Path file) throws IOException {
        ByteBuffer b = ByteBuffer.wrap(Files.readAllBytes(file)).order(ByteOrder.LITTLE_ENDIAN);
        List<Event> events = new ArrayList<>();
        while (b.hasRemaining()) {
            byte[] lengthBytes = new byte[8];
            b.get(lengthBytes);
            assertEquals(mask(crc32c(lengthBytes)), b.getInt(), "length CRC of record " + events.size());
            byte[] data = new byte[(int) ByteBuffer.wrap(lengthBytes).order(ByteOrder.LITTLE_ENDIAN).getLong()];
            b.get(data);
            assertEquals(mask(crc32c(data)), b.getInt(), "data CRC of record " + events.size());
            events.add(decode(data));
        }
        return events;
    }

    /** Event: 1 wall_time (double), 2 step (int64), 3 file_version (string), 5 summary; Summary.Value: 1 tag, 2 simple_value. */
    static Event decode(byte[] data) throws IOException {
        UnknownFieldSet event = UnknownFieldSet.parseFrom(data);
        double wall = Double.longBitsToDouble(event.getField(1).getFixed64List().get(0));
        long step = event.hasField(2) ? event.getField(2).getVarintList().get(0) : 0;
        String version = event.hasField(3) ? event.getField(3).getLengthDelimitedList().get(0).toStringUtf8() : null;
        Map<String, Float> values = new LinkedHashMap<>();
        if (event.hasField(5)) {
            UnknownFieldSet summary = UnknownFieldSet.parseFrom(event.getField(5).getLengthDelimitedList().get(0));
            for (ByteString v : summary.getField(1).getLengthDelimitedList()) {
                UnknownFieldSet value = UnknownFieldSet.parseFrom(v);
                values.put(value.getField(1).getLengthDelimitedList().get(0).toStringUtf8(),
                        Float.intBitsToFloat(value.getField(2).getFixed32List().get(0)));
            }
        }
        return new Event(wall, step, version, values);
    }

    @Test
    void theMaskedCrcOfTheTestIsTensorFlows() {
        // CRC-32C check value of "123456789" (RFC 3720), and the writer's masked CRC equals the test's
        assertEquals(0xE3069283, crc32c("123456789".getBytes()));
        byte[] any = "brain.Event:2".getBytes();
        assertEquals(mask(crc32c(any)), TensorBoardEvents.maskedCrc32c(any));
    }

    @Test
    void stepAndEvaluationScalarsEqualTheJsonlRecords(@TempDir Path tmp) throws IOException {
        Path runDir = tmp.resolve("run");
        RunConfig cfg = RunMetricsTest.config(runDir, 0, 0);
        Path eventFile;
        try (RunMetrics metrics = RunMetrics.start(cfg, new RunContext(0, 2, 0, 2), 30_000)) {
            eventFile = metrics.tensorboardFile();
            for (int step = 0; step < 3; step++) {
                metrics.step(new StepStats(step, 2.5 / (step + 1), 1e-3 * (step + 1), 0.75 + step, 1024, 200 + step,
                        20, 150, 25, false, 50, 100, 5 + step, step == 1 ? Double.NaN : 7.5));
            }
            metrics.eval(3, 1.2345678, 4);
        }
        try (Stream<Path> files = Files.list(runDir.resolve("tensorboard/rank0"))) {
            assertEquals(List.of(eventFile), files.toList());
        }
        assertTrue(eventFile.getFileName().toString().startsWith("events.out.tfevents."), eventFile.toString());

        List<Event> events = read(eventFile);
        assertEquals(5, events.size(), "the version record, three steps, one evaluation");
        assertEquals("brain.Event:2", events.get(0).fileVersion());
        assertTrue(Math.abs(events.get(0).wallTime() - System.currentTimeMillis() / 1000.0) < 600);

        List<JsonNode> lines = new ArrayList<>();
        for (String l : Files.readAllLines(runDir.resolve("metrics/steps-rank0.jsonl"))) {
            lines.add(JSON.readTree(l));
        }
        for (int i = 0; i < 3; i++) {
            JsonNode j = lines.get(i);
            Event e = events.get(i + 1);
            assertEquals(j.get("step").asLong() + 1, e.step(), "the x axis is steps done");
            assertEquals(j.get("ts").asLong() / 1000.0, e.wallTime(), 1e-9);
            assertEquals((float) j.get("loss").asDouble(), e.values().get("loss/train"));
            assertEquals((float) j.get("lr").asDouble(), e.values().get("optim/lr"));
            assertEquals((float) j.get("grad_norm").asDouble(), e.values().get("optim/grad_norm"));
            Map<String, String> measured = Map.of("throughput/tokens_per_s", "tokens_per_s", "throughput/mfu", "mfu",
                    "time_ms/step", "step_ms", "time_ms/data_wait", "data_wait_ms", "time_ms/compute", "compute_ms",
                    "time_ms/forward", "forward_ms", "time_ms/backward", "backward_ms", "time_ms/optimizer",
                    "optimizer_ms", "time_ms/comm", "comm_ms", "time_ms/other", "other_ms");
            for (Map.Entry<String, String> m : measured.entrySet()) {
                double expected = j.get(m.getValue()).asDouble();
                assertEquals(expected, e.values().get(m.getKey()), Math.abs(expected) * 1e-5, m.getKey());
            }
            if (j.get("bubble_ms").isNull()) {
                assertTrue(!e.values().containsKey("time_ms/bubble"), "a phase not measured is left out");
            } else {
                assertEquals((float) j.get("bubble_ms").asDouble(), e.values().get("time_ms/bubble"));
            }
        }
        JsonNode eval = lines.get(3);
        Event e = events.get(4);
        assertEquals("eval", eval.get("type").asText());
        assertEquals(3, e.step());
        assertEquals((float) eval.get("val_loss").asDouble(), e.values().get("loss/val"));
        assertEquals((float) eval.get("val_ppl").asDouble(), e.values().get("loss/val_ppl"));
    }
}
