package io.dtrain.metrics;

import io.dtrain.compute.ComputeThreads;
import io.dtrain.compute.Workers;
import org.bytedeco.javacpp.FloatPointer;
import org.bytedeco.openblas.global.openblas_nolapack;

import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

import java.util.ArrayList;
import java.util.List;

/**
 * fp32 GEMM throughput of this machine as dtrain's CPU engine runs GEMMs (C = A·B with square n×n matrices, 2n³
 * FLOPs): the rows of C split over the process's compute threads ({@link ComputeThreads}), each thread calling
 * single-threaded CBLAS (the OpenBLAS ND4J loads) on its share. This is the CPU "peak" the MFU is relative to,
 * and what {@code dtrain bench gemm} prints. Each size is warmed up, then timed for at least {@code minMillis};
 * one entry of C is checked against a plain dot product so a broken backend cannot report a fast wrong answer.
 */
public final class GemmBenchmark {

    /** One size's result. */
    public record Result(int n, int repetitions, double millisPerGemm, double flopsPerSecond) {
    }

    private GemmBenchmark() {
    }

    public static Result measure(int n, long minMillis) {
        if (n < 1) {
            throw new IllegalArgumentException("matrix size must be >= 1, got " + n);
        }
        Nd4j.getRandom().setSeed(n);
        Workers team = ComputeThreads.shared();
        try (INDArray a = Nd4j.rand(DataType.FLOAT, n, n); INDArray b = Nd4j.rand(DataType.FLOAT, n, n);
             INDArray c = Nd4j.create(DataType.FLOAT, n, n)) {
            FloatPointer pa = (FloatPointer) a.data().addressPointer();
            FloatPointer pb = (FloatPointer) b.data().addressPointer();
            FloatPointer pc = (FloatPointer) c.data().addressPointer();
            FloatPointer[] as = new FloatPointer[team.size()];
            FloatPointer[] cs = new FloatPointer[team.size()];
            for (int i = 0; i < team.size(); i++) {
                long r0 = (long) n * i / team.size();
                as[i] = new FloatPointer(pa).position(r0 * n);
                cs[i] = new FloatPointer(pc).position(r0 * n);
            }
            openblas_nolapack.blas_set_num_threads(1);
            Workers.Region gemm = t -> openblas_nolapack.cblas_sgemm(openblas_nolapack.CblasRowMajor,
                    openblas_nolapack.CblasNoTrans, openblas_nolapack.CblasNoTrans, t.to(n) - t.from(n), n, n, 1f,
                    as[t.index()], n, pb, n, 0f, cs[t.index()], n);
            team.run(gemm); // warm-up: thread start, page faults, JIT
            checkOneEntry(a, b, c, n);
            int reps = 0;
            long t0 = System.nanoTime();
            long elapsed;
            do {
                team.run(gemm);
                reps++;
                elapsed = System.nanoTime() - t0;
            } while (elapsed < minMillis * 1_000_000L);
            double seconds = elapsed / 1e9;
            return new Result(n, reps, seconds * 1000 / reps, 2.0 * n * n * n * reps / seconds);
        }
    }

    public static List<Result> run(int[] sizes, long minMillisPerSize) {
        List<Result> out = new ArrayList<>();
        for (int n : sizes) {
            out.add(measure(n, minMillisPerSize));
        }
        return out;
    }

    /** The highest rate measured. */
    public static double best(List<Result> results) {
        return results.stream().mapToDouble(Result::flopsPerSecond).max().orElse(Double.NaN);
    }

    /**
     * A quick estimate of the CPU's fp32 GEMM peak (under a second), for the MFU of CPU runs. Sizes below 1024
     * underestimate the peak by 2-3x on this kind of CPU, which made MFU exceed 100%.
     */
    public static double quickPeak() {
        return best(run(new int[] {1024, 2048}, 300));
    }

    private static void checkOneEntry(INDArray a, INDArray b, INDArray c, int n) {
        int i = n / 2;
        int j = n / 3;
        double expected = 0;
        for (int k = 0; k < n; k++) {
            expected += a.getDouble(i, k) * b.getDouble(k, j);
        }
        double got = c.getDouble(i, j);
        if (Math.abs(got - expected) > 1e-4 * Math.max(1, Math.abs(expected))) {
            throw new IllegalStateException("ND4J GEMM is wrong at n=" + n + ": C[" + i + "," + j + "] = " + got
                    + ", expected " + expected);
        }
    }
}
