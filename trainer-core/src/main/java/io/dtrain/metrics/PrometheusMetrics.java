package io.dtrain.metrics;

import io.dtrain.train.StepStats;
import io.prometheus.metrics.core.metrics.Counter;
import io.prometheus.metrics.core.metrics.GaugeWithCallback;
import io.prometheus.metrics.core.metrics.Histogram;
import io.prometheus.metrics.exporter.httpserver.HTTPServer;
import io.prometheus.metrics.instrumentation.jvm.JvmMetrics;
import io.prometheus.metrics.model.registry.PrometheusRegistry;
import io.prometheus.metrics.model.snapshots.Labels;

import java.io.IOException;
import java.net.BindException;
import java.util.function.DoubleSupplier;
import java.util.function.Supplier;

/**
 * The Prometheus endpoint of one rank, built on Prometheus's Java client ({@code io.prometheus:prometheus-metrics-*}):
 * {@code GET http://host:port/metrics} in the text exposition format (or OpenMetrics / protobuf when the scraper
 * asks), served by the client's {@code HTTPServer} on daemon threads. Every series carries the labels {@code rank},
 * {@code local_rank}, {@code stage} (pipeline stage, 0 without a pipeline) and {@code replica} (data-parallel
 * replica). Counters only grow ({@code rate()} works on them): {@code dtrain_steps_total},
 * {@code dtrain_tokens_total} and {@code dtrain_samples_total} (this rank's data-parallel share: summed over the
 * ranks of one stage they are the job's), {@code dtrain_skipped_steps_total}; {@code dtrain_step_duration_seconds} is
 * a histogram; the rest are gauges read at scrape time from the newest step, evaluation and system sample; plus the
 * client's standard JVM metrics ({@code jvm_*}, {@code process_*}).
 */
final class PrometheusMetrics implements AutoCloseable {
    /** Where a rank sits; these are the labels of every series. */
    record Place(int rank, int localRank, int stage, int replica) {
        Labels labels() {
            return Labels.of("rank", Integer.toString(rank), "local_rank", Integer.toString(localRank),
                    "stage", Integer.toString(stage), "replica", Integer.toString(replica));
        }
    }

    /** What the gauges read at scrape time. */
    interface Source {
        StepStats lastStep();

        double lastMfu();

        double lastValLoss();

        SystemSample latestSystemSample();
    }

    /** Step-duration buckets: 10 ms to ~5.5 min, doubling (a CPU toy model to a GPU step of a large model). */
    static final double[] STEP_SECONDS_BUCKETS = exponential(0.01, 2, 16);

    private final PrometheusRegistry registry = new PrometheusRegistry();
    private final Labels labels;
    private final Counter steps;
    private final Counter skipped;
    private final Counter tokens;
    private final Counter samples;
    private final Histogram stepSeconds;
    private final HTTPServer server;

    private PrometheusMetrics(int basePort, Place place, Source source) throws IOException {
        this.labels = place.labels();
        steps = Counter.builder().name("dtrain_steps").help("optimizer steps done by this run (since it started or resumed)")
                .constLabels(labels).register(registry);
        skipped = Counter.builder().name("dtrain_skipped_steps").help("steps whose update was skipped (non-finite loss or gradients)")
                .constLabels(labels).register(registry);
        tokens = Counter.builder().name("dtrain_tokens").help("tokens trained on by this rank's data-parallel replica")
                .constLabels(labels).register(registry);
        samples = Counter.builder().name("dtrain_samples").help("sequences trained on by this rank's data-parallel replica")
                .constLabels(labels).register(registry);
        stepSeconds = Histogram.builder().name("dtrain_step_duration_seconds").help("wall time of one optimizer step")
                .classicOnly().classicUpperBounds(STEP_SECONDS_BUCKETS).constLabels(labels).register(registry);
        stepGauge("dtrain_step", "optimizer steps done, counting those before a resume", source, s -> s.step() + 1.0);
        stepGauge("dtrain_loss", "training loss of the last step", source, StepStats::loss);
        stepGauge("dtrain_learning_rate", "learning rate of the last step", source, StepStats::lr);
        stepGauge("dtrain_grad_norm", "global gradient L2 norm of the last step, before clipping", source, StepStats::gradNorm);
        stepGauge("dtrain_tokens_per_second", "tokens per second of the last step, all ranks", source, StepStats::tokensPerSecond);
        gauge("dtrain_mfu", "model FLOPs utilization of the last step (0..1)", source::lastMfu);
        gauge("dtrain_val_loss", "mean validation loss of the last evaluation", source::lastValLoss);
        GaugeWithCallback.builder().name("dtrain_phase_seconds")
                .help("time of one phase of the last step (comm: exposed communication; bubble: pipeline wait)")
                .labelNames("phase").constLabels(labels).callback(cb -> {
                    StepStats s = source.lastStep();
                    if (s == null) {
                        return;
                    }
                    phase(cb, "data_wait", s.dataWaitMs());
                    phase(cb, "compute", s.computeMs());
                    phase(cb, "forward", s.forwardMs());
                    phase(cb, "backward", s.backwardMs());
                    phase(cb, "optimizer", s.optimizerMs());
                    phase(cb, "comm", s.commMs());
                    phase(cb, "bubble", s.bubbleMs());
                    phase(cb, "other", s.otherMs());
                }).register(registry);
        systemGauges(source);
        JvmMetrics.builder().constLabels(labels).register(registry);
        // base + local rank: every node of a job uses the same ports, so one scrape config covers them all
        int port = basePort + place.localRank();
        try {
            server = HTTPServer.builder().port(port).registry(registry).buildAndStart();
        } catch (BindException e) {
            throw new IOException("metrics.prometheus_port: cannot listen on port " + port + " (" + e.getMessage()
                    + "); choose a free base port (local rank r uses prometheus_port + r) or set it to 0", e);
        }
    }

