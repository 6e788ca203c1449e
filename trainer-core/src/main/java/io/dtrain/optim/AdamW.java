package io.dtrain.optim;

import io.dtrain.config.OptimizerConfig;
import io.dtrain.model.ParamKind;
import io.dtrain.model.ParamLayout;
import io.dtrain.model.ParamSpec;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

import java.nio.ByteBuffer;
import java.nio.DoubleBuffer;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import java.util.ArrayList;
import java.util.List;

/**
 * AdamW over the trainer's flat buffers, exactly PyTorch's {@code torch.optim.AdamW} (amsgrad=False):
 *
 * <pre>
 *   g  = grad * gradScale                      (gradScale carries the clip factor and any 1/N averaging)
 *   p  = p * (1 - lr * wd)                     (decoupled decay, only where the decay mask is set)
 *   m  = beta1 * m + (1 - beta1) * g
 *   v  = beta2 * v + (1 - beta2) * g * g
 *   p  = p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)      t = 1, 2, ... (step count)
 * </pre>
 *
 * The decay mask follows {@link ParamKind}: MATRIX always, BIAS and NORM only with
 * {@code optimizer.decay_biases_and_norms}, EMBEDDING only with {@code optimizer.decay_embeddings}.
 *
 * <p>The state (m, v) covers one element range {@code [stateFrom, stateTo)} of the layout: the whole layout
 * normally, one shard under ZeRO-1. {@link #update} updates any sub-range of it, so the whole-buffer step is just
 * the widest range. Parameters and gradients are always full-length flat buffers indexed by layout offset;
 * {@code m} and {@code v} are indexed from {@code stateFrom}. Arithmetic is done in double and stored in the
 * buffers' dtype (float32 or float64; params, grads, m and v must share it). CPU (host-memory) buffers only.
 */
public final class AdamW {
    private final double beta1;
    private final double beta2;
    private final double eps;
    private final double weightDecay;
    private final long stateFrom;
    private final long stateTo;
    private final long layoutSize;
    private final DataType dtype;
    /** Start offsets of maximal runs of equal decay flag, plus layoutSize as a sentinel. */
    private final long[] runStart;
    private final boolean[] runDecayed;
    private final INDArray m;
    private final INDArray v;
    private long stepCount;

    /** State for the whole layout. */
    public AdamW(ParamLayout layout, OptimizerConfig cfg, DataType dtype) {
        this(layout, cfg, dtype, 0, layout.size());
    }

    /** State for the shard {@code [stateFrom, stateTo)} of the layout (ZeRO-1). */
    public AdamW(ParamLayout layout, OptimizerConfig cfg, DataType dtype, long stateFrom, long stateTo) {
        if (dtype != DataType.FLOAT && dtype != DataType.DOUBLE) {
            throw new IllegalArgumentException("AdamW state dtype must be FLOAT or DOUBLE, got " + dtype);
        }
        if (stateFrom < 0 || stateTo < stateFrom || stateTo > layout.size()) {
            throw new IllegalArgumentException("AdamW state range [" + stateFrom + ", " + stateTo
                    + ") is outside the layout of " + layout.size() + " elements");
        }
        checkHyper(cfg);
        this.beta1 = cfg.beta1();
        this.beta2 = cfg.beta2();
        this.eps = cfg.eps();
        this.weightDecay = cfg.weightDecay();
        this.stateFrom = stateFrom;
        this.stateTo = stateTo;
        this.layoutSize = layout.size();
        this.dtype = dtype;

        List<Long> starts = new ArrayList<>();
        List<Boolean> flags = new ArrayList<>();
        for (ParamSpec s : layout.specs()) {
            if (s.size() == 0) {
                continue;
            }
            boolean d = isDecayed(s.kind(), cfg);
            if (flags.isEmpty() || flags.get(flags.size() - 1) != d) {
                starts.add(s.offset());
                flags.add(d);
            }
        }
        starts.add(layout.size());
        this.runStart = starts.stream().mapToLong(Long::longValue).toArray();
        this.runDecayed = new boolean[flags.size()];
        for (int i = 0; i < flags.size(); i++) {
            runDecayed[i] = flags.get(i);
        }
        long n = stateTo - stateFrom;
        this.m = Nd4j.zeros(dtype, n);
        this.v = Nd4j.zeros(dtype, n);
    }

