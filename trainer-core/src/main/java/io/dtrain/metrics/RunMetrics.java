package io.dtrain.metrics;

import io.dtrain.config.MetricsConfig;
import io.dtrain.config.RunConfig;
import io.dtrain.train.RunContext;
import io.dtrain.train.StepStats;

import java.io.BufferedWriter;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.stream.Stream;

/**
 * Everything one rank records about a run, behind one object the trainer holds:
 * <pre>
 *   try (RunMetrics metrics = RunMetrics.start(cfg, run, parameterCount)) {
 *       ... tracer spans around each phase: metrics.tracer().span("forward_backward", "compute", t0, t1) ...
 *       metrics.step(stats);      // one line of metrics/steps-rank&lt;r&gt;.jsonl (+ MFU), gauges, trace flush
 *   }                             // stops the sampler and the endpoint; rank 0 merges the trace into trace.json
 * </pre>
 * Files, under the run directory: {@code metrics/steps-rank<r>.jsonl}, {@code metrics/system-rank<r>.jsonl}
 * (every {@code metrics.interval_ms}), {@code metrics/trace-rank<r>.json} and {@code trace.json}
 * ({@code metrics.trace}); a Prometheus endpoint on {@code metrics.prometheus_port + rank} when set.
 */
public final class RunMetrics implements AutoCloseable {
    private final Path runDir;
    private final int rank;
    private final int dataParallelSize;
    private final double flopsPerToken;
    private final double peakFlops;
    private final String peakSource;
    private final BufferedWriter steps;
    private final SystemSampler sampler;
    private final Tracer tracer;
    private final PrometheusEndpoint endpoint;
    private volatile double clockOffsetMs;
    private volatile StepStats lastStep;
    private volatile double lastMfu = Double.NaN;

    private RunMetrics(RunConfig cfg, RunContext run, long parameterCount) throws IOException {
        MetricsConfig m = cfg.metrics();
        this.runDir = Path.of(cfg.output().dir());
        this.rank = run.rank();
        this.dataParallelSize = run.dataParallelSize();
        this.flopsPerToken = Mfu.flopsPerToken(cfg.model(), parameterCount);
        this.peakFlops = Mfu.peakFlops(m, GemmBenchmark::quickPeak);
        this.peakSource = m.peakFlops() > 0 ? "metrics.peak_flops"
                : m.device().equals("cpu") ? "cpu, fp32 GEMM measured now" : m.device();
        Path dir = Files.createDirectories(runDir.resolve("metrics"));
        List<AutoCloseable> opened = new ArrayList<>();
        try {
            this.steps = Files.newBufferedWriter(dir.resolve("steps-rank" + rank + ".jsonl"), StandardCharsets.UTF_8,
                    StandardOpenOption.CREATE, StandardOpenOption.APPEND);
            opened.add(steps);
            this.sampler = m.intervalMs() <= 0 ? null : new SystemSampler(dir.resolve("system-rank" + rank + ".jsonl"),
                    rank, m.intervalMs(), () -> clockOffsetMs, SystemSampler.nvidiaSmiOnPath());
            if (sampler != null) {
                opened.add(sampler);
            }
            this.tracer = m.trace() ? Tracer.open(dir.resolve("trace-rank" + rank + ".json"), rank) : Tracer.NOOP;
            opened.add(tracer);
            this.endpoint = m.prometheusPort() <= 0 ? null
                    : PrometheusEndpoint.start(m.prometheusPort() + rank, this::gauges);
        } catch (IOException | RuntimeException e) {
            for (AutoCloseable c : opened) {
                try {
                    c.close();
                } catch (Exception suppressed) {
                    e.addSuppressed(suppressed);
                }
            }
            throw e;
        }
    }

    /**
     * Starts recording for one rank.
     *
     * @param parameterCount all parameters of the model (the MFU's N excludes the position embedding)
     */
    public static RunMetrics start(RunConfig cfg, RunContext run, long parameterCount) {
        try {
            return new RunMetrics(cfg, run, parameterCount);
        } catch (IOException e) {
            throw new UncheckedIOException("starting the metrics of rank " + run.rank() + " under "
                    + cfg.output().dir() + ": " + e.getMessage(), e);
        }
    }

    /** For spans from any thread (collectives, loader workers). */
    public Tracer tracer() {
        return tracer;
    }

