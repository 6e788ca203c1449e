package io.dtrain.report;

import com.fasterxml.jackson.databind.JsonNode;
import io.dtrain.metrics.SystemFields;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.function.ToDoubleFunction;

/**
 * The {@code dtrain report} of a run: a summary naming the bottleneck ({@link Diagnosis}), per-rank tables, and
 * (HTML) timeline charts per rank of CPU, memory, network, disk and GPUs, the per-step time breakdown, and the loss
 * and learning-rate curves. The HTML is one self-contained file (inline CSS and SVG, no script, nothing fetched).
 */
public final class RunReport {
    /** Steps beyond this are averaged into this many bars; samples beyond {@link #MAX_POINTS} are thinned. */
    static final int MAX_BARS = 400;
    static final int MAX_POINTS = 5000;

    private final RunData run;
    private final List<Diagnosis.RankSummary> summaries;
    private final List<Diagnosis.Finding> findings;
    private final double t0;

    public RunReport(RunData run) {
        this.run = run;
        this.summaries = Diagnosis.summarize(run);
        this.findings = Diagnosis.analyze(summaries);
        double start = Double.POSITIVE_INFINITY;
        for (RunData.Rank r : run.ranks()) {
            for (JsonNode s : r.samples()) {
                start = Math.min(start, alignedMillis(s));
            }
        }
        this.t0 = Double.isInfinite(start) ? 0 : start;
    }

    public List<Diagnosis.Finding> findings() {
        return findings;
    }

    public List<Diagnosis.RankSummary> summaries() {
        return summaries;
    }

    /** The findings as sentences, or the compute-bound verdict. */
    public List<String> verdicts() {
        return findings.isEmpty() ? List.of(Diagnosis.computeBound(summaries))
                : findings.stream().map(Diagnosis.Finding::message).toList();
    }

    /** Rank 0's clock: the sample's wall time minus its host's measured offset. */
    private static double alignedMillis(JsonNode sample) {
        double offset = RunData.num(sample, SystemFields.CLOCK_OFFSET_MS);
        return RunData.num(sample, SystemFields.TS) - (Double.isFinite(offset) ? offset : 0);
    }

    public String markdown() {
        StringBuilder sb = new StringBuilder();
        sb.append("# dtrain run report\n\nRun directory: `").append(run.runDir().toAbsolutePath()).append("`, ")
                .append(run.ranks().size()).append(" rank(s).\n\n## Verdict\n\n");
        for (String v : verdicts()) {
            sb.append("- ").append(v).append('\n');
        }
        for (String w : run.warnings()) {
            sb.append("- warning: ").append(w).append('\n');
        }
        sb.append("\n## Step time per rank\n\nShares of the summed step time over the steps after the first.\n\n")
                .append("| rank | steps | mean step ms | data wait | compute | optimizer | comm (exposed) | pipeline bubble | other | tokens/s (median) | MFU |\n")
                .append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for (Diagnosis.RankSummary r : summaries) {
            sb.append(String.format(Locale.ROOT, "| %d | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |%n", r.rank(),
                    r.steps(), num(r.meanStepMs(), "%.1f"), pct(r.dataWaitShare()), pct(r.computeShare()),
                    pct(r.optimizerShare()), pct(r.commShare()), pct(r.bubbleShare()), pct(r.otherShare()),
                    num(r.tokensPerSecond(), "%,.0f"), pct(r.mfu())));
        }
        sb.append("\n## System per rank\n\n")
                .append("| rank | samples | host CPU % (mean) | process CPU % (mean) | I/O wait % | max host memory used | GPUs | GPU util % (mean) |\n")
                .append("|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for (Diagnosis.RankSummary r : summaries) {
            sb.append(String.format(Locale.ROOT, "| %d | %d | %s | %s | %s | %s | %d | %s |%n", r.rank(), r.samples(),
                    num(r.meanCpuPercent(), "%.1f"), num(r.meanProcessCpuPercent(), "%.1f"),
                    num(r.meanIowaitPercent(), "%.1f"), pct(r.maxMemoryUsedShare()), r.gpus(),
                    num(r.meanGpuUtilPercent(), "%.1f")));
        }
        sb.append("\n## Loss\n\n| rank | first step | first loss | last step | last loss | min loss | evaluations"
                + " | last val loss | min val loss |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for (RunData.Rank r : run.ranks()) {
            if (r.steps().isEmpty()) {
                continue;
            }
            RunData.Step first = r.steps().get(0);
            RunData.Step last = r.steps().get(r.steps().size() - 1);
            double min = r.steps().stream().mapToDouble(RunData.Step::loss).filter(Double::isFinite).min().orElse(Double.NaN);
            double lastVal = r.evals().isEmpty() ? Double.NaN : r.evals().get(r.evals().size() - 1).valLoss();
            double minVal = r.evals().stream().mapToDouble(RunData.Eval::valLoss).filter(Double::isFinite).min()
                    .orElse(Double.NaN);
            sb.append(String.format(Locale.ROOT, "| %d | %d | %s | %d | %s | %s | %d | %s | %s |%n", r.rank(),
                    first.step() + 1, num(first.loss(), "%.4f"), last.step() + 1, num(last.loss(), "%.4f"),
                    num(min, "%.4f"), r.evals().size(), num(lastVal, "%.4f"), num(minVal, "%.4f")));
        }
        List<RunData.Eval> evals = evaluations();
        if (!evals.isEmpty()) {
            sb.append("\n## Validation\n\n| after step | val loss | val perplexity |\n|---:|---:|---:|\n");
            for (RunData.Eval e : evals) {
                sb.append(String.format(Locale.ROOT, "| %d | %s | %s |%n", e.step(), num(e.valLoss(), "%.4f"),
                        num(Math.exp(e.valLoss()), "%.3f")));
            }
        }
        sb.append("\n").append(rulesText()).append('\n');
        return sb.toString();
    }

