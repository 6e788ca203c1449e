package io.dtrain.metrics;

/**
 * The tags of the TensorBoard scalars a run writes ({@link RunMetrics}); the step axis is optimizer steps done.
 * TensorBoard groups charts by the part before the slash. Durations are in milliseconds; {@code time_ms/comm} is
 * exposed communication (collective time not hidden behind compute), {@code time_ms/bubble} the pipeline wait.
 */
public final class TensorBoardTags {
    public static final String TRAIN_LOSS = "loss/train";
    public static final String VAL_LOSS = "loss/val";
    public static final String VAL_PPL = "loss/val_ppl";
    public static final String LR = "optim/lr";
    public static final String GRAD_NORM = "optim/grad_norm";
    public static final String TOKENS_PER_S = "throughput/tokens_per_s";
    public static final String MFU = "throughput/mfu";
    public static final String STEP_MS = "time_ms/step";
    public static final String DATA_WAIT_MS = "time_ms/data_wait";
    public static final String COMPUTE_MS = "time_ms/compute";
    public static final String FORWARD_MS = "time_ms/forward";
    public static final String BACKWARD_MS = "time_ms/backward";
    public static final String OPTIMIZER_MS = "time_ms/optimizer";
    public static final String COMM_MS = "time_ms/comm";
    public static final String BUBBLE_MS = "time_ms/bubble";
    public static final String OTHER_MS = "time_ms/other";

    private TensorBoardTags() {
    }
}