    /** Serves on {@code basePort + place.localRank()}, all interfaces. */
    static PrometheusMetrics start(int basePort, Place place, Source source) throws IOException {
        return new PrometheusMetrics(basePort, place, source);
    }

    int port() {
        return server.getPort();
    }

    /** Counts a finished step: this replica's tokens and samples ({@code tokens} / data-parallel size). */
    void step(StepStats s, int dataParallelSize, int seqLen) {
        steps.inc();
        if (s.skipped()) {
            skipped.inc();
        }
        long replicaTokens = s.tokens() / dataParallelSize;
        tokens.inc(replicaTokens);
        samples.inc(replicaTokens / seqLen);
        if (Double.isFinite(s.stepMs())) {
            stepSeconds.observe(s.stepMs() / 1000);
        }
    }

    private void stepGauge(String name, String help, Source source, java.util.function.ToDoubleFunction<StepStats> f) {
        gauge(name, help, () -> {
            StepStats s = source.lastStep();
            return s == null ? Double.NaN : f.applyAsDouble(s);
        });
    }

    /** A gauge without a sample until its value is known (NaN). */
    private void gauge(String name, String help, DoubleSupplier value) {
        GaugeWithCallback.builder().name(name).help(help).constLabels(labels).callback(cb -> {
            double v = value.getAsDouble();
            if (!Double.isNaN(v)) {
                cb.call(v);
            }
        }).register(registry);
    }

    private void systemGauges(Source source) {
        Supplier<SystemSample> sys = source::latestSystemSample;
        systemGauge("dtrain_cpu_percent", "host CPU busy, % of all cores", sys, SystemSample::cpuPercent);
        systemGauge("dtrain_process_cpu_percent", "this process's CPU, % of all cores", sys, SystemSample::processCpuPercent);
        systemGauge("dtrain_iowait_percent", "host CPU waiting for I/O, %", sys, SystemSample::iowaitPercent);
        systemGauge("dtrain_memory_available_bytes", "host MemAvailable", sys, s -> s.memAvailableBytes());
        systemGauge("dtrain_offheap_bytes", "ND4J/JavaCPP off-heap bytes", sys, s -> s.offHeapBytes());
        systemGauge("dtrain_network_receive_bytes_per_second", "received, all interfaces but lo", sys,
                SystemSample::netRxBytesPerSec);
        systemGauge("dtrain_network_transmit_bytes_per_second", "sent, all interfaces but lo", sys,
                SystemSample::netTxBytesPerSec);
        systemGauge("dtrain_disk_read_bytes_per_second", "read from disks", sys, SystemSample::diskReadBytesPerSec);
        systemGauge("dtrain_disk_write_bytes_per_second", "written to disks", sys, SystemSample::diskWriteBytesPerSec);
        gpuGauge("dtrain_gpu_utilization_percent", "nvidia-smi utilization.gpu", sys, GpuSample::utilPercent);
        gpuGauge("dtrain_gpu_memory_used_bytes", "nvidia-smi memory.used", sys, g -> g.memUsedBytes());
        gpuGauge("dtrain_gpu_power_watts", "nvidia-smi power.draw", sys, GpuSample::powerWatts);
        gpuGauge("dtrain_gpu_temperature_celsius", "nvidia-smi temperature.gpu", sys, GpuSample::temperatureC);
    }

    private void systemGauge(String name, String help, Supplier<SystemSample> sys,
                             java.util.function.ToDoubleFunction<SystemSample> f) {
        gauge(name, help, () -> {
            SystemSample s = sys.get();
            return s == null ? Double.NaN : f.applyAsDouble(s);
        });
    }

    private void gpuGauge(String name, String help, Supplier<SystemSample> sys,
                          java.util.function.ToDoubleFunction<GpuSample> f) {
        GaugeWithCallback.builder().name(name).help(help).labelNames("gpu").constLabels(labels).callback(cb -> {
            SystemSample s = sys.get();
            if (s != null) {
                for (GpuSample g : s.gpus()) {
                    cb.call(f.applyAsDouble(g), Integer.toString(g.index()));
                }
            }
        }).register(registry);
    }

    private static void phase(GaugeWithCallback.Callback cb, String phase, double ms) {
        if (Double.isFinite(ms)) {
            cb.call(ms / 1000, phase);
        }
    }

    private static double[] exponential(double start, double factor, int count) {
        double[] b = new double[count];
        for (int i = 0; i < count; i++) {
            b[i] = start * Math.pow(factor, i);
        }
        return b;
    }

    @Override
    public void close() {
        server.close();
    }
}
