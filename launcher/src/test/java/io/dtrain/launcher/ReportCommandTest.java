package io.dtrain.launcher;

import io.dtrain.metrics.GpuSample;
import io.dtrain.metrics.SystemSample;
import io.dtrain.metrics.Tracer;
import io.dtrain.train.StepStats;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ReportCommandTest {
    private static final Path CHROMIUM = Path.of("/usr/bin/chromium");

    private final StringWriter out = new StringWriter();
    private final StringWriter err = new StringWriter();

    private int run(Object command, String... args) {
        CommandLine cl = new CommandLine(command);
        cl.setExecutionExceptionHandler(new ErrorHandler());
        cl.setCaseInsensitiveEnumValuesAllowed(true);
        cl.setOut(new PrintWriter(out, true));
        cl.setErr(new PrintWriter(err, true));
        return cl.execute(args);
    }

    /** Two ranks as the trainer writes them: rank 1 waits 40 ms of each 100 ms step for data; two GPUs each. */
    static Path twoRankRun(Path runDir) throws Exception {
        Path dir = Files.createDirectories(runDir.resolve("metrics"));
        for (int rank = 0; rank < 2; rank++) {
            List<String> steps = new ArrayList<>();
            List<String> samples = new ArrayList<>();
            for (int step = 0; step < 30; step++) {
                double wait = rank == 1 ? 40 : 1;
                steps.add(new StepStats(step, 5.5 * Math.exp(-step / 10.0), 6e-4 * Math.min(1, (step + 1) / 10.0), 1.0,
                        2048, 100, wait, 90 - wait, 9, false).toJson(1_700_000_000_000L + 100L * step, rank));
                List<GpuSample> gpus = List.of(new GpuSample(0, "Tesla V100", 90 - wait, 15L << 30, 16L << 30, 230, 64),
                        new GpuSample(1, "Tesla V100", 85 - wait, 14L << 30, 16L << 30, 220, 63));
                samples.add(new SystemSample(1_700_000_000_000L + 500L * step, rank, 0, 60 + step % 7, 0.5, 45, 8,
                        64L << 30, 40L << 30, 6L << 30, 1L << 30, 4L << 30, 2L << 30, 7L << 30, step % 3,
                        Map.of("eth0", new SystemSample.Rates(2e7, 3e7)), 2e7, 3e7, 1e6, 5e5, gpus).toJson());
            }
            Files.write(dir.resolve("steps-rank" + rank + ".jsonl"), steps);
            Files.write(dir.resolve("system-rank" + rank + ".jsonl"), samples);
            try (Tracer t = Tracer.open(dir.resolve("trace-rank" + rank + ".json"), rank)) {
                t.span("step", "step", 0, 100_000_000);
            }
        }
        return runDir;
    }

    @Test
    void markdownReportNamesTheDataBoundRank(@TempDir Path tmp) throws Exception {
        Path runDir = twoRankRun(tmp.resolve("run"));
        assertEquals(0, run(new ReportCommand(), runDir.toString(), "--format", "md"), err.toString());
        String md = Files.readString(runDir.resolve("report.md"));
        assertTrue(md.contains("- rank 1 waits for data 40% of step time (rule: >= 10%): raise data.workers"), md);
        assertTrue(md.contains("| 0 | 29 | 100.0 | 1.0% | 89.0% | 9.0% | 0.0% | 0.0% | 1.0% |"), md);
        assertTrue(out.toString().startsWith("rank 1 waits for data 40%"), out.toString());
        assertTrue(out.toString().contains("trace: " + runDir.resolve("trace.json")), out.toString());
        assertTrue(Files.size(runDir.resolve("trace.json")) > 0);
    }

    @Test
    void badRunDirectoryIsOneClearLine(@TempDir Path tmp) {
        assertEquals(2, run(new ReportCommand(), tmp.resolve("nope").toString()));
        assertTrue(err.toString().contains("error: " + tmp.resolve("nope") + " is not a run directory: it has no "
                + "metrics/ folder"), err.toString());
        assertEquals(2, run(new ReportCommand(), tmp.toString(), "--format", "pdf"));
        assertTrue(err.toString().contains("--format"), err.toString());
    }

    @Test
    void htmlReportLoadsInHeadlessChromiumWithoutConsoleErrors(@TempDir Path tmp) throws Exception {
        Path runDir = twoRankRun(tmp.resolve("run"));
        Path html = tmp.resolve("out/report.html");
        assertEquals(0, run(new ReportCommand(), runDir.toString(), "--out", html.toString()), err.toString());
        String text = Files.readString(html);
        assertTrue(text.contains("rank 1 waits for data 40% of step time"));
        assertEquals(2 * 2 + 2 * 2, text.split("data-series=\"GPU ", -1).length - 1, "2 GPU charts x 2 GPUs x 2 ranks");
        Assumptions.assumeTrue(Files.isExecutable(CHROMIUM), "headless-browser check skipped: " + CHROMIUM
                + " is not installed (apt-get install -y chromium)");
        // launcher/target/report-screenshot.png: the test-classes folder's parent.
        Path screenshot = Path.of(ReportCommandTest.class.getProtectionDomain().getCodeSource().getLocation().toURI())
                .getParent().resolve("report-screenshot.png");
        Files.createDirectories(screenshot.getParent());
        Files.deleteIfExists(screenshot);
        Process p = new ProcessBuilder(CHROMIUM.toString(), "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update", "--no-first-run",
                "--user-data-dir=" + tmp.resolve("chromium-profile"), "--enable-logging=stderr", "--v=0",
                "--window-size=1200,2400", "--screenshot=" + screenshot, html.toUri().toString())
                .redirectOutput(tmp.resolve("chromium.out").toFile())
                .redirectError(tmp.resolve("chromium.err").toFile())
                .start();
        if (!p.waitFor(120, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            throw new AssertionError("chromium did not finish in 120 s");
        }
        String log = Files.readString(tmp.resolve("chromium.err"), StandardCharsets.UTF_8);
        assertEquals(0, p.exitValue(), log);
        List<String> console = log.lines().filter(l -> l.contains("CONSOLE")).toList();
        assertTrue(console.isEmpty(), "console messages: " + console);
        assertTrue(Files.size(screenshot) > 10_000, "screenshot " + screenshot + " is " + Files.size(screenshot) + " bytes");
        assertFalse(log.contains("ERR_FILE_NOT_FOUND"), log);
    }

    @Test
    void benchGemmPrintsATableAndTheBest() {
        assertEquals(0, run(new BenchGemmCommand(), "--sizes", "32,64", "--min-ms", "20"), err.toString());
        List<String> lines = out.toString().lines().toList();
        assertEquals(4, lines.size(), out.toString());
        assertTrue(lines.get(0).matches("\\s+n\\s+reps\\s+ms/GEMM\\s+GFLOP/s"), lines.get(0));
        assertTrue(lines.get(1).trim().startsWith("32 "), lines.get(1));
        assertTrue(lines.get(2).trim().startsWith("64 "), lines.get(2));
        double best = Math.max(Double.parseDouble(lines.get(1).trim().split("\\s+")[3]),
                Double.parseDouble(lines.get(2).trim().split("\\s+")[3]));
        assertTrue(lines.get(3).startsWith(String.format(java.util.Locale.ROOT, "best: %.1f GFLOP/s fp32", best)),
                lines.get(3));
        assertEquals(2, run(new BenchGemmCommand(), "--sizes", "0"));
        assertTrue(err.toString().contains("--sizes: matrix sizes must be >= 1, got 0"), err.toString());
    }
}