    /** The run's evaluations: every rank records the same ones (a sum over ranks), so the first rank that has any. */
    private List<RunData.Eval> evaluations() {
        return run.ranks().stream().map(RunData.Rank::evals).filter(e -> !e.isEmpty()).findFirst().orElse(List.of());
    }

    private static String rulesText() {
        return String.format(Locale.ROOT, "Rules: data wait >= %.0f%% of step time; exposed communication >= %.0f%%; "
                        + "optimizer >= %.0f%%; mean GPU utilisation < %.0f%% (CPU-bound when host CPU >= %.0f%%); "
                        + "I/O wait > %.0f%%; host memory > %.0f%% used; a rank's median step > %.0f%% above the "
                        + "median over ranks; skipped steps. The first step is left out of the shares (warm-up).",
                100 * Diagnosis.DATA_WAIT_SHARE, 100 * Diagnosis.COMM_SHARE, 100 * Diagnosis.OPTIMIZER_SHARE,
                Diagnosis.GPU_UTIL_LOW, Diagnosis.CPU_SATURATED, Diagnosis.IOWAIT_HIGH, 100 * Diagnosis.MEMORY_USED_HIGH,
                100 * (Diagnosis.STRAGGLER_RATIO - 1));
    }

    public String html() {
        StringBuilder sb = new StringBuilder();
        sb.append("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>dtrain report: ")
                .append(SvgChart.esc(run.runDir().getFileName() == null ? run.runDir().toString()
                        : run.runDir().getFileName().toString()))
                .append("</title>\n<style>\n")
                .append("body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1100px}\n")
                .append("table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}\n")
                .append("th{background:#f3f3f3}.verdict li{margin:4px 0}.warn{color:#a60}\n")
                .append("svg.chart{display:block;margin:6px 0}svg .title{font-size:13px;font-weight:600}\n")
                .append("svg .tick,svg .legend{font-size:11px;fill:#444}h2{margin-top:28px}\n")
                .append("</style>\n</head>\n<body>\n<h1>dtrain run report</h1>\n<p>Run directory <code>")
                .append(SvgChart.esc(run.runDir().toAbsolutePath().toString())).append("</code>, ")
                .append(run.ranks().size()).append(" rank(s). Times on rank 0's clock.</p>\n");
        sb.append("<h2>Verdict</h2>\n<ul class=\"verdict\">\n");
        for (String v : verdicts()) {
            sb.append("<li>").append(SvgChart.esc(v)).append("</li>\n");
        }
        for (String w : run.warnings()) {
            sb.append("<li class=\"warn\">warning: ").append(SvgChart.esc(w)).append("</li>\n");
        }
        sb.append("</ul>\n");
        // The tables are the Markdown ones, rendered.
        sb.append(markdownTablesAsHtml());
        sb.append("<p>").append(SvgChart.esc(rulesText())).append("</p>\n");

        sb.append("<h2>Training curves</h2>\n");
        List<SvgChart.Series> loss = new ArrayList<>();
        List<SvgChart.Series> lr = new ArrayList<>();
        for (RunData.Rank r : run.ranks()) {
            if (!r.steps().isEmpty()) {
                double[] x = r.steps().stream().mapToDouble(s -> s.step() + 1).toArray();
                loss.add(new SvgChart.Series("rank " + r.rank(), x, col(r.steps(), RunData.Step::loss)));
                if (lr.isEmpty()) {
                    lr.add(new SvgChart.Series("lr", x, col(r.steps(), RunData.Step::lr)));
                }
            }
        }
        List<RunData.Eval> evals = evaluations();
        if (!evals.isEmpty()) {
            loss.add(new SvgChart.Series("validation", evals.stream().mapToDouble(RunData.Eval::step).toArray(),
                    evals.stream().mapToDouble(RunData.Eval::valLoss).toArray()));
        }
        if (!loss.isEmpty()) {
            sb.append(SvgChart.line(evals.isEmpty() ? "training loss" : "training and validation loss", "step", "loss", loss));
            sb.append(SvgChart.line("learning rate", "step", "lr", lr));
        }
        for (RunData.Rank r : run.ranks()) {
            sb.append("<h2 id=\"rank").append(r.rank()).append("\">Rank ").append(r.rank()).append("</h2>\n");
            if (!r.steps().isEmpty()) {
                sb.append(stepBreakdown(r));
            }
            if (!r.samples().isEmpty()) {
                sb.append(systemCharts(r));
            }
        }
        return sb.append("</body>\n</html>\n").toString();
    }