    private static void checkHyper(OptimizerConfig cfg) {
        if (!(cfg.beta1() >= 0 && cfg.beta1() < 1)) {
            throw new IllegalArgumentException("optimizer.beta1 must be in [0, 1), got " + cfg.beta1());
        }
        if (!(cfg.beta2() >= 0 && cfg.beta2() < 1)) {
            throw new IllegalArgumentException("optimizer.beta2 must be in [0, 1), got " + cfg.beta2());
        }
        if (!(cfg.eps() > 0) || Double.isInfinite(cfg.eps())) {
            throw new IllegalArgumentException("optimizer.eps must be finite and > 0, got " + cfg.eps());
        }
        if (!(cfg.weightDecay() >= 0) || Double.isInfinite(cfg.weightDecay())) {
            throw new IllegalArgumentException("optimizer.weight_decay must be finite and >= 0, got "
                    + cfg.weightDecay());
        }
    }

    /** Whether a parameter of this kind gets weight decay under {@code cfg}. */
    public static boolean isDecayed(ParamKind kind, OptimizerConfig cfg) {
        switch (kind) {
            case MATRIX: return true;
            case BIAS:
            case NORM: return cfg.decayBiasesAndNorms();
            case EMBEDDING: return cfg.decayEmbeddings();
            default: throw new IllegalStateException("unknown kind " + kind);
        }
    }

    /**
     * One optimizer step over the whole state range: increments the step count, then {@link #update}s
     * {@code [stateFrom, stateTo)} with it.
     */
    public void step(INDArray params, INDArray grads, double lr, double gradScale) {
        stepCount++;
        update(params, grads, stateFrom, stateTo, stepCount, lr, gradScale);
    }

    /**
     * Applies optimizer step number {@code t} (1-based, used for bias correction) to elements {@code [from, to)},
     * which must lie inside the state range. Does not change the step count: a caller that updates a step in
     * several ranges (e.g. bucket by bucket) passes the same {@code t} to each and calls {@link #setStepCount}.
     */
    public void update(INDArray params, INDArray grads, long from, long to, long t, double lr, double gradScale) {
        if (from < stateFrom || to > stateTo || to < from) {
            throw new IllegalArgumentException("update range [" + from + ", " + to + ") is outside this optimizer's "
                    + "state range [" + stateFrom + ", " + stateTo + ")");
        }
        if (t < 1) {
            throw new IllegalArgumentException("AdamW step number t must be >= 1, got " + t);
        }
        if (!Double.isFinite(lr) || lr < 0 || !Double.isFinite(gradScale)) {
            throw new IllegalArgumentException("lr must be finite and >= 0 and gradScale finite, got lr=" + lr
                    + " gradScale=" + gradScale);
        }
        checkBuffer("params", params);
        checkBuffer("grads", grads);
        double bc1 = 1.0 - Math.pow(beta1, t);
        double bc2Sqrt = Math.sqrt(1.0 - Math.pow(beta2, t));
        double stepSize = lr / bc1;
        double decayFactor = 1.0 - lr * weightDecay;

        int run = findRun(from);
        long pos = from;
        while (pos < to) {
            while (runStart[run + 1] <= pos) {
                run++;
            }
            long end = Math.min(to, runStart[run + 1]);
            double factor = runDecayed[run] ? decayFactor : 1.0;
            for (long c = pos; c < end; c += NioViews.MAX_CHUNK) {
                long ce = Math.min(end, c + NioViews.MAX_CHUNK);
                if (dtype == DataType.FLOAT) {
                    updateFloat(params, grads, c, ce, factor, stepSize, bc2Sqrt, gradScale);
                } else {
                    updateDouble(params, grads, c, ce, factor, stepSize, bc2Sqrt, gradScale);
                }
            }
            pos = end;
        }
    }

