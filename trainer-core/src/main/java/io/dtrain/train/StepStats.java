package io.dtrain.train;

import io.dtrain.metrics.JsonLines;
import io.dtrain.metrics.StepFields;

import java.util.Map;

import static io.dtrain.metrics.StepFields.*;

/**
 * What one optimizer step did and how long its phases took. One JSON line per step per rank in
 * {@code <run>/metrics/steps-rank<r>.jsonl} (written by {@link io.dtrain.metrics.RunMetrics#step}, which adds the
 * MFU). Phases not measured are NaN and written as null (the rule of {@link JsonLines}); later phases (pipeline bubble) are new components here.
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
 * @param lossScale   the loss scale this step's backward pass used (1 unless training.precision is fp16)
 */
public record StepStats(long step, double loss, double lr, double gradNorm, long tokens, double stepMs,
                        double dataWaitMs, double computeMs, double optimizerMs, boolean skipped,
                        double forwardMs, double backwardMs, double commMs, double bubbleMs, double lossScale) {

    /** No loss scaling (fp32). */
    public StepStats(long step, double loss, double lr, double gradNorm, long tokens, double stepMs,
                     double dataWaitMs, double computeMs, double optimizerMs, boolean skipped,
                     double forwardMs, double backwardMs, double commMs, double bubbleMs) {
        this(step, loss, lr, gradNorm, tokens, stepMs, dataWaitMs, computeMs, optimizerMs, skipped, forwardMs,
                backwardMs, commMs, bubbleMs, 1.0);
    }

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

    /** The step's JSON line (see {@link #toRecord}). */
    public String toJson(long wallClockMillis, int rank) {
        return JsonLines.line(toRecord(wallClockMillis, rank));
    }

    /**
     * The step's record, field names from {@link StepFields} (which {@code dtrain report} reads by): the loss, lr and
     * norm at full precision (resume tests compare losses exactly), durations and rates to six significant digits.
     */
    public Map<String, Object> toRecord(long wallClockMillis, int rank) {
        Map<String, Object> r = JsonLines.record();
        r.put(TYPE, TYPE_STEP);
        r.put(TS, wallClockMillis);
        r.put(RANK, rank);
        r.put(STEP, step);
        r.put(LOSS, loss);
        r.put(LR, lr);
        r.put(GRAD_NORM, gradNorm);
        r.put(TOKENS, tokens);
        r.put(STEP_MS, JsonLines.measured(stepMs));
        r.put(DATA_WAIT_MS, JsonLines.measured(dataWaitMs));
        r.put(COMPUTE_MS, JsonLines.measured(computeMs));
        r.put(FORWARD_MS, JsonLines.measured(forwardMs));
        r.put(BACKWARD_MS, JsonLines.measured(backwardMs));
        r.put(OPTIMIZER_MS, JsonLines.measured(optimizerMs));
        r.put(COMM_MS, JsonLines.measured(commMs));
        r.put(OTHER_MS, JsonLines.measured(otherMs()));
        r.put(BUBBLE_MS, JsonLines.measured(bubbleMs));
        r.put(TOKENS_PER_S, JsonLines.measured(tokensPerSecond()));
        r.put(SKIPPED, skipped);
        r.put(LOSS_SCALE, lossScale);
        return r;
    }
}
