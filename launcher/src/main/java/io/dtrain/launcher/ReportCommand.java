package io.dtrain.launcher;

import io.dtrain.common.AtomicFiles;
import io.dtrain.metrics.RunMetrics;
import io.dtrain.report.ReportException;
import io.dtrain.report.RunData;
import io.dtrain.report.RunReport;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.Callable;

@Command(name = "report",
        mixinStandardHelpOptions = true,
        description = {
                "Summarise a run's metrics: which phase or resource limits it, with timeline charts per rank.",
                "",
                "Reads RUN_DIR/metrics/steps-rank*.jsonl and system-rank*.jsonl, writes one self-contained HTML file",
                "(inline SVG charts, opens offline) or Markdown, prints the verdict, and merges the ranks' traces",
                "into RUN_DIR/trace.json (open it in ui.perfetto.dev or chrome://tracing).",
                "",
                "Examples:",
                "  dtrain report runs/gpt-tiny                    # writes runs/gpt-tiny/report.html",
                "  dtrain report runs/gpt-tiny --format md --out report.md"})
public final class ReportCommand implements Callable<Integer> {

    enum Format { html, md }

    @Spec
    CommandSpec spec;

    @Parameters(index = "0", paramLabel = "RUN_DIR", description = "The run directory (a training run's output.dir).")
    Path runDir;

    @Option(names = {"-o", "--out"}, paramLabel = "FILE",
            description = "Where to write the report (default: RUN_DIR/report.html or RUN_DIR/report.md).")
    Path out;

    @Option(names = "--format", paramLabel = "FORMAT", defaultValue = "html",
            description = "html (charts) or md (tables). Default: ${DEFAULT-VALUE}.")
    Format format;

    @Override
    public Integer call() throws IOException {
        PrintWriter stdout = spec.commandLine().getOut();
        RunReport report;
        try {
            report = new RunReport(RunData.load(runDir));
        } catch (ReportException e) {
            throw new UserError(e.getMessage());
        }
        Path target = out != null ? out : runDir.resolve(format == Format.html ? "report.html" : "report.md");
        if (target.toAbsolutePath().getParent() != null) {
            Files.createDirectories(target.toAbsolutePath().getParent());
        }
        AtomicFiles.writeString(target, format == Format.html ? report.html() : report.markdown());
        for (String v : report.verdicts()) {
            stdout.println(v);
        }
        if (RunMetrics.mergeTraces(runDir)) {
            stdout.println("trace: " + runDir.resolve("trace.json"));
        }
        stdout.println("report: " + target);
        stdout.flush();
        return 0;
    }
}
