package io.dtrain.report;

import io.dtrain.config.RunConfig;
import io.dtrain.metrics.GpuSample;
import io.dtrain.metrics.NvidiaSmi;
import io.dtrain.metrics.RunMetrics;
import io.dtrain.metrics.RunMetricsTest;
import io.dtrain.metrics.SystemSample;
import io.dtrain.metrics.SystemSamplerTest;
import io.dtrain.metrics.Tracer;
import io.dtrain.train.RunContext;
import io.dtrain.train.StepStats;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class RunReportTest {

    /**
     * Two real ranks of a toy loop through {@link RunMetrics}: both compute real GEMMs; rank 1's loader sleeps
     * {@code delayMs} before each batch (an injected data delay). The sampler runs every 20 ms.
     */
    static Path runTwoRanks(Path runDir, int delayMs) throws Exception {
        RunConfig cfg = RunMetricsTest.config(runDir, 20, 0);
        for (int rank : new int[] {1, 0}) {
            RunContext ctx = new RunContext(rank, 2, rank, 2);
            try (RunMetrics metrics = RunMetrics.start(cfg, ctx, 30_000);
                 INDArray a = Nd4j.rand(DataType.FLOAT, 128, 128)) {
                Tracer tracer = metrics.tracer();
                for (int step = 0; step < 8; step++) {
                    long t0 = System.nanoTime();
                    if (rank == 1) {
                        Thread.sleep(delayMs);
                    }
                    long c0 = System.nanoTime();
                    tracer.span("data_wait", "data", t0, c0);
                    double sum = 0;
                    for (int i = 0; i < 4; i++) {
                        sum += a.mmul(a).getDouble(0, 0);
                    }
                    long o0 = System.nanoTime();
                    tracer.span("forward_backward", "compute", c0, o0);
                    a.muli(0.999);
                    long t1 = System.nanoTime();
                    tracer.span("optimizer", "optimizer", o0, t1);
                    tracer.span("step", "step", t0, t1);
                    metrics.step(new StepStats(step, 3.0 / (step + 1) + sum * 0, 1e-3 * (step + 1) / 8, 1.0, 1024,
                            (t1 - t0) / 1e6, (c0 - t0) / 1e6, (o0 - c0) / 1e6, (t1 - o0) / 1e6, false));
                    if ((step + 1) % 4 == 0) {
                        metrics.eval(step + 1, step == 3 ? 2.0 : 1.5, 8);
                    }
                }
                Thread.sleep(60); // a few more samples after the last step
            }
        }
        return runDir;
    }

    @Test
    void injectedLoaderDelayGivesTheDataWaitVerdictAndEverySampleIsPlotted(@TempDir Path tmp) throws Exception {
        Path runDir = runTwoRanks(tmp.resolve("run"), 40);
        RunReport report = new RunReport(RunData.load(runDir));
        List<String> verdicts = report.verdicts();
        assertTrue(verdicts.stream().anyMatch(v -> v.startsWith("rank 1 waits for data ")), verdicts.toString());
        assertFalse(verdicts.stream().anyMatch(v -> v.startsWith("rank 0 waits for data")), verdicts.toString());
        Diagnosis.RankSummary r1 = report.summaries().get(1);
        assertTrue(r1.dataWaitShare() >= Diagnosis.DATA_WAIT_SHARE, r1.toString());
        assertEquals(7, r1.steps(), "the first step is left out");

        String html = report.html();
        for (int rank = 0; rank < 2; rank++) {
            long samples = Files.readAllLines(runDir.resolve("metrics/system-rank" + rank + ".jsonl")).size();
            assertTrue(samples >= 3, "samples of rank " + rank + ": " + samples);
            String chart = section(html, "memory, rank " + rank);
            assertEquals(samples, pointsOf(chart, "JVM heap"), "every sample of rank " + rank + " is plotted");
            assertEquals(8, pointsOf(section(html, "step time breakdown, rank " + rank), "data wait"));
        }
        String loss = section(html, "training and validation loss");
        assertEquals(8, pointsOf(loss, "rank 0"));
        assertEquals(2, pointsOf(loss, "validation"), "the evaluations after steps 4 and 8");
        assertFalse(html.contains("http://") && html.replace("http://www.w3.org/2000/svg", "").contains("http://"),
                "self-contained: nothing fetched");
        assertFalse(html.contains("<script"));
        String md = report.markdown();
        assertTrue(md.contains("| 1 | 7 | "), md);
        assertTrue(md.contains("| 2 | 1.5000 | 1.5000 |"), "evaluations, last and min val loss: " + md);
        assertTrue(md.contains("## Validation\n\n| after step | val loss | val perplexity |\n|---:|---:|---:|\n"
                + "| 4 | 2.0000 | 7.389 |\n| 8 | 1.5000 | 4.482 |\n"), md);
        assertTrue(md.contains("rank 1 waits for data"), md);
        assertTrue(Files.exists(runDir.resolve("trace.json")));
    }

    /** The SVG of the chart titled {@code title}. */
    static String section(String html, String title) {
        int at = html.indexOf("aria-label=\"" + title);
        assertTrue(at >= 0, "no chart " + title);
        return html.substring(at, html.indexOf("</svg>", at));
    }

    /** data-points of a series, checked against the coordinates or rectangles actually drawn. */
    static long pointsOf(String svg, String series) {
        Matcher m = Pattern.compile("data-series=\"" + Pattern.quote(series) + "\" data-points=\"(\\d+)\"").matcher(svg);
        assertTrue(m.find(), "no series " + series);
        long declared = Long.parseLong(m.group(1));
        String rest = svg.substring(m.end());
        if (rest.startsWith(" fill=\"none\"")) {
            String pts = rest.substring(rest.indexOf("points=\"") + 8);
            pts = pts.substring(0, pts.indexOf('"'));
            assertEquals(declared, pts.isEmpty() ? 0 : pts.split(" ").length);
        } else {
            String group = rest.substring(0, rest.indexOf("</g>"));
            assertEquals(declared, group.split("<rect ", -1).length - 1);
        }
        return declared;
    }

    /** Four ranks written as the trainer writes them; rank 3's loader stalls, and the node's GPUs starve. */
    static Path syntheticRun(Path runDir) throws Exception {
        Path dir = Files.createDirectories(runDir.resolve("metrics"));
        List<String> gpuLines = Files.readAllLines(SystemSamplerTest.SMI_DATA.resolve("query-gpu-v100x8.csv"));
        for (int rank = 0; rank < 4; rank++) {
            List<String> steps = new ArrayList<>();
            for (int step = 0; step < 20; step++) {
                double wait = rank == 3 ? 31 : 2;
                double compute = rank == 3 ? 60 : 89;
                steps.add(new StepStats(step, 4.0 - 0.1 * step, 6e-4, 1.0, 4096, 100, wait, compute, 9, false)
                        .toJson(1_700_000_000_000L + step * 100L, rank));
            }
            Files.write(dir.resolve("steps-rank" + rank + ".jsonl"), steps);
            List<String> samples = new ArrayList<>();
            NvidiaSmi.Parser parser = new NvidiaSmi.Parser();
            List<GpuSample> gpus = new ArrayList<>();
            for (String line : gpuLines) {
                parser.parse(line).ifPresent(gpus::add);
                if (gpus.size() == 8) {
                    samples.add(new SystemSample(1_700_000_000_000L + samples.size() * 500L, rank, rank * 1.5,
                            95, 1, 40, 8, 64L << 30, 32L << 30, 8L << 30, 1L << 30, 4L << 30, 2L << 30,
                            9L << 30, 0, java.util.Map.of(), 1e6, 2e6, 0, 1e5, List.copyOf(gpus)).toJson());
                    gpus.clear();
                }
            }
            Files.write(dir.resolve("system-rank" + rank + ".jsonl"), samples);
        }
        return runDir;
    }

    @Test
    void syntheticFourRankRunNamesTheStallingRankAndTheStarvedGpus(@TempDir Path tmp) throws Exception {
        RunReport report = new RunReport(RunData.load(syntheticRun(tmp.resolve("run"))));
        List<String> v = report.verdicts();
        assertEquals(String.format(Locale.ROOT, "rank 3 waits for data 31%% of step time (rule: >= 10%%): raise "
                + "data.workers, pre-tokenize the corpus (dtrain tokenize) or move it to faster storage"), v.get(0));
        assertEquals(1, v.stream().filter(s -> s.contains("waits for data")).count(), v.toString());
        // The recorded V100 node is busy 12 of its 20 samples: 59% mean utilisation, above the rule's 50%.
        assertFalse(v.stream().anyMatch(s -> s.contains("GPU utilisation")), v.toString());
        assertEquals(58.8, report.summaries().get(0).meanGpuUtilPercent(), 0.5);
        Diagnosis.RankSummary starved = new Diagnosis.RankSummary(5, 10, 100, 100, 0.02, 0.9, 0.05, 0, 0.03, 1000,
                0.3, 0, 20, 97, 90, 0, 0.5, 6.5, 8, 0);
        assertEquals(List.of("rank 5: GPU utilisation 7% (below 50%) while the CPU is saturated (97%, rule: >= 90%): "
                        + "the host cannot feed the GPUs; pre-tokenize the data, raise data.workers only if cores are "
                        + "free, or use a host with more cores"),
                Diagnosis.analyze(List.of(starved)).stream().map(Diagnosis.Finding::message).toList());
        String html = report.html();
        assertEquals(20, pointsOf(section(html, "GPU utilisation, rank 2"), "GPU 7"));
        assertEquals(20, pointsOf(section(html, "CPU, rank 3"), "host CPU"));
        String md = report.markdown();
        assertTrue(md.contains("| 3 | 19 | 100.0 | 31.0% | 60.0% | 9.0% | 0.0% | 0.0% |"), md);
    }

    @Test
    void damagedFilesAreNamedWithTheirLine(@TempDir Path tmp) throws Exception {
        Path run = syntheticRun(tmp.resolve("run"));
        Path steps = run.resolve("metrics/steps-rank1.jsonl");
        List<String> lines = new ArrayList<>(Files.readAllLines(steps));
        lines.add("{\"ts\":17000, \"rank\":1, \"st");  // a crash while writing the last line
        Files.write(steps, lines);
        RunData data = RunData.load(run);
        assertEquals(1, data.warnings().size());
        assertTrue(data.warnings().get(0).endsWith("steps-rank1.jsonl:21: incomplete last line dropped (the run was "
                + "cut off while writing it)"), data.warnings().get(0));
        lines.add(3, "not json");
        Files.write(steps, lines);
        ReportException e = assertThrows(ReportException.class, () -> RunData.load(run));
        assertTrue(e.getMessage().contains("steps-rank1.jsonl:4: not a JSON line"), e.getMessage());
        ReportException none = assertThrows(ReportException.class, () -> RunData.load(tmp));
        assertTrue(none.getMessage().contains("has no metrics/ folder"), none.getMessage());
    }
}