    /** This host's clock minus rank 0's, as the collectives layer measures it at rendezvous. */
    public void setClockOffsetMs(double offsetMs) {
        this.clockOffsetMs = offsetMs;
        tracer.setClockOffsetMs(offsetMs);
    }

    public double flopsPerToken() {
        return flopsPerToken;
    }

    public double peakFlops() {
        return peakFlops;
    }

    /** The port of the Prometheus endpoint, or -1 without one. */
    public int prometheusPort() {
        return endpoint == null ? -1 : endpoint.port();
    }

    /** The newest system reading, or null (sampling off, or before the first interval). */
    public SystemSample latestSystemSample() {
        return sampler == null ? null : sampler.latest();
    }

    /** One line saying what is recorded, for the run's log. */
    public String describe() {
        return String.format(Locale.ROOT, "metrics: %s/metrics (steps%s%s)%s; MFU = %.3g FLOP/token x tokens/s / %.3g FLOP/s (%s)",
                runDir, sampler == null ? "" : ", system", tracer == Tracer.NOOP ? "" : ", trace",
                endpoint == null ? "" : "; Prometheus on :" + endpoint.port() + "/metrics", flopsPerToken, peakFlops,
                peakSource);
    }

    /** Model FLOPs utilization of this rank during {@code s}. */
    public double mfu(StepStats s) {
        return Mfu.mfu(flopsPerToken, (double) s.tokens() / dataParallelSize, s.stepMs() / 1000.0, peakFlops);
    }

    /** Records a finished step: its JSON line (flushed), the gauges, and the trace so far. */
    public void step(StepStats s) {
        double mfu = mfu(s);
        double achieved = s.stepMs() <= 0 ? Double.NaN
                : flopsPerToken * s.tokens() / dataParallelSize / (s.stepMs() / 1000.0);
        String extra = "," + new JsonLine().field(StepFields.FLOPS_PER_TOKEN, flopsPerToken)
                .field(StepFields.ACHIEVED_FLOPS, achieved).field(StepFields.PEAK_FLOPS, peakFlops)
                .field(StepFields.MFU, mfu).fields();
        try {
            steps.write(s.toJson(System.currentTimeMillis(), rank, extra));
            steps.newLine();
            steps.flush();
        } catch (IOException e) {
            throw new UncheckedIOException("writing " + runDir.resolve("metrics/steps-rank" + rank + ".jsonl"), e);
        }
        lastStep = s;
        lastMfu = mfu;
        tracer.flush();
    }

