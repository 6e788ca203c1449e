package io.dtrain.report;

import io.dtrain.metrics.SystemFields;
import com.fasterxml.jackson.databind.JsonNode;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;

/**
 * Names the bottleneck of a run in words, from rules with fixed thresholds (SageMaker Debugger's rules, simplified).
 * Shares are of the summed step time of a rank, over its steps after the first (the first step pays for JIT and
 * graph building). The rules and thresholds:
 * <ul>
 *   <li>data wait >= {@value #DATA_WAIT_SHARE} of step time: the loader does not keep up;</li>
 *   <li>exposed communication >= {@value #COMM_SHARE}: collectives not hidden behind compute;</li>
 *   <li>optimizer >= {@value #OPTIMIZER_SHARE}: the update dominates (small batch per step);</li>
 *   <li>GPU utilisation below {@value #GPU_UTIL_LOW}% on average, with the host CPU above {@value #CPU_SATURATED}%
 *       (CPU-bound input) or not (GPUs idle for another reason);</li>
 *   <li>I/O wait above {@value #IOWAIT_HIGH}% of CPU time: storage too slow;</li>
 *   <li>host memory more than {@value #MEMORY_USED_HIGH} used at some sample: close to swapping or the OOM killer;</li>
 *   <li>a rank's median step more than {@value #STRAGGLER_RATIO} x the median over ranks: a straggler;</li>
 *   <li>skipped steps (non-finite loss or gradients).</li>
 * </ul>
 * When none fires the run is called compute-bound.
 */
public final class Diagnosis {
    public static final double DATA_WAIT_SHARE = 0.10;
    public static final double COMM_SHARE = 0.20;
    public static final double OPTIMIZER_SHARE = 0.30;
    public static final double BUBBLE_SHARE = 0.25;
    public static final double GPU_UTIL_LOW = 50;
    public static final double CPU_SATURATED = 90;
    public static final double IOWAIT_HIGH = 10;
    public static final double MEMORY_USED_HIGH = 0.90;
    public static final double STRAGGLER_RATIO = 1.20;

    private Diagnosis() {
    }

    /** Per-rank averages the rules and the report tables use; NaN where a rank recorded nothing of the kind. */
    public record RankSummary(int rank, int steps, double meanStepMs, double medianStepMs, double dataWaitShare,
                              double computeShare, double optimizerShare, double commShare, double otherShare,
                              double tokensPerSecond, double mfu, int skippedSteps, int samples, double meanCpuPercent,
                              double meanProcessCpuPercent, double meanIowaitPercent, double maxMemoryUsedShare,
                              double meanGpuUtilPercent, int gpus, double bubbleShare) {
    }

    /** One finding; the report lists them by decreasing weight. */
    public record Finding(int rank, double weight, String message) {
    }

    public static RankSummary summarize(RunData.Rank r) {
        List<RunData.Step> steps = r.steps().size() > 2 ? r.steps().subList(1, r.steps().size()) : r.steps();
        double total = steps.stream().mapToDouble(RunData.Step::stepMs).sum();
        double[] stepMs = steps.stream().mapToDouble(RunData.Step::stepMs).toArray();
        List<JsonNode> s = r.samples();
        double memUsed = s.stream().mapToDouble(n -> {
            double t = RunData.num(n, SystemFields.MEM_TOTAL_BYTES);
            return t > 0 ? (t - RunData.num(n, SystemFields.MEM_AVAILABLE_BYTES)) / t : Double.NaN;
        }).filter(Double::isFinite).max().orElse(Double.NaN);
        double gpuSum = 0;
        int gpuCount = 0;
        int gpus = 0;
        for (JsonNode n : s) {
            JsonNode g = n.path(SystemFields.GPUS);
            gpus = Math.max(gpus, g.size());
            for (JsonNode one : g) {
                double u = RunData.num(one, SystemFields.Gpu.UTIL_PCT);
                if (Double.isFinite(u)) {
                    gpuSum += u;
                    gpuCount++;
                }
            }
        }
        return new RankSummary(r.rank(), steps.size(), steps.isEmpty() ? Double.NaN : total / steps.size(),
                median(stepMs), share(steps, RunData.Step::dataWaitMs, total), share(steps, RunData.Step::computeMs, total),
                share(steps, RunData.Step::optimizerMs, total), share(steps, RunData.Step::commMs, total),
                share(steps, RunData.Step::otherMs, total),
                median(steps.stream().mapToDouble(RunData.Step::tokensPerSecond).toArray()),
                mean(steps.stream().mapToDouble(RunData.Step::mfu).toArray()),
                (int) r.steps().stream().filter(RunData.Step::skipped).count(), s.size(),
                mean(s.stream().mapToDouble(n -> RunData.num(n, SystemFields.CPU_PCT)).toArray()),
                mean(s.stream().mapToDouble(n -> RunData.num(n, SystemFields.PROC_CPU_PCT)).toArray()),
                mean(s.stream().mapToDouble(n -> RunData.num(n, SystemFields.IOWAIT_PCT)).toArray()), memUsed,
                gpuCount == 0 ? Double.NaN : gpuSum / gpuCount, gpus, share(steps, RunData.Step::bubbleMs, total));
    }

