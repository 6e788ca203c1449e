package io.dtrain.metrics;

/**
 * The field names of the lines of {@code metrics/steps-rank<r>.jsonl} (a step or an evaluation), defined once: {@link io.dtrain.train.StepStats}
 * and {@link RunMetrics#step} write them, {@code io.dtrain.report} reads them. Durations are in milliseconds.
 */
public final class StepFields {
    /**
     * The record type: {@link #TYPE_STEP} for an optimizer step, {@link #TYPE_EVAL} for an evaluation (fields
     * {@link #TS}, {@link #RANK}, {@link #STEP}, {@link #VAL_LOSS}, {@link #VAL_PPL}, {@link #EVAL_SEQUENCES}).
     * Lines without it (files of older runs) are steps.
     */
    public static final String TYPE = "type";
    public static final String TYPE_STEP = "step";
    public static final String TYPE_EVAL = "eval";
    /** Wall-clock time the line was written, epoch milliseconds of this host's clock. */
    public static final String TS = "ts";
    public static final String RANK = "rank";
    /** 0-based optimizer step; in an evaluation record, the optimizer steps done before it. */
    public static final String STEP = "step";
    public static final String LOSS = "loss";
    public static final String LR = "lr";
    public static final String GRAD_NORM = "grad_norm";
    /** Tokens the step consumed, all ranks. */
    public static final String TOKENS = "tokens";
    public static final String STEP_MS = "step_ms";
    public static final String DATA_WAIT_MS = "data_wait_ms";
    public static final String COMPUTE_MS = "compute_ms";
    public static final String FORWARD_MS = "forward_ms";
    public static final String BACKWARD_MS = "backward_ms";
    public static final String OPTIMIZER_MS = "optimizer_ms";
    /** Exposed communication: time the step waited for collectives not hidden behind compute. */
    public static final String COMM_MS = "comm_ms";
    public static final String OTHER_MS = "other_ms";
    /** Pipeline parallelism: time the stage waited for its neighbours (null without a pipeline). */
    public static final String BUBBLE_MS = "bubble_ms";
    public static final String TOKENS_PER_S = "tokens_per_s";
    /** The update was skipped (non-finite loss or gradients). */
    public static final String SKIPPED = "skipped";
    /** The loss scale the step's backward pass used: 1 in fp32; fp16's dynamic scale (halved after a skipped step). */
    public static final String LOSS_SCALE = "loss_scale";
    /** Added by {@link RunMetrics#step}: {@code training.precision} (fp32, fp16). */
    public static final String PRECISION = "precision";
    /** Added by {@link RunMetrics#step}: ND4J's backend, "cpu" or "cuda". */
    public static final String BACKEND = "backend";
    /** Added by {@link RunMetrics#step}: "cpu", or the rank's GPU: index, name, memory, compute capability. */
    public static final String DEVICE = "device";
    /** Added by {@link RunMetrics#step}: the model FLOPs per token, this rank's achieved FLOP/s, the peak, MFU. */
    public static final String FLOPS_PER_TOKEN = "flops_per_token";
    public static final String ACHIEVED_FLOPS = "achieved_flops";
    public static final String PEAK_FLOPS = "peak_flops";
    public static final String MFU = "mfu";

    /** An evaluation's mean validation loss (nats per token), after {@link #STEP} optimizer steps. */
    public static final String VAL_LOSS = "val_loss";
    /** exp(val_loss). */
    public static final String VAL_PPL = "val_ppl";
    /** Validation sequences the evaluation covered. */
    public static final String EVAL_SEQUENCES = "sequences";

    private StepFields() {
    }
}
