package io.dtrain.optim;

import io.dtrain.config.OptimizerConfig;
import io.dtrain.config.ScheduleConfig;

import java.util.Locale;

/**
 * Learning rate as a pure function of the (0-based) optimizer step, nanoGPT / llm.c style.
 *
 * <pre>
 *   W = warmupSteps, D = decaySteps, lr = peak lr, min = minLr
 *   step &lt; W                :  lr * (step + 1) / W                         (linear warm-up; never exactly 0)
 *   W &lt;= step &lt; D, cosine   :  min + 0.5 * (1 + cos(pi * r)) * (lr - min)   with r = (step - W) / (D - W)
 *   W &lt;= step &lt; D, linear   :  min + (1 - r) * (lr - min)
 *   step &gt;= D (or D &lt;= W)   :  min                                       (cosine / linear)
 *   step &gt;= W, constant     :  lr                                        (min is not used)
 * </pre>
 * So the first post-warm-up step (step == W) gets exactly {@code lr} and step D gets exactly {@code min}.
 */
public final class LrSchedule {

    public enum Decay {
        COSINE, LINEAR, CONSTANT;

        /** Parses "cosine", "linear" or "constant" (case-insensitive). */
        public static Decay parse(String s) {
            if (s == null) {
                throw new IllegalArgumentException("schedule.decay is missing: use cosine, linear or constant");
            }
            switch (s.trim().toLowerCase(Locale.ROOT)) {
                case "cosine": return COSINE;
                case "linear": return LINEAR;
                case "constant": return CONSTANT;
                default:
                    throw new IllegalArgumentException("schedule.decay: unknown value '" + s
                            + "': use cosine, linear or constant");
            }
        }
    }

    private final double peakLr;
    private final double minLr;
    private final long warmupSteps;
    private final Decay decay;
    private final long decaySteps;

    public LrSchedule(double peakLr, double minLr, long warmupSteps, Decay decay, long decaySteps) {
        if (!(peakLr >= 0) || !(minLr >= 0) || Double.isInfinite(peakLr) || Double.isInfinite(minLr)) {
            throw new IllegalArgumentException("optimizer.lr and optimizer.min_lr must be finite and >= 0, got lr="
                    + peakLr + " min_lr=" + minLr);
        }
        if (warmupSteps < 0 || decaySteps < 0) {
            throw new IllegalArgumentException("schedule.warmup_steps and schedule.decay_steps must be >= 0, got "
                    + warmupSteps + " and " + decaySteps);
        }
        this.peakLr = peakLr;
        this.minLr = minLr;
        this.warmupSteps = warmupSteps;
        this.decay = decay;
        this.decaySteps = decaySteps;
    }

    /**
     * The schedule of a run. {@code schedule.decay_steps == 0} means {@code trainingSteps}; lr and min_lr are
     * both multiplied by {@link #dataParallelScale(String, int)} of {@code optimizer.lr_scaling}.
     */
    public static LrSchedule of(OptimizerConfig opt, ScheduleConfig sched, long trainingSteps, int dataParallelSize) {
        double scale = dataParallelScale(opt.lrScaling(), dataParallelSize);
        long decaySteps = sched.decaySteps() > 0 ? sched.decaySteps() : trainingSteps;
        return new LrSchedule(opt.lr() * scale, opt.minLr() * scale, sched.warmupSteps(),
                Decay.parse(sched.decay()), decaySteps);
    }

    /** "none" = 1, "linear" = worldSize, "sqrt" = sqrt(worldSize) (Goyal et al. linear scaling rule, or its sqrt). */
    public static double dataParallelScale(String lrScaling, int worldSize) {
        if (worldSize < 1) {
            throw new IllegalArgumentException("data-parallel world size must be >= 1, got " + worldSize);
        }
        String s = lrScaling == null ? "none" : lrScaling.trim().toLowerCase(Locale.ROOT);
        switch (s) {
            case "none": return 1.0;
            case "linear": return worldSize;
            case "sqrt": return Math.sqrt(worldSize);
            default:
                throw new IllegalArgumentException("optimizer.lr_scaling: unknown value '" + lrScaling
                        + "': use none, linear or sqrt");
        }
    }

    /** The learning rate for 0-based optimizer step {@code step}. */
    public double lr(long step) {
        if (step < 0) {
            throw new IllegalArgumentException("step must be >= 0, got " + step);
        }
        if (step < warmupSteps) {
            return peakLr * (step + 1) / warmupSteps;
        }
        if (decay == Decay.CONSTANT) {
            return peakLr;
        }
        if (step >= decaySteps) {
            return minLr;
        }
        double ratio = (double) (step - warmupSteps) / (double) (decaySteps - warmupSteps);
        double coeff = decay == Decay.COSINE ? 0.5 * (1.0 + Math.cos(Math.PI * ratio)) : 1.0 - ratio;
        return minLr + coeff * (peakLr - minLr);
    }

    public double peakLr() {
        return peakLr;
    }

    public double minLr() {
        return minLr;
    }

    public long warmupSteps() {
        return warmupSteps;
    }

    public Decay decay() {
        return decay;
    }

    public long decaySteps() {
        return decaySteps;
    }

    @Override
    public String toString() {
        return "LrSchedule{lr=" + peakLr + ", min_lr=" + minLr + ", warmup=" + warmupSteps + ", decay=" + decay
                + ", decay_steps=" + decaySteps + "}";
    }
}