    public static List<RankSummary> summarize(RunData run) {
        return run.ranks().stream().map(Diagnosis::summarize).toList();
    }

    public static List<Finding> analyze(List<RankSummary> ranks) {
        List<Finding> out = new ArrayList<>();
        double medianOfRanks = median(ranks.stream().mapToDouble(RankSummary::medianStepMs).toArray());
        for (RankSummary r : ranks) {
            if (r.dataWaitShare() >= DATA_WAIT_SHARE) {
                out.add(new Finding(r.rank(), r.dataWaitShare(), String.format(Locale.ROOT,
                        "rank %d waits for data %.0f%% of step time (rule: >= %.0f%%): raise data.workers, pre-tokenize "
                                + "the corpus (dtrain tokenize) or move it to faster storage",
                        r.rank(), 100 * r.dataWaitShare(), 100 * DATA_WAIT_SHARE)));
            }
            if (r.commShare() >= COMM_SHARE) {
                out.add(new Finding(r.rank(), r.commShare(), String.format(Locale.ROOT,
                        "rank %d: exposed communication %.0f%% of step time (rule: >= %.0f%%): use larger gradient "
                                + "buckets so more of it overlaps the backward pass, and check the network (bandwidth, "
                                + "congestion, a slow link)", r.rank(), 100 * r.commShare(), 100 * COMM_SHARE)));
            }
            if (r.bubbleShare() >= BUBBLE_SHARE) {
                out.add(new Finding(r.rank(), r.bubbleShare(), String.format(Locale.ROOT,
                        "rank %d: pipeline bubble %.0f%% of step time (rule: >= %.0f%%): more micro-batches per step "
                                + "(smaller training.micro_batch; the bubble is about (P-1)/(M+P-1)), fewer stages, or a "
                                + "parallel.pipeline.partition that evens out the stages", r.rank(), 100 * r.bubbleShare(),
                        100 * BUBBLE_SHARE)));
            }
            if (r.optimizerShare() >= OPTIMIZER_SHARE) {
                out.add(new Finding(r.rank(), r.optimizerShare(), String.format(Locale.ROOT,
                        "rank %d spends %.0f%% of step time in the optimizer (rule: >= %.0f%%): the batch per step is "
                                + "small for the model; raise training.global_batch (gradient accumulation), or shard "
                                + "the optimizer state (optimizer.shard_state) with data parallelism",
                        r.rank(), 100 * r.optimizerShare(), 100 * OPTIMIZER_SHARE)));
            }
            if (r.meanGpuUtilPercent() < GPU_UTIL_LOW) {
                boolean cpuBound = r.meanCpuPercent() >= CPU_SATURATED;
                out.add(new Finding(r.rank(), (GPU_UTIL_LOW - r.meanGpuUtilPercent()) / 100, cpuBound
                        ? String.format(Locale.ROOT, "rank %d: GPU utilisation %.0f%% (below %.0f%%) while the CPU is "
                                + "saturated (%.0f%%, rule: >= %.0f%%): the host cannot feed the GPUs; pre-tokenize the "
                                + "data, raise data.workers only if cores are free, or use a host with more cores",
                        r.rank(), r.meanGpuUtilPercent(), GPU_UTIL_LOW, r.meanCpuPercent(), CPU_SATURATED)
                        : String.format(Locale.ROOT, "rank %d: GPU utilisation %.0f%% (below %.0f%%) with the CPU not "
                                + "saturated (%.0f%%): the GPUs wait; see data wait and communication, or raise "
                                + "training.micro_batch to give each kernel more work",
                        r.rank(), r.meanGpuUtilPercent(), GPU_UTIL_LOW, r.meanCpuPercent())));
            }
            if (r.meanIowaitPercent() > IOWAIT_HIGH) {
                out.add(new Finding(r.rank(), r.meanIowaitPercent() / 100, String.format(Locale.ROOT,
                        "rank %d: the CPUs wait for I/O %.0f%% of the time (rule: > %.0f%%): storage is too slow; "
                                + "copy the data to local disk or pre-tokenize it", r.rank(), r.meanIowaitPercent(),
                        IOWAIT_HIGH)));
            }
            if (r.maxMemoryUsedShare() > MEMORY_USED_HIGH) {
                out.add(new Finding(r.rank(), r.maxMemoryUsedShare() - MEMORY_USED_HIGH, String.format(Locale.ROOT,
                        "rank %d: host memory reached %.0f%% used (rule: > %.0f%%): close to swapping or the OOM "
                                + "killer; lower training.micro_batch or data.workers", r.rank(),
                        100 * r.maxMemoryUsedShare(), 100 * MEMORY_USED_HIGH)));
            }
            if (ranks.size() > 1 && r.medianStepMs() > STRAGGLER_RATIO * medianOfRanks) {
                out.add(new Finding(r.rank(), r.medianStepMs() / medianOfRanks - 1, String.format(Locale.ROOT,
                        "rank %d is a straggler: its median step takes %.0f ms, %.0f%% more than the median over ranks "
                                + "(rule: > %.0f%%); check that host's load, thermals and data", r.rank(),
                        r.medianStepMs(), 100 * (r.medianStepMs() / medianOfRanks - 1), 100 * (STRAGGLER_RATIO - 1))));
            }
            if (r.skippedSteps() > 0) {
                out.add(new Finding(r.rank(), 0, String.format(Locale.ROOT,
                        "rank %d skipped %d step(s) on non-finite loss or gradients: lower optimizer.lr or raise "
                                + "schedule.warmup_steps", r.rank(), r.skippedSteps())));
            }
        }
        out.sort(Comparator.comparingDouble(Finding::weight).reversed().thenComparingInt(Finding::rank));
        return out;
    }

    /** The verdict when no rule fires. */
    public static String computeBound(List<RankSummary> ranks) {
        double compute = mean(ranks.stream().mapToDouble(RankSummary::computeShare).toArray());
        return String.format(Locale.ROOT, "No bottleneck rule fired: forward+backward takes %.0f%% of step time; the run"
                + " is compute-bound (raise MFU with larger micro-batches or a faster device)", 100 * compute);
    }

    private static double share(List<RunData.Step> steps, java.util.function.ToDoubleFunction<RunData.Step> f,
                                double total) {
        if (steps.isEmpty() || !(total > 0)) {
            return Double.NaN;
        }
        double sum = 0;
        for (RunData.Step s : steps) {
            double v = f.applyAsDouble(s);
            sum += Double.isFinite(v) ? v : 0;
        }
        return sum / total;
    }

    static double mean(double[] values) {
        return Arrays.stream(values).filter(Double::isFinite).average().orElse(Double.NaN);
    }

    static double median(double[] values) {
        double[] v = Arrays.stream(values).filter(Double::isFinite).sorted().toArray();
        if (v.length == 0) {
            return Double.NaN;
        }
        return v.length % 2 == 1 ? v[v.length / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
    }
}
