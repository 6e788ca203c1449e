package io.dtrain.model.fused;

import io.dtrain.compute.Workers;
import org.bytedeco.javacpp.DoublePointer;
import org.bytedeco.javacpp.FloatPointer;
import org.bytedeco.openblas.global.openblas_nolapack;

/**
 * Row-major GEMM on {@link Tensor}s through the CBLAS that ND4J already loads (OpenBLAS), single-threaded per
 * call: the {@link Workers} team splits the product (by rows or columns of the output) and each member calls BLAS
 * on its share, so the process runs one set of compute threads, not BLAS's next to ours.
 *
 * <p>{@code C[m, n] = alpha * op(A)[m, k] . op(B)[k, n] + beta * C}, with element offsets and leading dimensions,
 * so a head's columns inside the packed qkv activations or a parameter inside the flat buffer are used in place.
 * Each member owns three reusable pointer objects whose address is set per call: no allocation per product.
 */
final class Blas {
    private static final int ROW_MAJOR = openblas_nolapack.CblasRowMajor;
    private static final int NO_TRANS = openblas_nolapack.CblasNoTrans;
    private static final int TRANS = openblas_nolapack.CblasTrans;

    /** A float pointer whose address is set per call (JavaCPP reads address + position at the native call). */
    private static final class FloatAt extends FloatPointer {
        FloatAt at(long address) {
            this.address = address;
            this.position = 0;
            this.limit = 0;
            this.capacity = 0;
            return this;
        }
    }

    private static final class DoubleAt extends DoublePointer {
        DoubleAt at(long address) {
            this.address = address;
            this.position = 0;
            this.limit = 0;
            this.capacity = 0;
            return this;
        }
    }

    private final FloatAt[] fa;
    private final FloatAt[] fb;
    private final FloatAt[] fc;
    private final DoubleAt[] da;
    private final DoubleAt[] db;
    private final DoubleAt[] dc;

    Blas(int members) {
        fa = new FloatAt[members];
        fb = new FloatAt[members];
        fc = new FloatAt[members];
        da = new DoubleAt[members];
        db = new DoubleAt[members];
        dc = new DoubleAt[members];
        for (int i = 0; i < members; i++) {
            fa[i] = new FloatAt();
            fb[i] = new FloatAt();
            fc[i] = new FloatAt();
            da[i] = new DoubleAt();
            db[i] = new DoubleAt();
            dc[i] = new DoubleAt();
        }
        singleThreaded();
    }

    /**
     * The team parallelises; BLAS must not start threads of its own inside each member's call (two members each
     * running a two-thread GEMM on two cores halve the speed). Checked before every pass: ND4J's native
     * initialisation sets BLAS back to its own thread count, and it may run after this engine was built.
     */
    static void singleThreaded() {
        if (openblas_nolapack.blas_get_num_threads() != 1) {
            openblas_nolapack.blas_set_num_threads(1);
        }
    }

    /**
     * @param member the calling team member (each has its own pointer objects)
     */
    void gemm(int member, boolean transA, boolean transB, int m, int n, int k, double alpha,
              Tensor a, int offA, int lda, Tensor b, int offB, int ldb, double beta, Tensor c, int offC, int ldc) {
        if (m <= 0 || n <= 0) {
            return;
        }
        if (k <= 0) {
            throw new IllegalArgumentException("gemm with k = " + k);
        }
        int ta = transA ? TRANS : NO_TRANS;
        int tb = transB ? TRANS : NO_TRANS;
        if (c.isDouble) {
            openblas_nolapack.cblas_dgemm(ROW_MAJOR, ta, tb, m, n, k, alpha,
                    da[member].at(a.address + 8L * offA), lda, db[member].at(b.address + 8L * offB), ldb, beta,
                    dc[member].at(c.address + 8L * offC), ldc);
        } else {
            openblas_nolapack.cblas_sgemm(ROW_MAJOR, ta, tb, m, n, k, (float) alpha,
                    fa[member].at(a.address + 4L * offA), lda, fb[member].at(b.address + 4L * offB), ldb, (float) beta,
                    fc[member].at(c.address + 4L * offC), ldc);
        }
    }
}
