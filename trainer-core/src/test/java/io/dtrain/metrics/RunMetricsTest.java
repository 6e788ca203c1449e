package io.dtrain.metrics;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.dtrain.config.ConfigLoader;
import io.dtrain.config.MetricsConfig;
import io.dtrain.config.RunConfig;
import io.dtrain.train.RunContext;
import io.dtrain.train.StepStats;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

public class RunMetricsTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    @Test
    void flopsPerTokenIsPalmsFormulaWithNanoGptsParameterCount() {
        RunConfig gpt2 = ConfigLoader.fromMap(Map.of("data.train", "/abs/corpus", "training.steps", 1,
                "model.vocab_size", 50257, "model.seq_len", 1024, "model.d_model", 768, "model.n_layer", 12,
                "model.n_head", 12));
        // GPT-2 small: 124,439,808 parameters, of which 123,653,376 without the position embedding (nanoGPT's
        // "123.65M"); 6N + 12 L d T = 741,920,256 + 113,246,208.
        assertEquals(855_166_464.0, Mfu.flopsPerToken(gpt2.model(), 124_439_808L));
        assertEquals(6.0 * 1000 + 12.0 * 2 * 8 * 4, Mfu.flopsPerToken(1000, 2, 8, 4));
        // nanoGPT's example: 0.5M tokens/step at 855 MFLOP/token in 3.5 s on 1 A100 is 39% MFU.
        assertEquals(855_166_464.0 * 524_288 / 3.5 / 312e12, Mfu.mfu(855_166_464.0, 524_288, 3.5, Mfu.A100), 1e-12);
        assertEquals(0.41, Mfu.mfu(855_166_464.0, 524_288, 3.5, Mfu.A100), 0.01);
        assertTrue(Double.isNaN(Mfu.mfu(1, 1, 0, 1)));
    }

    @Test
    void peakComesFromTheConfigTheDeviceOrTheCpuMeasurement() {
        assertEquals(125e12, Mfu.peakFlops(new MetricsConfig(500, "v100", 0, 0, true), () -> 1));
        assertEquals(312e12, Mfu.peakFlops(new MetricsConfig(500, "a100", 0, 0, true), () -> 1));
        assertEquals(989e12, Mfu.peakFlops(new MetricsConfig(500, "h100", 0, 0, true), () -> 1));
        assertEquals(7e10, Mfu.peakFlops(new MetricsConfig(500, "cpu", 0, 0, true), () -> 7e10));
        assertEquals(5e12, Mfu.peakFlops(new MetricsConfig(500, "h100", 5e12, 0, true), () -> 1));
        assertThrows(IllegalArgumentException.class, () -> Mfu.devicePeak("tpu"));
    }

    @Test
    void gemmBenchmarkMeasuresACorrectProduct() {
        List<GemmBenchmark.Result> results = GemmBenchmark.run(new int[] {32, 128}, 20);
        assertEquals(2, results.size());
        for (GemmBenchmark.Result r : results) {
            assertTrue(r.repetitions() >= 1);
            assertTrue(r.flopsPerSecond() > 0);
            assertEquals(2.0 * r.n() * r.n() * r.n() / (r.millisPerGemm() / 1000), r.flopsPerSecond(),
                    1e-6 * r.flopsPerSecond());
        }
        assertEquals(Math.max(results.get(0).flopsPerSecond(), results.get(1).flopsPerSecond()),
                GemmBenchmark.best(results));
    }

    /** A small run whose metrics go to {@code runDir} (also used by the report tests). */
    public static RunConfig config(Path runDir, int intervalMs, int prometheusPort) {
        return ConfigLoader.fromMap(Map.of("data.train", "/abs/corpus", "training.steps", 3,
                "output.dir", runDir.toString(), "model.seq_len", 16, "model.d_model", 32, "model.n_layer", 2,
                "metrics", Map.of("interval_ms", intervalMs, "device", "v100", "prometheus_port", prometheusPort)));
    }

    /** The values of the public String constants of {@code fields} (its own, not its nested classes'). */
    private static Set<String> declared(Class<?> fields) throws IllegalAccessException {
        Set<String> names = new HashSet<>();
        for (java.lang.reflect.Field f : fields.getDeclaredFields()) {
            if (f.getType() == String.class && java.lang.reflect.Modifier.isStatic(f.getModifiers())) {
                names.add((String) f.get(null));
            }
        }
        return names;
    }

    private static Set<String> keys(JsonNode object) {
        Set<String> names = new HashSet<>();
        object.fieldNames().forEachRemaining(names::add);
        return names;
    }

    @Test
    void stepAndSystemLinesUseExactlyTheDeclaredFieldNames(@TempDir Path tmp) throws Exception {
        Path runDir = tmp.resolve("run");
        try (RunMetrics metrics = RunMetrics.start(config(runDir, 60_000, 0),
                new RunContext(0, 1, 0, 1), 30_000)) {
            metrics.step(new StepStats(0, 2.5, 1e-3, 0.75, 1024, 200, 20, 150, 25, false, 50, 100, 5, 3));
        }
        JsonNode step = JSON.readTree(Files.readAllLines(runDir.resolve("metrics/steps-rank0.jsonl")).get(0));
        assertEquals(declared(StepFields.class), keys(step));

        JsonNode sample = JSON.readTree(new SystemSample(1, 0, 0, 50, 1, 20, 2, 100, 50, 10, 5, 8, 3, 4, 0,
                Map.of("lo", new SystemSample.Rates(1, 2)), 0, 0, 0, 0,
                List.of(new GpuSample(0, "T4", 40, 1, 2, 70, 60))).toJson());
        assertEquals(declared(SystemFields.class), keys(sample));
        assertEquals(declared(SystemFields.Net.class), keys(sample.get(SystemFields.NET).get("lo")));
        assertEquals(declared(SystemFields.Gpu.class), keys(sample.get(SystemFields.GPUS).get(0)));
    }

    static int freePort() throws Exception {
        try (ServerSocket s = new ServerSocket(0)) {
            return s.getLocalPort();
        }
    }

    @Test
    void stepsSystemSamplesTraceAndPrometheusOfOneRank(@TempDir Path tmp) throws Exception {
        Path runDir = tmp.resolve("run");
        int port = freePort();
        RunConfig cfg = config(runDir, 25, port);
        long params = 30_000;
        double fpt = Mfu.flopsPerToken(cfg.model(), params);
        RunContext two = new RunContext(0, 2, 0, 2);
        try (RunMetrics metrics = RunMetrics.start(cfg, two, params)) {
            assertEquals(port, metrics.prometheusPort());
            assertEquals(125e12, metrics.peakFlops());
            assertTrue(metrics.describe().contains("Prometheus on :" + port), metrics.describe());
            Tracer tracer = metrics.tracer();
            for (int step = 0; step < 3; step++) {
                long t0 = System.nanoTime();
                try (Tracer.Span s = tracer.begin("data_wait", "data")) {
                    Thread.sleep(2);
                }
                long c0 = System.nanoTime();
                Thread.sleep(3);
                tracer.span("forward_backward", "compute", c0, System.nanoTime());
                Thread worker = new Thread(() -> tracer.span("allreduce", "comm", System.nanoTime(), System.nanoTime() + 1000),
                        "comm-thread");
                worker.start();
                worker.join();
                tracer.span("step", "step", t0, System.nanoTime());
                metrics.step(new StepStats(step, 2.5 - step, 1e-3, 0.75, 1024, 200, 20, 150, 25, false, 50, 100, 5));
            }
            HttpResponse<String> scrape = HttpClient.newHttpClient().send(
                    HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + "/metrics")).build(),
                    HttpResponse.BodyHandlers.ofString());
            assertEquals(200, scrape.statusCode());
            assertEquals(PrometheusEndpoint.CONTENT_TYPE, scrape.headers().firstValue("Content-Type").orElseThrow());
            String body = scrape.body();
            assertTrue(body.contains("# TYPE dtrain_loss gauge\n"), body);
            assertTrue(body.contains("\ndtrain_loss{rank=\"0\"} 0.5\n"), body);
            assertTrue(body.contains("\ndtrain_step{rank=\"0\"} 3\n"), body);
            assertTrue(body.contains("\ndtrain_phase_seconds{phase=\"data_wait\",rank=\"0\"} 0.02\n"), body);
            assertTrue(body.contains("\ndtrain_phase_seconds{phase=\"comm\",rank=\"0\"} 0.005\n"), body);
            assertEquals(1, body.split("# HELP dtrain_phase_seconds ", -1).length - 1, body);
            double mfu = fpt * 512 / 0.2 / 125e12; // 1024 tokens over 2 data-parallel ranks in 200 ms
            String mfuLine = body.lines().filter(l -> l.startsWith("dtrain_mfu{")).findFirst().orElseThrow();
            assertEquals(mfu, Double.parseDouble(mfuLine.substring(mfuLine.indexOf(' ') + 1)), mfu * 1e-12);

            long deadline = System.currentTimeMillis() + 10_000;
            while (metrics.latestSystemSample() == null && System.currentTimeMillis() < deadline) {
                Thread.sleep(10);
            }
            String again = HttpClient.newHttpClient().send(HttpRequest.newBuilder(
                    URI.create("http://127.0.0.1:" + port + "/metrics")).build(), HttpResponse.BodyHandlers.ofString()).body();
            assertTrue(again.contains("\ndtrain_cpu_percent{rank=\"0\"} "), again);
            assertTrue(again.contains("\ndtrain_offheap_bytes{rank=\"0\"} "), again);
        }

        List<String> steps = Files.readAllLines(runDir.resolve("metrics/steps-rank0.jsonl"));
        assertEquals(3, steps.size());
        JsonNode s2 = JSON.readTree(steps.get(2));
        assertEquals(2, s2.get("step").asLong());
        assertEquals(0.5, s2.get("loss").asDouble());
        assertEquals(50.0, s2.get("forward_ms").asDouble());
        assertEquals(100.0, s2.get("backward_ms").asDouble());
        assertEquals(5.0, s2.get("comm_ms").asDouble());
        assertEquals(0.0, s2.get("other_ms").asDouble());
        assertEquals(fpt, s2.get("flops_per_token").asDouble(), fpt * 1e-5);
        assertEquals(fpt * 512 / 0.2 / 125e12, s2.get("mfu").asDouble(), s2.get("mfu").asDouble() * 1e-5);
        assertEquals(fpt * 512 / 0.2, s2.get("achieved_flops").asDouble(), fpt * 512 / 0.2 * 1e-5);

        assertTrue(Files.readAllLines(runDir.resolve("metrics/system-rank0.jsonl")).size() >= 1);

        // trace.json: one complete event per phase per step, on two threads of process "rank 0".
        JsonNode trace = JSON.readTree(runDir.resolve("trace.json").toFile());
        List<JsonNode> spans = new ArrayList<>();
        Set<Long> tids = new HashSet<>();
        Set<String> threadNames = new HashSet<>();
        for (JsonNode e : trace.get("traceEvents")) {
            if (e.get("ph").asText().equals("X")) {
                spans.add(e);
                tids.add(e.get("tid").asLong());
                assertEquals(0, e.get("pid").asInt());
            } else if (e.get("name").asText().equals("thread_name")) {
                threadNames.add(e.get("args").get("name").asText());
            } else if (e.get("name").asText().equals("process_name")) {
                assertEquals("rank 0", e.get("args").get("name").asText());
            }
        }
        assertEquals(12, spans.size());
        assertEquals(4, tids.size(), "main + one comm thread per step");
        assertTrue(threadNames.contains("comm-thread"), threadNames.toString());
        assertEquals(List.of("data_wait", "forward_backward", "allreduce", "step"),
                spans.subList(0, 4).stream().map(e -> e.get("name").asText()).toList());
        JsonNode data = spans.get(0);
        JsonNode step = spans.get(3);
        assertTrue(data.get("dur").asDouble() >= 2000, data.toString()); // slept 2 ms
        assertTrue(step.get("ts").asDouble() <= data.get("ts").asDouble());
        assertTrue(step.get("ts").asDouble() + step.get("dur").asDouble()
                >= data.get("ts").asDouble() + data.get("dur").asDouble());
        double nowMicros = System.currentTimeMillis() * 1000.0;
        assertTrue(Math.abs(step.get("ts").asDouble() - nowMicros) < 60e6, "wall-clock microseconds");
    }

    @Test
    void clockOffsetShiftsSpansOntoRankZerosClock(@TempDir Path tmp) throws Exception {
        Path file = tmp.resolve("trace-rank1.json");
        long t = System.nanoTime();
        try (Tracer tracer = Tracer.open(file, 1)) {
            tracer.span("a", "x", t, t + 1_000_000);
            tracer.setClockOffsetMs(250);
            tracer.span("b", "x", t, t + 1_000_000);
        }
        JsonNode events = Tracer.readEvents(JSON, file);
        List<JsonNode> spans = new ArrayList<>();
        events.forEach(e -> {
            if (e.get("ph").asText().equals("X")) {
                spans.add(e);
            }
        });
        assertEquals(1000.0, spans.get(0).get("dur").asDouble());
        assertEquals(250_000.0, spans.get(0).get("ts").asDouble() - spans.get(1).get("ts").asDouble(), 1e-3);
        assertEquals(1, spans.get(0).get("pid").asInt());
    }

    @Test
    void mergeKeepsTheEventsOfATraceCutOffMidRun(@TempDir Path tmp) throws Exception {
        Path complete = tmp.resolve("metrics/trace-rank0.json");
        try (Tracer tracer = Tracer.open(complete, 0)) {
            tracer.span("step", "step", 0, 1000);
        }
        Path cut = tmp.resolve("metrics/trace-rank1.json");
        Tracer crashed = Tracer.open(cut, 1);
        crashed.span("step", "step", 0, 1000);
        crashed.span("step", "step", 2000, 3000);
        crashed.flush(); // the process dies here: no closing bracket
        String text = Files.readString(cut);
        assertFalse(text.strip().endsWith("]"));
        Files.writeString(tmp.resolve("metrics/trace-rank2.json"),
                text.replace("\"pid\":1", "\"pid\":2").substring(0, text.length() - 20));
        assertTrue(RunMetrics.mergeTraces(tmp));
        JsonNode merged = JSON.readTree(tmp.resolve("trace.json").toFile()).get("traceEvents");
        int[] perRank = new int[3];
        merged.forEach(e -> {
            if (e.get("ph").asText().equals("X")) {
                perRank[e.get("pid").asInt()]++;
            }
        });
        assertEquals(1, perRank[0]);
        assertEquals(2, perRank[1]);
        assertEquals(1, perRank[2], "the event cut in half is dropped");
        crashed.close();
        assertFalse(RunMetrics.mergeTraces(tmp.resolve("nothing-here")));
    }

    @Test
    void prometheusExpositionEscapesHelpAndLabelsAndGroupsSamplesOfOneName() {
        String text = PrometheusEndpoint.exposition(List.of(
                new PrometheusEndpoint.Gauge("x_total", "help \\ with\nnewline", Map.of("a", "q\"uote"), 1.5),
                new PrometheusEndpoint.Gauge("x_total", "ignored", Map.of("a", "b"), Double.NaN),
                new PrometheusEndpoint.Gauge("y", "why", Map.of(), 3)));
        assertEquals("# HELP x_total help \\\\ with\\nnewline\n# TYPE x_total gauge\nx_total{a=\"q\\\"uote\"} 1.5\n"
                + "x_total{a=\"b\"} NaN\n# HELP y why\n# TYPE y gauge\ny 3\n", text);
    }
}
