package io.dtrain.train;

import io.dtrain.config.TrainingConfig;

import java.util.Locale;

/**
 * Dynamic loss scaling for fp16 training, as Megatron's {@code DynamicGradScaler} and DeepSpeed's
 * {@code DynamicLossScaler} do it: the loss is multiplied by {@link #scale()} before the backward pass so that small
 * gradients survive fp16, and the gradients are divided by it (in fp32) before clipping and AdamW. After each step
 * {@link #update} is told whether any gradient overflowed (Inf or NaN, agreed by every rank): on overflow the step
 * is skipped and the scale halved (an overflow at {@code min} stops the run, as DeepSpeed's
 * {@code raise_error_at_min_scale}); after {@code growthInterval} steps in a row without one it doubles.
 * Pure state, no I/O: the trainer calls it and checkpoints {@link #scale()} and {@link #goodSteps()}.
 */
public final class LossScaler {
    private final boolean enabled;
    private final int growthInterval;
    private final double min;
    private double scale;
    private int goodSteps;

    /**
     * @param initial        the scale at the start (Megatron and DeepSpeed: 2^16)
     * @param growthInterval steps without overflow before the scale doubles (their default: 2000)
     * @param min            the floor: an overflow when the scale is already there stops the run
     */
    public LossScaler(double initial, int growthInterval, double min) {
        if (!(initial > 0) || growthInterval < 1 || !(min > 0) || min > initial) {
            throw new IllegalArgumentException("loss scale: need initial >= min > 0 and growthInterval >= 1, got initial="
                    + initial + " growthInterval=" + growthInterval + " min=" + min);
        }
        this.enabled = true;
        this.scale = initial;
        this.growthInterval = growthInterval;
        this.min = min;
    }

    private LossScaler() {
        this.enabled = false;
        this.scale = 1.0;
        this.growthInterval = Integer.MAX_VALUE;
        this.min = 1.0;
    }

    /** fp32: a scale of 1 that never changes; an overflow is then the run's non-finite gradient, not the scaler's. */
    public static LossScaler none() {
        return new LossScaler();
    }

    /** The scaler {@code training.precision} asks for. */
    public static LossScaler of(TrainingConfig t) {
        return t.fp16() ? new LossScaler(t.lossScaleInitial(), t.lossScaleGrowthInterval(), t.lossScaleMin()) : none();
    }

    public boolean enabled() {
        return enabled;
    }

    /** The factor the loss is multiplied by before the backward pass. */
    public double scale() {
        return scale;
    }

    /** Steps in a row without overflow since the scale last changed. */
    public int goodSteps() {
        return goodSteps;
    }

    /**
     * The end of a step: {@code overflow} says whether any gradient was Inf or NaN on any rank. Returns true when
     * the update may be applied (no overflow); on overflow halves the scale, or, at the floor, throws a
     * {@link TrainingException} naming the step.
     */
    public boolean update(boolean overflow, long step) {
        if (!enabled) {
            return !overflow;
        }
        if (!overflow) {
            if (++goodSteps >= growthInterval) {
                scale *= 2;
                goodSteps = 0;
            }
            return true;
        }
        goodSteps = 0;
        if (scale <= min) {
            throw new TrainingException(String.format(Locale.ROOT, "step %d: the gradients overflow fp16 even at the"
                    + " minimum loss scale %s (training.loss_scale.min); the run diverged or its values exceed fp16's"
                    + " range: lower optimizer.lr, lower training.loss_scale.min, or use training.precision: fp32",
                    step, format(scale)));
        }
        scale = Math.max(scale / 2, min);
        return false;
    }

    /** Restores a checkpoint's state. */
    public void restore(double scale, int goodSteps) {
        if (enabled) {
            this.scale = scale;
            this.goodSteps = goodSteps;
        }
    }

    /** 65536 rather than 65536.0; fractions as they are. */
    public static String format(double scale) {
        return scale == Math.rint(scale) && Math.abs(scale) < 1e15 ? Long.toString((long) scale) : Double.toString(scale);
    }
}
