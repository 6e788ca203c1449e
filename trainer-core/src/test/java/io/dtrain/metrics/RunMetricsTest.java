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
        assertEquals(855_166_464.0 * 524_288 / 3.5 / 312e12, Mfu.mfu(855_166_464.0, 524_288, 3.5, 312e12), 1e-12);
        assertEquals(0.41, Mfu.mfu(855_166_464.0, 524_288, 3.5, 312e12), 0.01);
        assertTrue(Double.isNaN(Mfu.mfu(1, 1, 0, 1)));
    }

    @Test
    void peakComesFromTheConfigTheDeviceOrTheCpuMeasurement() {
        assertEquals(125e12, Mfu.peakFlops(new MetricsConfig(500, "v100", 0, 0, true), "fp16", () -> 1));
        assertEquals(312e12, Mfu.peakFlops(new MetricsConfig(500, "a100", 0, 0, true), "fp16", () -> 1));
        assertEquals(989e12, Mfu.peakFlops(new MetricsConfig(500, "h100", 0, 0, true), "fp16", () -> 1));
        assertEquals(15.7e12, Mfu.peakFlops(new MetricsConfig(500, "v100", 0, 0, true), "fp32", () -> 1), "V100 fp32: CUDA cores");
        assertEquals(19.5e12, Mfu.peakFlops(new MetricsConfig(500, "a100", 0, 0, true), "fp32", () -> 1));
        assertEquals(7e10, Mfu.peakFlops(new MetricsConfig(500, "cpu", 0, 0, true), "fp16", () -> 7e10));
        assertEquals(5e12, Mfu.peakFlops(new MetricsConfig(500, "h100", 5e12, 0, true), "fp16", () -> 1));
        assertThrows(IllegalArgumentException.class, () -> Mfu.devicePeak("tpu", "fp32"));
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
            metrics.eval(1, 2.25, 8);
        }
        List<String> lines = Files.readAllLines(runDir.resolve("metrics/steps-rank0.jsonl"));
        Set<String> evalOnly = Set.of(StepFields.VAL_LOSS, StepFields.VAL_PPL, StepFields.EVAL_SEQUENCES);
        Set<String> stepFields = new HashSet<>(declared(StepFields.class));
        stepFields.removeAll(evalOnly);
        stepFields.remove(StepFields.TYPE_EVAL);   // a value of "type", not a field
        assertEquals(stepFields, keys(JSON.readTree(lines.get(0))));
        Set<String> evalFields = new HashSet<>(evalOnly);
        evalFields.addAll(Set.of(StepFields.TYPE, StepFields.TS, StepFields.RANK, StepFields.STEP));
        assertEquals(evalFields, keys(JSON.readTree(lines.get(1))));

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
            assertEquals(15.7e12, metrics.peakFlops(), "a V100 in fp32 (training.precision): its CUDA cores' peak");
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
            metrics.eval(3, 1.25, 4);
            HttpResponse<String> scrape = HttpClient.newHttpClient().send(
                    HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + "/metrics")).build(),
                    HttpResponse.BodyHandlers.ofString());
            assertEquals(200, scrape.statusCode());
            assertEquals("text/plain; version=0.0.4; charset=utf-8",
                    scrape.headers().firstValue("Content-Type").orElseThrow());
            Map<String, PrometheusText.Family> m = PrometheusText.parse(scrape.body());
            Map<String, String> rank0 = Map.of("rank", "0", "local_rank", "0", "stage", "0", "replica", "0");
            assertEquals("counter", m.get("dtrain_steps_total").type());
            assertEquals(3, m.get("dtrain_steps_total").value("dtrain_steps_total", rank0));
            assertEquals(3 * 512, m.get("dtrain_tokens_total").value("dtrain_tokens_total", rank0),
                    "this replica's half of 1024 tokens a step");
            assertEquals(3 * 512 / 16, m.get("dtrain_samples_total").value("dtrain_samples_total", rank0));
            PrometheusText.Family stepTime = m.get("dtrain_step_duration_seconds");
            assertEquals("histogram", stepTime.type());
            assertEquals(3, stepTime.value("dtrain_step_duration_seconds_count", rank0));
            assertEquals(0.6, stepTime.value("dtrain_step_duration_seconds_sum", rank0), 1e-12);
            assertEquals(0, stepTime.value("dtrain_step_duration_seconds_bucket", Map.of("le", "0.16")));
            assertEquals(3, stepTime.value("dtrain_step_duration_seconds_bucket", Map.of("le", "0.32")));
            assertEquals("gauge", m.get("dtrain_loss").type());
            assertEquals(0.5, m.get("dtrain_loss").value("dtrain_loss", rank0));
            assertEquals(1.25, m.get("dtrain_val_loss").value("dtrain_val_loss", rank0));
            assertEquals(3, m.get("dtrain_step").value("dtrain_step", rank0));
            assertEquals(0.02, m.get("dtrain_phase_seconds").value("dtrain_phase_seconds", Map.of("phase", "data_wait")));
            assertEquals(0.005, m.get("dtrain_phase_seconds").value("dtrain_phase_seconds", Map.of("phase", "comm")));
            double mfu = fpt * 512 / 0.2 / 15.7e12; // 1024 tokens over 2 data-parallel ranks in 200 ms
            assertEquals(mfu, m.get("dtrain_mfu").value("dtrain_mfu", rank0), mfu * 1e-12);
            assertTrue(m.get("jvm_memory_used_bytes").value("jvm_memory_used_bytes", Map.of("area", "heap", "rank", "0")) > 0);
            assertTrue(m.containsKey("jvm_threads_current") && m.containsKey("jvm_gc_collection_seconds"), m.keySet().toString());
            for (PrometheusText.Family f : m.values()) {
                for (PrometheusText.Sample sample : f.samples()) {
                    assertTrue(sample.labels().entrySet().containsAll(rank0.entrySet()), "labels of " + sample);
                }
            }

            long deadline = System.currentTimeMillis() + 10_000;
            while (metrics.latestSystemSample() == null && System.currentTimeMillis() < deadline) {
                Thread.sleep(10);
            }
            Map<String, PrometheusText.Family> again = PrometheusText.parse(HttpClient.newHttpClient().send(
                    HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + "/metrics")).build(),
                    HttpResponse.BodyHandlers.ofString()).body());
            assertTrue(again.get("dtrain_cpu_percent").value("dtrain_cpu_percent", rank0) >= 0);
            assertTrue(again.get("dtrain_offheap_bytes").value("dtrain_offheap_bytes", rank0) >= 0);
        }

        List<String> steps = Files.readAllLines(runDir.resolve("metrics/steps-rank0.jsonl"));
        assertEquals(4, steps.size(), "three steps and an evaluation");
        JsonNode eval = JSON.readTree(steps.get(3));
        assertEquals(List.of("eval", "3", "1.25", "4"), List.of(eval.get("type").asText(), eval.get("step").asText(),
                eval.get("val_loss").asText(), eval.get("sequences").asText()));
        assertEquals(Math.exp(1.25), eval.get("val_ppl").asDouble());
        JsonNode s2 = JSON.readTree(steps.get(2));
        assertEquals(2, s2.get("step").asLong());
        assertEquals(0.5, s2.get("loss").asDouble());
        assertEquals(50.0, s2.get("forward_ms").asDouble());
        assertEquals(100.0, s2.get("backward_ms").asDouble());
        assertEquals(5.0, s2.get("comm_ms").asDouble());
        assertEquals(0.0, s2.get("other_ms").asDouble());
        assertEquals(fpt, s2.get("flops_per_token").asDouble(), fpt * 1e-5);
        assertEquals(fpt * 512 / 0.2 / 15.7e12, s2.get("mfu").asDouble(), s2.get("mfu").asDouble() * 1e-5);
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

    /** The port is the base plus the local rank (the same ports on every node); the labels say where the rank sits. */
    @Test
    void theEndpointListensOnBasePlusLocalRankWithThePlaceAsLabels() throws Exception {
        int base = freePort();
        PrometheusMetrics.Source nothing = new PrometheusMetrics.Source() {
            public StepStats lastStep() {
                return null;
            }

            public double lastMfu() {
                return Double.NaN;
            }

            public double lastValLoss() {
                return Double.NaN;
            }

            public SystemSample latestSystemSample() {
                return null;
            }
        };
        try (PrometheusMetrics p = PrometheusMetrics.start(base - 1, new PrometheusMetrics.Place(5, 1, 2, 1), nothing)) {
            assertEquals(base, p.port());
            p.step(new StepStats(0, 2.0, 1e-3, 1.0, 64, 120, 1, 100, 10, true), 2, 16);
            Map<String, PrometheusText.Family> m = PrometheusText.parse(HttpClient.newHttpClient().send(
                    HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + base + "/metrics")).build(),
                    HttpResponse.BodyHandlers.ofString()).body());
            Map<String, String> place = Map.of("rank", "5", "local_rank", "1", "stage", "2", "replica", "1");
            assertEquals(1, m.get("dtrain_steps_total").value("dtrain_steps_total", place));
            assertEquals(1, m.get("dtrain_skipped_steps_total").value("dtrain_skipped_steps_total", place));
            assertEquals(32, m.get("dtrain_tokens_total").value("dtrain_tokens_total", place));
            assertEquals(2, m.get("dtrain_samples_total").value("dtrain_samples_total", place));
            assertTrue(!m.containsKey("dtrain_loss"), "no loss sample before a step is known");
        }
    }
}
