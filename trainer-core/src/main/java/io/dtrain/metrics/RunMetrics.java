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
import java.util.LinkedHashMap;
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
 *       metrics.step(stats);      // one line of metrics/steps-rank&lt;r&gt;.jsonl (+ MFU), TensorBoard, Prometheus
 *       metrics.eval(step, loss, sequences);   // an evaluation record, likewise
 *   }                             // stops the sampler and the endpoint; rank 0 merges the trace into trace.json
 * </pre>
 * Files, under the run directory: {@code metrics/steps-rank<r>.jsonl} (step and evaluation records, written by
 * {@link JsonLines}), {@code metrics/system-rank<r>.jsonl} (every {@code metrics.interval_ms}),
 * {@code metrics/trace-rank<r>.json} and {@code trace.json} ({@code metrics.trace}),
 * {@code tensorboard/rank<r>/events.out.tfevents.*} ({@code metrics.tensorboard}); a Prometheus endpoint on
 * {@code metrics.prometheus_port + local rank} when set.
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
    private final TensorBoardEvents tensorboard;
    private final PrometheusMetrics prometheus;
    private final int seqLen;
    private final String precision;
    private volatile String backend = "cpu";
    private volatile String device = "cpu";
    private volatile double clockOffsetMs;
    private volatile StepStats lastStep;
    private volatile double lastMfu = Double.NaN;
    private volatile double lastValLoss = Double.NaN;

    private RunMetrics(RunConfig cfg, RunContext run, long parameterCount) throws IOException {
        MetricsConfig m = cfg.metrics();
        this.runDir = Path.of(cfg.output().dir());
        this.rank = run.rank();
        this.dataParallelSize = run.dataParallelSize();
        this.seqLen = cfg.model().seqLen();
        this.precision = cfg.training().precision();
        this.flopsPerToken = Mfu.flopsPerToken(cfg.model(), parameterCount);
        this.peakFlops = Mfu.peakFlops(m, precision, GemmBenchmark::quickPeak);
        this.peakSource = m.peakFlops() > 0 ? "metrics.peak_flops"
                : m.device().equals("cpu") ? "cpu, fp32 GEMM measured now" : m.device() + " " + precision;
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
            this.tensorboard = m.tensorboard()
                    ? TensorBoardEvents.create(runDir.resolve("tensorboard").resolve("rank" + rank), rank) : null;
            if (tensorboard != null) {
                opened.add(tensorboard);
            }
            this.prometheus = m.prometheusPort() <= 0 ? null : PrometheusMetrics.start(m.prometheusPort(),
                    new PrometheusMetrics.Place(rank, run.localRank(), run.stage(), run.dataParallelRank()), source());
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

    /** ND4J's backend ("cpu", "cuda") and this rank's device ("cpu" or its GPU), written into every step record. */
    public void setDevice(String backend, String device) {
        this.backend = backend;
        this.device = device;
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
        return prometheus == null ? -1 : prometheus.port();
    }

    /** The TensorBoard event file, or null ({@code metrics.tensorboard: false}). */
    public Path tensorboardFile() {
        return tensorboard == null ? null : tensorboard.file();
    }

    /** The newest system reading, or null (sampling off, or before the first interval). */
    public SystemSample latestSystemSample() {
        return sampler == null ? null : sampler.latest();
    }

    /** One line saying what is recorded, for the run's log. */
    public String describe() {
        return String.format(Locale.ROOT, "metrics: %s/metrics (steps%s%s)%s%s; MFU = %.3g FLOP/token x tokens/s / %.3g FLOP/s (%s)",
                runDir, sampler == null ? "" : ", system", tracer == Tracer.NOOP ? "" : ", trace",
                tensorboard == null ? "" : "; TensorBoard: " + runDir.resolve("tensorboard"),
                prometheus == null ? "" : "; Prometheus on :" + prometheus.port() + "/metrics", flopsPerToken, peakFlops,
                peakSource);
    }

    /** Model FLOPs utilization of this rank during {@code s}. */
    public double mfu(StepStats s) {
        return Mfu.mfu(flopsPerToken, (double) s.tokens() / dataParallelSize, s.stepMs() / 1000.0, peakFlops);
    }

    /** Records a finished step: its JSON line (flushed), its TensorBoard scalars, Prometheus, the trace so far. */
    public void step(StepStats s) {
        double mfu = mfu(s);
        double achieved = s.stepMs() <= 0 ? Double.NaN
                : flopsPerToken * s.tokens() / dataParallelSize / (s.stepMs() / 1000.0);
        long now = System.currentTimeMillis();
        Map<String, Object> record = s.toRecord(now, rank);
        record.put(StepFields.PRECISION, precision);
        record.put(StepFields.BACKEND, backend);
        record.put(StepFields.DEVICE, device);
        record.put(StepFields.FLOPS_PER_TOKEN, flopsPerToken);
        record.put(StepFields.ACHIEVED_FLOPS, JsonLines.measured(achieved));
        record.put(StepFields.PEAK_FLOPS, peakFlops);
        record.put(StepFields.MFU, JsonLines.measured(mfu));
        writeLine(record);
        if (tensorboard != null) {
            Map<String, Double> scalars = new LinkedHashMap<>();
            scalars.put(TensorBoardTags.TRAIN_LOSS, s.loss());
            scalars.put(TensorBoardTags.LR, s.lr());
            scalars.put(TensorBoardTags.GRAD_NORM, s.gradNorm());
            scalars.put(TensorBoardTags.TOKENS_PER_S, s.tokensPerSecond());
            scalars.put(TensorBoardTags.MFU, mfu);
            scalars.put(TensorBoardTags.STEP_MS, s.stepMs());
            scalars.put(TensorBoardTags.DATA_WAIT_MS, s.dataWaitMs());
            scalars.put(TensorBoardTags.COMPUTE_MS, s.computeMs());
            scalars.put(TensorBoardTags.FORWARD_MS, s.forwardMs());
            scalars.put(TensorBoardTags.BACKWARD_MS, s.backwardMs());
            scalars.put(TensorBoardTags.OPTIMIZER_MS, s.optimizerMs());
            scalars.put(TensorBoardTags.COMM_MS, s.commMs());
            scalars.put(TensorBoardTags.BUBBLE_MS, s.bubbleMs());
            scalars.put(TensorBoardTags.OTHER_MS, s.otherMs());
            writeScalars(s.step() + 1, now, scalars);
        }
        lastStep = s;
        lastMfu = mfu;
        if (prometheus != null) {
            prometheus.step(s, dataParallelSize, seqLen);
        }
        tracer.flush();
    }

    /**
     * Records an evaluation after {@code stepsDone} optimizer steps: an {@code "type": "eval"} line in the steps
     * file, the TensorBoard scalars {@code loss/val} and {@code loss/val_ppl}, and Prometheus's {@code dtrain_val_loss}.
     */
    public void eval(long stepsDone, double valLoss, int sequences) {
        long now = System.currentTimeMillis();
        Map<String, Object> record = JsonLines.record();
        record.put(StepFields.TYPE, StepFields.TYPE_EVAL);
        record.put(StepFields.TS, now);
        record.put(StepFields.RANK, rank);
        record.put(StepFields.STEP, stepsDone);
        record.put(StepFields.VAL_LOSS, valLoss);
        record.put(StepFields.VAL_PPL, Math.exp(valLoss));
        record.put(StepFields.EVAL_SEQUENCES, sequences);
        writeLine(record);
        if (tensorboard != null) {
            writeScalars(stepsDone, now, Map.of(TensorBoardTags.VAL_LOSS, valLoss, TensorBoardTags.VAL_PPL, Math.exp(valLoss)));
        }
        lastValLoss = valLoss;
    }

    private void writeLine(Map<String, Object> record) {
        try {
            steps.write(JsonLines.line(record));
            steps.newLine();
            steps.flush();
        } catch (IOException e) {
            throw new UncheckedIOException("writing " + runDir.resolve("metrics/steps-rank" + rank + ".jsonl"), e);
        }
    }

    private void writeScalars(long step, long wallMillis, Map<String, Double> scalars) {
        try {
            tensorboard.scalars(step, wallMillis, scalars);
        } catch (IOException e) {
            throw new UncheckedIOException("writing " + tensorboard.file(), e);
        }
    }

    private PrometheusMetrics.Source source() {
        return new PrometheusMetrics.Source() {
            @Override
            public StepStats lastStep() {
                return lastStep;
            }

            @Override
            public double lastMfu() {
                return lastMfu;
            }

            @Override
            public double lastValLoss() {
                return lastValLoss;
            }

            @Override
            public SystemSample latestSystemSample() {
                return RunMetrics.this.latestSystemSample();
            }
        };
    }

    /** Stops recording; rank 0 then merges the per-rank traces present into {@code trace.json}. */
    @Override
    public void close() {
        List<Exception> errors = new ArrayList<>();
        closeQuietly(prometheus, errors);
        closeQuietly(sampler, errors);
        closeQuietly(tensorboard, errors);
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
