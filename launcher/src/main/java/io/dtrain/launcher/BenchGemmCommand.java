package io.dtrain.launcher;

import io.dtrain.metrics.GemmBenchmark;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
import java.util.List;
import java.util.concurrent.Callable;

@Command(name = "gemm",
        mixinStandardHelpOptions = true,
        description = {
                "Measure this machine's fp32 matrix-multiply rate as the fused engine runs GEMMs.",
                "C = A x B, n x n, 2n^3 FLOPs; rows over the compute threads, single-threaded BLAS each.",
                "",
                "The best figure is the CPU peak to give metrics.peak_flops for the MFU of CPU runs",
                "(with metrics.device: cpu and no peak_flops, a run measures a quick version of it at start).",
                "",
                "Example:",
                "  dtrain bench gemm --sizes 256,512,1024,2048"})
public final class BenchGemmCommand implements Callable<Integer> {

    @Spec
    CommandSpec spec;

    @Option(names = "--sizes", split = ",", paramLabel = "N",
            description = "Matrix sizes n. Default: ${DEFAULT-VALUE}.", defaultValue = "256,512,1024,2048")
    int[] sizes;

    @Option(names = "--min-ms", paramLabel = "MS", defaultValue = "1000",
            description = "Time each size for at least this long, after one warm-up product. Default: ${DEFAULT-VALUE}.")
    long minMillis;

    @Override
    public Integer call() {
        for (int n : sizes) {
            if (n < 1) {
                throw new UserError("--sizes: matrix sizes must be >= 1, got " + n);
            }
        }
        if (minMillis < 1) {
            throw new UserError("--min-ms must be >= 1, got " + minMillis);
        }
        PrintWriter out = spec.commandLine().getOut();
        out.printf(java.util.Locale.ROOT, "%6s %6s %12s %10s%n", "n", "reps", "ms/GEMM", "GFLOP/s");
        List<GemmBenchmark.Result> results = new java.util.ArrayList<>();
        for (int n : sizes) {
            GemmBenchmark.Result r = GemmBenchmark.measure(n, minMillis);
            results.add(r);
            out.printf(java.util.Locale.ROOT, "%6d %6d %12.3f %10.1f%n", r.n(), r.repetitions(), r.millisPerGemm(),
                    r.flopsPerSecond() / 1e9);
            out.flush();
        }
        double best = GemmBenchmark.best(results);
        out.printf(java.util.Locale.ROOT, "best: %.1f GFLOP/s fp32 (metrics.peak_flops: %.3e)%n", best / 1e9, best);
        out.flush();
        return 0;
    }
}
