package io.dtrain.train;

import io.dtrain.metrics.StepFields;

import static io.dtrain.metrics.StepFields.*;

/**
 * What one optimizer step did and how long its phases took. One JSON line per step per rank in
 * {@code <run>/metrics/steps-rank<r>.jsonl} (written by {@link io.dtrain.metrics.RunMetrics#step}, which adds the
 * MFU). Phases not measured are NaN and written as null; later phases (pipeline bubble) are new components here.
 *
 * @param step        0-based optimizer step
 * @param loss        mean training loss over the step's global batch (this rank's share with data parallelism)
 * @param lr          learning rate used
 * @param gradNorm    global gradient L2 norm before clipping
 * @param tokens      tokens this step consumed (all ranks)
 * @param stepMs      wall time of the whole step
 * @param dataWaitMs  time waiting for the loader
 * @param computeMs   forward + backward time
 * @param optimizerMs clipping + AdamW + copying parameters into the graphs
 * @param skipped     the update was skipped (non-finite loss or gradient with training.on_non_finite=skip)
 * @param forwardMs   forward time alone (NaN when forward and backward are timed together)
 * @param backwardMs  backward time alone (NaN when forward and backward are timed together)
 * @param commMs      exposed communication: time the step waited for collectives not hidden behind compute
 * @param bubbleMs    pipeline parallelism: time this stage waited for its neighbours' activations and gradients
 *                    (NaN without a pipeline)
 */
public record StepStats(long step, double loss, double lr, double gradNorm, long tokens, double stepMs,
                        double dataWaitMs, double computeMs, double optimizerMs, boolean skipped,
                        double forwardMs, double backwardMs, double commMs, double bubbleMs) {

    /** No pipeline: no bubble. */
    public StepStats(long step, double loss, double lr, double gradNorm, long tokens, double stepMs,
                     double dataWaitMs, double computeMs, double optimizerMs, boolean skipped,
                     double forwardMs, double backwardMs, double commMs) {
        this(step, loss, lr, gradNorm, tokens, stepMs, dataWaitMs, computeMs, optimizerMs, skipped, forwardMs,
                backwardMs, commMs, Double.NaN);
    }

    /** Forward and backward timed together, no exposed communication (one process). */
    public StepStats(long step, double loss, double lr, double gradNorm, long tokens, double stepMs,
                     double dataWaitMs, double computeMs, double optimizerMs, boolean skipped) {
        this(step, loss, lr, gradNorm, tokens, stepMs, dataWaitMs, computeMs, optimizerMs, skipped, Double.NaN,
                Double.NaN, 0);
    }

    public double tokensPerSecond() {
        return stepMs <= 0 ? 0 : tokens / (stepMs / 1000.0);
    }

    /** Step time in none of the measured phases (logging, bookkeeping), never negative. */
    public double otherMs() {
        return Math.max(0, stepMs - dataWaitMs - computeMs - optimizerMs - commMs
                - (Double.isNaN(bubbleMs) ? 0 : bubbleMs));
    }

    public String toJson(long wallClockMillis, int rank) {
        return toJson(wallClockMillis, rank, "");
    }

    /** @param extraFields more fields, each preceded by a comma (e.g. {@code ,"mfu":0.41}), or "" */
    public String toJson(long wallClockMillis, int rank, String extraFields) {
        return String.format(java.util.Locale.ROOT, JSON_FORMAT,
                wallClockMillis, rank, step, json(loss), json(lr), json(gradNorm), tokens, stepMs, dataWaitMs,
                computeMs, millis(forwardMs), millis(backwardMs), optimizerMs, commMs, otherMs(), millis(bubbleMs),
                tokensPerSecond(),
                skipped, extraFields);
    }

    /** The line's format; field names from {@link StepFields}, which {@code dtrain report} reads by. */
    private static final String JSON_FORMAT = "{" + key(TS) + "%d," + key(RANK) + "%d," + key(STEP) + "%d,"
            + key(LOSS) + "%s," + key(LR) + "%s," + key(GRAD_NORM) + "%s," + key(TOKENS) + "%d,"
            + key(STEP_MS) + "%.3f," + key(DATA_WAIT_MS) + "%.3f," + key(COMPUTE_MS) + "%.3f," + key(FORWARD_MS) + "%s,"
            + key(BACKWARD_MS) + "%s," + key(OPTIMIZER_MS) + "%.3f," + key(COMM_MS) + "%.3f," + key(OTHER_MS) + "%.3f,"
            + key(BUBBLE_MS) + "%s," + key(TOKENS_PER_S) + "%.1f," + key(SKIPPED) + "%b%s}";

    private static String key(String name) {
        return "\"" + name + "\":";
    }

    /** Full precision so that resume tests can compare losses exactly. */
    private static String json(double v) {
        return Double.isFinite(v) ? Double.toString(v) : "\"" + v + "\"";
    }

    private static String millis(double v) {
        return Double.isFinite(v) ? String.format(java.util.Locale.ROOT, "%.3f", v) : "null";
    }
}
