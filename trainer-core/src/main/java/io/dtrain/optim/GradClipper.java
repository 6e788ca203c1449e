package io.dtrain.optim;

import io.dtrain.model.ParamLayout;
import io.dtrain.model.ParamSpec;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;

import java.nio.DoubleBuffer;
import java.nio.FloatBuffer;
import java.util.Arrays;
import java.util.Optional;

/**
 * Global gradient-norm clipping as PyTorch's {@code clip_grad_norm_} and a finiteness check that names the
 * offending parameter. All sums are accumulated in double whatever the buffer dtype.
 *
 * <p>Distributed use: each rank computes {@link #sumOfSquares} of the range it owns, the sums are AllReduced,
 * and {@code Math.sqrt(total)} is the global norm fed to {@link #clipFactor}; the factor is then passed to
 * {@link AdamW} as {@code gradScale} instead of rescaling the gradients.
 */
public final class GradClipper {
    /** The epsilon PyTorch adds to the norm in {@code clip_grad_norm_}. */
    public static final double NORM_EPS = 1e-6;

    private GradClipper() {
    }

    /** Sum of squares of elements {@code [from, to)} of a flat buffer, accumulated in double. */
    public static double sumOfSquares(INDArray flat, long from, long to) {
        NioViews.checkRange("grads", flat, from, to);
        double total = 0;
        for (long c = from; c < to; c += NioViews.MAX_CHUNK) {
            long ce = Math.min(to, c + NioViews.MAX_CHUNK);
            total += flat.dataType() == DataType.FLOAT
                    ? sumOfSquares(FloatLanes.bytes(flat, c, ce), (int) (ce - c)) : sumOfSquares(NioViews.doubles(flat, c, ce));
        }
        return total;
    }

    /**
     * float32: each square in double (so the sum is as good as a double sum, whatever the values), summed over
     * blocks of {@value #BLOCK} elements split over the compute threads; the blocks' sums are added in block order,
     * so the total does not depend on the split.
     */
    private static double sumOfSquares(java.nio.ByteBuffer b, int n) {
        int blocks = (n + BLOCK - 1) / BLOCK;
        double[] blockSums = new double[blocks];
        FloatLanes.forEachShare(blocks, (a, z) -> {
            for (int k = a; k < z; k++) {
                int from = k * BLOCK;
                int to = Math.min(n, from + BLOCK);
                // four accumulators: a shorter dependency chain, the same double precision
                double s0 = 0;
                double s1 = 0;
                double s2 = 0;
                double s3 = 0;
                int i = from;
                for (; i + 4 <= to; i += 4) {
                    double x0 = b.getFloat(i << 2);
                    double x1 = b.getFloat((i + 1) << 2);
                    double x2 = b.getFloat((i + 2) << 2);
                    double x3 = b.getFloat((i + 3) << 2);
                    s0 += x0 * x0;
                    s1 += x1 * x1;
                    s2 += x2 * x2;
                    s3 += x3 * x3;
                }
                for (; i < to; i++) {
                    double x = b.getFloat(i << 2);
                    s0 += x * x;
                }
                blockSums[k] = (s0 + s1) + (s2 + s3);
            }
        });
        double total = 0;
        for (double s : blockSums) {
            total += s;
        }
        return total;
    }

    private static final int BLOCK = 4096;

    private static double sumOfSquares(DoubleBuffer b) {
        double s0 = 0, s1 = 0;
        int n = b.limit();
        int i = 0;
        for (; i + 1 < n; i += 2) {
            double a = b.get(i);
            double c = b.get(i + 1);
            s0 += a * a;
            s1 += c * c;
        }
        if (i < n) {
            double a = b.get(i);
            s0 += a * a;
        }
        return s0 + s1;
    }

    /** L2 norm of the whole flat buffer. NaN or Infinity if any element is non-finite. */
    public static double globalNorm(INDArray flat) {
        return Math.sqrt(sumOfSquares(flat, 0, flat.length()));
    }

    /**
     * {@code min(1, maxNorm / (norm + 1e-6))}, as {@code clip_grad_norm_}; 1 when {@code maxNorm <= 0}
     * (clipping off). A non-finite norm gives NaN: check {@link #firstNonFinite} before stepping.
     */
    public static double clipFactor(double norm, double maxNorm) {
        if (maxNorm <= 0) {
            return 1.0;
        }
        if (!Double.isFinite(norm)) {
            return Double.NaN;
        }
        return Math.min(1.0, maxNorm / (norm + NORM_EPS));
    }

    /**
     * PyTorch-style in-place clipping of a whole flat buffer: scales it by {@link #clipFactor} when that is
     * below 1, returns the norm before clipping.
     */
    public static double clipInPlace(INDArray flat, double maxNorm) {
        double norm = globalNorm(flat);
        double factor = clipFactor(norm, maxNorm);
        if (factor < 1.0) {
            flat.muli(factor);
        }
        return norm;
    }

    /** Where a non-finite gradient was found. */
    public record NonFinite(String name, long[] shape, long indexInTensor, long flatIndex, double value) {
        /** e.g. {@code non-finite gradient in h.3.mlp.c_fc.weight (element 17 of [32, 128] is NaN)}. */
        public String message() {
            return "non-finite gradient in " + name + " (element " + indexInTensor + " of " + Arrays.toString(shape)
                    + " is " + value + ")";
        }
    }

    /** The first NaN/Inf in the whole flat buffer, named by parameter. */
    public static Optional<NonFinite> firstNonFinite(ParamLayout layout, INDArray flat) {
        return firstNonFinite(layout, flat, 0, layout.size());
    }

    /** The first NaN/Inf inside {@code [from, to)} of the flat buffer (e.g. one pipeline stage's range). */
    public static Optional<NonFinite> firstNonFinite(ParamLayout layout, INDArray flat, long from, long to) {
        if (flat.length() != layout.size()) {
            throw new IllegalArgumentException("grads has " + flat.length() + " elements, the layout has "
                    + layout.size());
        }
        NioViews.checkRange("grads", flat, from, to);
        for (ParamSpec s : layout.specs()) {
            long a = Math.max(from, s.offset());
            long b = Math.min(to, s.end());
            for (long c = a; c < b; c += NioViews.MAX_CHUNK) {
                long ce = Math.min(b, c + NioViews.MAX_CHUNK);
                int hit = firstNonFiniteIndex(flat, c, ce);
                if (hit >= 0) {
                    long flatIndex = c + hit;
                    return Optional.of(new NonFinite(s.name(), s.shape().clone(), flatIndex - s.offset(), flatIndex,
                            flat.getDouble(flatIndex)));
                }
            }
        }
        return Optional.empty();
    }

    private static int firstNonFiniteIndex(INDArray flat, long from, long to) {
        if (flat.dataType() == DataType.FLOAT) {
            FloatBuffer b = NioViews.floats(flat, from, to);
            for (int i = 0, n = b.limit(); i < n; i++) {
                if (!Float.isFinite(b.get(i))) {
                    return i;
                }
            }
        } else {
            DoubleBuffer b = NioViews.doubles(flat, from, to);
            for (int i = 0, n = b.limit(); i < n; i++) {
                if (!Double.isFinite(b.get(i))) {
                    return i;
                }
            }
        }
        return -1;
    }
}