    /**
     * float32 state: the update in float32 lanes (as PyTorch's AdamW computes it for float32 parameters), split
     * over the compute threads. Element-wise, so the result does not depend on the split.
     */
    private void updateFloat(INDArray params, INDArray grads, long from, long to, double decayFactor,
                             double stepSize, double bc2Sqrt, double gradScale) {
        ByteBuffer p = FloatLanes.bytes(params, from, to);
        ByteBuffer g = FloatLanes.bytes(grads, from, to);
        ByteBuffer mb = FloatLanes.bytes(m, from - stateFrom, to - stateFrom);
        ByteBuffer vb = FloatLanes.bytes(v, from - stateFrom, to - stateFrom);
        int n = (int) (to - from);
        float gs = (float) gradScale;
        float b1 = (float) beta1;
        float b2 = (float) beta2;
        float omb1 = (float) (1.0 - beta1);
        float omb2 = (float) (1.0 - beta2);
        float e = (float) eps;
        float decay = (float) decayFactor;
        float step = (float) stepSize;
        float invBc2 = (float) (1.0 / bc2Sqrt);
        FloatLanes.forEachShare(n, (a, z) -> {
            int i = a;
            for (; i + FloatLanes.L <= z; i += FloatLanes.L) {
                FloatVector gi = FloatLanes.load(g, i).mul(gs);
                FloatVector mi = FloatLanes.load(mb, i).mul(b1).add(gi.mul(omb1));
                FloatVector vi = FloatLanes.load(vb, i).mul(b2).add(gi.mul(gi).mul(omb2));
                FloatLanes.store(mi, mb, i);
                FloatLanes.store(vi, vb, i);
                FloatVector denom = vi.lanewise(VectorOperators.SQRT).mul(invBc2).add(e);
                FloatLanes.store(FloatLanes.load(p, i).mul(decay).sub(mi.div(denom).mul(step)), p, i);
            }
            for (; i < z; i++) {
                float gi = g.getFloat(i << 2) * gs;
                float mi = b1 * mb.getFloat(i << 2) + omb1 * gi;
                float vi = b2 * vb.getFloat(i << 2) + omb2 * gi * gi;
                mb.putFloat(i << 2, mi);
                vb.putFloat(i << 2, vi);
                float denom = (float) Math.sqrt(vi) * invBc2 + e;
                p.putFloat(i << 2, p.getFloat(i << 2) * decay - mi / denom * step);
            }
        });
    }

    private void updateDouble(INDArray params, INDArray grads, long from, long to, double decayFactor,
                              double stepSize, double bc2Sqrt, double gradScale) {
        DoubleBuffer p = NioViews.doubles(params, from, to);
        DoubleBuffer g = NioViews.doubles(grads, from, to);
        DoubleBuffer mb = NioViews.doubles(m, from - stateFrom, to - stateFrom);
        DoubleBuffer vb = NioViews.doubles(v, from - stateFrom, to - stateFrom);
        double b1 = beta1, b2 = beta2, e = eps, omb1 = 1.0 - beta1, omb2 = 1.0 - beta2;
        int n = (int) (to - from);
        for (int i = 0; i < n; i++) {
            double gi = g.get(i) * gradScale;
            double mi = b1 * mb.get(i) + omb1 * gi;
            double vi = b2 * vb.get(i) + omb2 * gi * gi;
            mb.put(i, mi);
            vb.put(i, vi);
            double pi = p.get(i) * decayFactor;
            p.put(i, pi - stepSize * (mi / (Math.sqrt(vi) / bc2Sqrt + e)));
        }
    }

    private int findRun(long pos) {
        int lo = 0, hi = runDecayed.length - 1;
        while (lo < hi) {
            int mid = (lo + hi + 1) >>> 1;
            if (runStart[mid] <= pos) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        return lo;
    }

    private void checkBuffer(String what, INDArray a) {
        NioViews.checkFlat(what, a);
        if (a.length() != layoutSize) {
            throw new IllegalArgumentException(what + " has " + a.length() + " elements, the layout has " + layoutSize
                    + ": pass the full flat buffer");
        }
        if (a.dataType() != dtype) {
            throw new IllegalArgumentException(what + " is " + a.dataType() + " but the AdamW state is " + dtype);
        }
    }

    /** Whether element {@code index} of the flat buffer gets weight decay. */
    public boolean isDecayed(long index) {
        if (index < 0 || index >= layoutSize) {
            throw new IndexOutOfBoundsException("index " + index + " outside layout of " + layoutSize);
        }
        return runDecayed[findRun(index)];
    }

    /** First moment for {@code [stateFrom, stateTo)}; live, so a checkpoint can be read into it. */
    public INDArray m() {
        return m;
    }

    /** Second moment for {@code [stateFrom, stateTo)}; live, so a checkpoint can be read into it. */
    public INDArray v() {
        return v;
    }

    /** Number of completed optimizer steps (the t of the last step). */
    public long stepCount() {
        return stepCount;
    }

    /** Restores the step count, e.g. from a checkpoint. */
    public void setStepCount(long stepCount) {
        if (stepCount < 0) {
            throw new IllegalArgumentException("step count must be >= 0, got " + stepCount);
        }
        this.stepCount = stepCount;
    }

    public long stateFrom() {
        return stateFrom;
    }

    public long stateTo() {
        return stateTo;
    }

    public DataType dtype() {
        return dtype;
    }
}