    private String markdownTablesAsHtml() {
        StringBuilder sb = new StringBuilder();
        boolean inTable = false;
        for (String line : markdown().split("\n")) {
            if (line.startsWith("## ") && !line.equals("## Verdict")) {
                sb.append("<h2>").append(SvgChart.esc(line.substring(3))).append("</h2>\n");
            } else if (line.startsWith("|")) {
                if (line.startsWith("|---")) {
                    continue;
                }
                String tag = inTable ? "td" : "th";
                if (!inTable) {
                    sb.append("<table>\n");
                    inTable = true;
                }
                sb.append("<tr>");
                for (String cell : line.substring(1, line.length() - 1).split("\\|")) {
                    sb.append('<').append(tag).append('>').append(SvgChart.esc(cell.strip())).append("</").append(tag).append('>');
                }
                sb.append("</tr>\n");
            } else if (inTable) {
                sb.append("</table>\n");
                inTable = false;
            } else if (line.startsWith("Shares ")) {
                sb.append("<p>").append(SvgChart.esc(line)).append("</p>\n");
            }
        }
        return sb.toString();
    }

    private String stepBreakdown(RunData.Rank r) {
        List<RunData.Step> steps = r.steps();
        boolean split = steps.stream().allMatch(s -> Double.isFinite(s.forwardMs()) && Double.isFinite(s.backwardMs()));
        List<String> names = split ? List.of("data wait", "forward", "backward", "optimizer", "comm (exposed)", "other")
                : List.of("data wait", "forward+backward", "optimizer", "comm (exposed)", "other");
        List<ToDoubleFunction<RunData.Step>> phases = split
                ? List.of(RunData.Step::dataWaitMs, RunData.Step::forwardMs, RunData.Step::backwardMs,
                RunData.Step::optimizerMs, RunData.Step::commMs, RunData.Step::otherMs)
                : List.of(RunData.Step::dataWaitMs, RunData.Step::computeMs, RunData.Step::optimizerMs,
                RunData.Step::commMs, RunData.Step::otherMs);
        if (steps.stream().anyMatch(s -> Double.isFinite(s.bubbleMs()))) {
            names = new ArrayList<>(names);
            phases = new ArrayList<>(phases);
            names.add(names.size() - 1, "pipeline bubble");
            phases.add(phases.size() - 1, RunData.Step::bubbleMs);
        }
        int bins = Math.min(steps.size(), MAX_BARS);
        double[] x = new double[bins];
        double[][] layers = new double[phases.size()][bins];
        for (int b = 0; b < bins; b++) {
            int from = (int) ((long) b * steps.size() / bins);
            int to = (int) ((long) (b + 1) * steps.size() / bins);
            x[b] = steps.get(from).step() + 1;
            for (int k = 0; k < phases.size(); k++) {
                double sum = 0;
                for (int i = from; i < to; i++) {
                    double v = phases.get(k).applyAsDouble(steps.get(i));
                    sum += Double.isFinite(v) ? v : 0;
                }
                layers[k][b] = sum / (to - from);
            }
        }
        String title = "step time breakdown, rank " + r.rank() + (bins < steps.size()
                ? " (mean of " + steps.size() / bins + "+ steps per bar)" : "");
        return SvgChart.stacked(title, "step", "ms", x, names, layers);
    }