    private List<PrometheusEndpoint.Gauge> gauges() {
        List<PrometheusEndpoint.Gauge> g = new ArrayList<>();
        Map<String, String> r = Map.of("rank", Integer.toString(rank));
        StepStats s = lastStep;
        if (s != null) {
            g.add(new PrometheusEndpoint.Gauge("dtrain_step", "optimizer steps done", r, s.step() + 1));
            g.add(new PrometheusEndpoint.Gauge("dtrain_loss", "training loss of the last step", r, s.loss()));
            g.add(new PrometheusEndpoint.Gauge("dtrain_learning_rate", "learning rate of the last step", r, s.lr()));
            g.add(new PrometheusEndpoint.Gauge("dtrain_grad_norm", "global gradient norm before clipping", r, s.gradNorm()));
            g.add(new PrometheusEndpoint.Gauge("dtrain_tokens_per_second", "tokens per second (all ranks)", r,
                    s.tokensPerSecond()));
            g.add(new PrometheusEndpoint.Gauge("dtrain_step_seconds", "wall time of the last step", r, s.stepMs() / 1000));
            String help = "time of one phase of the last step";
            g.add(phase(help, "data_wait", s.dataWaitMs()));
            g.add(phase(help, "compute", s.computeMs()));
            g.add(phase(help, "optimizer", s.optimizerMs()));
            g.add(phase(help, "comm", s.commMs()));
            g.add(new PrometheusEndpoint.Gauge("dtrain_mfu", "model FLOPs utilization of the last step (0..1)", r, lastMfu));
        }
        SystemSample sys = latestSystemSample();
        if (sys != null) {
            g.add(new PrometheusEndpoint.Gauge("dtrain_cpu_percent", "host CPU busy, % of all cores", r, sys.cpuPercent()));
            g.add(new PrometheusEndpoint.Gauge("dtrain_process_cpu_percent", "this process's CPU, % of all cores", r,
                    sys.processCpuPercent()));
            g.add(new PrometheusEndpoint.Gauge("dtrain_iowait_percent", "host CPU waiting for I/O, %", r, sys.iowaitPercent()));
            g.add(new PrometheusEndpoint.Gauge("dtrain_memory_available_bytes", "host MemAvailable", r, sys.memAvailableBytes()));
            g.add(new PrometheusEndpoint.Gauge("dtrain_heap_used_bytes", "JVM heap in use", r, sys.heapUsedBytes()));
            g.add(new PrometheusEndpoint.Gauge("dtrain_offheap_bytes", "ND4J/JavaCPP off-heap bytes", r, sys.offHeapBytes()));
            g.add(new PrometheusEndpoint.Gauge("dtrain_network_receive_bytes_per_second", "received, all interfaces but lo",
                    r, sys.netRxBytesPerSec()));
            g.add(new PrometheusEndpoint.Gauge("dtrain_network_transmit_bytes_per_second", "sent, all interfaces but lo", r,
                    sys.netTxBytesPerSec()));
            g.add(new PrometheusEndpoint.Gauge("dtrain_disk_read_bytes_per_second", "read from disks", r,
                    sys.diskReadBytesPerSec()));
            g.add(new PrometheusEndpoint.Gauge("dtrain_disk_write_bytes_per_second", "written to disks", r,
                    sys.diskWriteBytesPerSec()));
            for (GpuSample gpu : sys.gpus()) {
                Map<String, String> l = new java.util.TreeMap<>(Map.of("rank", Integer.toString(rank), "gpu", Integer.toString(gpu.index())));
                g.add(new PrometheusEndpoint.Gauge("dtrain_gpu_utilization_percent", "nvidia-smi utilization.gpu", l,
                        gpu.utilPercent()));
                g.add(new PrometheusEndpoint.Gauge("dtrain_gpu_memory_used_bytes", "nvidia-smi memory.used", l,
                        gpu.memUsedBytes()));
                g.add(new PrometheusEndpoint.Gauge("dtrain_gpu_power_watts", "nvidia-smi power.draw", l, gpu.powerWatts()));
                g.add(new PrometheusEndpoint.Gauge("dtrain_gpu_temperature_celsius", "nvidia-smi temperature.gpu", l,
                        gpu.temperatureC()));
            }
        }
        return g;
    }

    private PrometheusEndpoint.Gauge phase(String help, String phase, double ms) {
        return new PrometheusEndpoint.Gauge("dtrain_phase_seconds", help,
                new java.util.TreeMap<>(Map.of("rank", Integer.toString(rank), "phase", phase)), ms / 1000);
    }

    /** Stops recording; rank 0 then merges the per-rank traces present into {@code trace.json}. */
    @Override
    public void close() {
        List<Exception> errors = new ArrayList<>();
        closeQuietly(endpoint, errors);
        closeQuietly(sampler, errors);
        closeQuietly(tracer, errors);
        closeQuietly(steps, errors);
        if (rank == 0 && tracer != Tracer.NOOP) {
            try {
                mergeTraces(runDir);
            } catch (IOException | RuntimeException e) {
                errors.add(e);
            }
        }
        if (!errors.isEmpty()) {
            UncheckedIOException e = new UncheckedIOException("closing the metrics of rank " + rank,
                    errors.get(0) instanceof IOException io ? io : new IOException(errors.get(0)));
            errors.stream().skip(1).forEach(e::addSuppressed);
            throw e;
        }
    }

    /** Joins {@code metrics/trace-rank*.json} of a run into {@code trace.json}; false if there are none. */
    public static boolean mergeTraces(Path runDir) throws IOException {
        Path dir = runDir.resolve("metrics");
        if (!Files.isDirectory(dir)) {
            return false;
        }
        List<Path> files;
        try (Stream<Path> s = Files.list(dir)) {
            files = s.filter(p -> p.getFileName().toString().matches("trace-rank\\d+\\.json")).sorted().toList();
        }
        if (files.isEmpty()) {
            return false;
        }
        Tracer.merge(files, runDir.resolve("trace.json"));
        return true;
    }

    private static void closeQuietly(AutoCloseable c, List<Exception> errors) {
        if (c == null) {
            return;
        }
        try {
            c.close();
        } catch (Exception e) {
            errors.add(e);
        }
    }

    Optional<SystemSampler> sampler() {
        return Optional.ofNullable(sampler);
    }
}
