package io.dtrain.launcher;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static io.dtrain.launcher.DpRuns.microOverrides;
import static io.dtrain.launcher.DpRuns.steps;
import static io.dtrain.launcher.DpRuns.trainArgs;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A 2-rank run whose transport is throttled (DTRAIN_TRANSPORT_THROTTLE) so that the gradient AllReduce takes
 * longer than the compute: the step records show the exposed communication and `dtrain report` names it.
 */
class DpThrottledReportTest {

    @Test
    void aThrottledTransportGivesTheExposedCommunicationVerdict(@TempDir Path tmp) throws Exception {
        Path run = tmp.resolve("throttled");
        // gpt-micro's float64 gradients are ~274 KB; at 200 KB/s a ring AllReduce of 2 ranks takes ~1.4 s.
        List<String> sets = microOverrides(run, 8, 3, "metrics.interval_ms=200");
        List<String> args = new ArrayList<>(List.of("launch", "--nproc-per-node", "2", "--memory-per-worker", "1g",
                "--stop-grace", "2", "--env", "DTRAIN_TRANSPORT_THROTTLE=200000", "--"));
        args.addAll(trainArgs(sets));
        Cli launched = Cli.run(args.toArray(String[]::new));
        assertEquals(0, launched.exitCode(), launched.toString());

        for (int rank = 0; rank < 2; rank++) {
            for (var step : steps(run, rank)) {
                double comm = step.get("comm_ms").asDouble();
                double stepMs = step.get("step_ms").asDouble();
                assertTrue(comm > 500 && comm > 0.4 * stepMs, "rank " + rank + " step " + step);
            }
        }
        Path md = tmp.resolve("report.md");
        Cli report = Cli.run("report", run.toString(), "--format", "md", "--out", md.toString());
        assertEquals(0, report.exitCode(), report.toString());
        String text = Files.readString(md);
        assertTrue(text.contains("exposed communication"), text);
    }
}