    private String systemCharts(RunData.Rank r) {
        List<JsonNode> all = r.samples();
        int every = Math.max(1, (all.size() + MAX_POINTS - 1) / MAX_POINTS);
        List<JsonNode> s = new ArrayList<>();
        for (int i = 0; i < all.size(); i += every) {
            s.add(all.get(i));
        }
        String note = every > 1 ? " (every " + every + "th sample)" : "";
        double[] t = s.stream().mapToDouble(n -> (alignedMillis(n) - t0) / 1000).toArray();
        String x = "seconds since the first sample";
        StringBuilder sb = new StringBuilder();
        sb.append(SvgChart.line("CPU, rank " + r.rank() + note, x, "% of all cores", List.of(
                new SvgChart.Series("host CPU", t, field(s, SystemFields.CPU_PCT, 1)),
                new SvgChart.Series("this process", t, field(s, SystemFields.PROC_CPU_PCT, 1)),
                new SvgChart.Series("I/O wait", t, field(s, SystemFields.IOWAIT_PCT, 1)))));
        double gb = 1e9;
        double[] hostUsed = s.stream().mapToDouble(n -> (RunData.num(n, SystemFields.MEM_TOTAL_BYTES)
                - RunData.num(n, SystemFields.MEM_AVAILABLE_BYTES)) / gb).toArray();
        sb.append(SvgChart.line("memory, rank " + r.rank() + note, x, "GB", List.of(
                new SvgChart.Series("host used", t, hostUsed),
                new SvgChart.Series("process RSS", t, field(s, SystemFields.RSS_BYTES, gb)),
                new SvgChart.Series("JVM heap", t, field(s, SystemFields.HEAP_USED_BYTES, gb)),
                new SvgChart.Series("ND4J off-heap", t, field(s, SystemFields.OFFHEAP_BYTES, gb)))));
        sb.append(SvgChart.line("network, rank " + r.rank() + note, x, "MB/s", List.of(
                new SvgChart.Series("received", t, field(s, SystemFields.NET_RX_BYTES_PER_S, 1e6)),
                new SvgChart.Series("sent", t, field(s, SystemFields.NET_TX_BYTES_PER_S, 1e6)))));
        sb.append(SvgChart.line("disk, rank " + r.rank() + note, x, "MB/s", List.of(
                new SvgChart.Series("read", t, field(s, SystemFields.DISK_READ_BYTES_PER_S, 1e6)),
                new SvgChart.Series("written", t, field(s, SystemFields.DISK_WRITE_BYTES_PER_S, 1e6)))));
        int gpus = s.stream().mapToInt(n -> n.path(SystemFields.GPUS).size()).max().orElse(0);
        if (gpus > 0) {
            List<SvgChart.Series> util = new ArrayList<>();
            List<SvgChart.Series> mem = new ArrayList<>();
            for (int g = 0; g < gpus; g++) {
                int gi = g;
                util.add(new SvgChart.Series("GPU " + g, t,
                        s.stream().mapToDouble(n -> gpu(n, gi, SystemFields.Gpu.UTIL_PCT, 1)).toArray()));
                mem.add(new SvgChart.Series("GPU " + g, t,
                        s.stream().mapToDouble(n -> gpu(n, gi, SystemFields.Gpu.MEM_USED_BYTES, gb)).toArray()));
            }
            sb.append(SvgChart.line("GPU utilisation, rank " + r.rank() + note, x, "%", util));
            sb.append(SvgChart.line("GPU memory used, rank " + r.rank() + note, x, "GB", mem));
        }
        return sb.toString();
    }

    private static double gpu(JsonNode sample, int position, String field, double scale) {
        JsonNode g = sample.path(SystemFields.GPUS).path(position);
        return g.isMissingNode() ? Double.NaN : RunData.num(g, field) / scale;
    }

    private static double[] field(List<JsonNode> samples, String name, double scale) {
        return samples.stream().mapToDouble(n -> RunData.num(n, name) / scale).toArray();
    }

    private static double[] col(List<RunData.Step> steps, ToDoubleFunction<RunData.Step> f) {
        return steps.stream().mapToDouble(f).toArray();
    }

    private static String pct(double share) {
        return Double.isFinite(share) ? String.format(Locale.ROOT, "%.1f%%", 100 * share) : "-";
    }

    private static String num(double v, String format) {
        return Double.isFinite(v) ? String.format(Locale.ROOT, format, v) : "-";
    }
}
