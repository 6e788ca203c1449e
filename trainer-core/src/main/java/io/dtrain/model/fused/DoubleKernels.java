package io.dtrain.model.fused;

import java.nio.ByteBuffer;

/** The kernels in float64 as plain loops: the readable reference the vectorised {@link FloatKernels} must match. */
final class DoubleKernels implements Kernels {
    private static final double GELU_A = 2.0 * Math.sqrt(2.0 / Math.PI);
    private static final double GELU_B = GELU_A * 0.044715;

    @Override
    public void embed(int[] tokens, Tensor wte, Tensor wpe, Tensor out, int seqLen, int d, int from, int to) {
        for (int n = from; n < to; n++) {
            int tok = tokens[n] * d;
            int pos = (n % seqLen) * d;
            int o = n * d;
            for (int j = 0; j < d; j++) {
                out.set(o + j, wte.get(tok + j) + wpe.get(pos + j));
            }
        }
    }

    @Override
    public void scatterAddRows(int[] tokens, int rows, Tensor dx, Tensor dWte, int d, int vocabFrom, int vocabTo) {
        for (int n = 0; n < rows; n++) {
            int v = tokens[n];
            if (v >= vocabFrom && v < vocabTo) {
                for (int j = 0; j < d; j++) {
                    dWte.set(v * d + j, dWte.get(v * d + j) + dx.get(n * d + j));
                }
            }
        }
    }

    @Override
    public void sumOverBatch(Tensor dx, Tensor dWpe, int batch, int seqLen, int d, int from, int to) {
        for (int t = from; t < to; t++) {
            for (int b = 0; b < batch; b++) {
                int row = (b * seqLen + t) * d;
                for (int j = 0; j < d; j++) {
                    dWpe.set(t * d + j, dWpe.get(t * d + j) + dx.get(row + j));
                }
            }
        }
    }

    @Override
    public void layerNorm(Tensor x, Tensor w, Tensor b, Tensor out, Tensor mean, Tensor rstd, int d, double eps, int from, int to) {
        for (int n = from; n < to; n++) {
            int o = n * d;
            double sum = 0;
            for (int j = 0; j < d; j++) {
                sum += x.get(o + j);
            }
            double mu = sum / d;
            double sq = 0;
            for (int j = 0; j < d; j++) {
                double c = x.get(o + j) - mu;
                sq += c * c;
            }
            double rs = 1.0 / Math.sqrt(sq / d + eps);
            for (int j = 0; j < d; j++) {
                double y = (x.get(o + j) - mu) * rs * w.get(j);
                out.set(o + j, b == null ? y : y + b.get(j));
            }
            mean.set(n, mu);
            rstd.set(n, rs);
        }
    }

    @Override
    public void layerNormBackwardInput(Tensor dOut, Tensor x, Tensor w, Tensor mean, Tensor rstd, Tensor dx, int d, int from, int to) {
        for (int n = from; n < to; n++) {
            int o = n * d;
            double mu = mean.get(n);
            double rs = rstd.get(n);
            // dxhat = dOut * w; dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
            double meanG = 0;
            double meanGx = 0;
            for (int j = 0; j < d; j++) {
                double g = dOut.get(o + j) * w.get(j);
                double xh = (x.get(o + j) - mu) * rs;
                meanG += g;
                meanGx += g * xh;
            }
            meanG /= d;
            meanGx /= d;
            for (int j = 0; j < d; j++) {
                double g = dOut.get(o + j) * w.get(j);
                double xh = (x.get(o + j) - mu) * rs;
                dx.set(o + j, dx.get(o + j) + rs * (g - meanG - xh * meanGx));
            }
        }
    }

    @Override
    public void layerNormBackwardParams(Tensor dOut, Tensor x, Tensor mean, Tensor rstd, Tensor dw, Tensor db, int rows, int d,
                                        int from, int to) {
        for (int j = from; j < to; j++) {
            double sw = 0;
            double sb = 0;
            for (int n = 0; n < rows; n++) {
                double g = dOut.get(n * d + j);
                sw += g * (x.get(n * d + j) - mean.get(n)) * rstd.get(n);
                sb += g;
            }
            dw.set(j, dw.get(j) + sw);
            if (db != null) {
                db.set(j, db.get(j) + sb);
            }
        }
    }

    @Override
    public void fillRows(Tensor bias, Tensor out, int offOut, int cols, int from, int to) {
        for (int n = from; n < to; n++) {
            for (int j = 0; j < cols; j++) {
                out.set(offOut + n * cols + j, bias.get(j));
            }
        }
    }

    @Override
    public void columnSums(Tensor dy, Tensor db, int rows, int cols, int from, int to) {
        for (int j = from; j < to; j++) {
            double s = 0;
            for (int n = 0; n < rows; n++) {
                s += dy.get(n * cols + j);
            }
            db.set(j, db.get(j) + s);
        }
    }

    private static double sigmoid(double z) {
        return 1.0 / (1.0 + Math.exp(-z));
    }

    @Override
    public void gelu(Tensor x, Tensor out, int from, int to) {
        for (int e = from; e < to; e++) {
            double v = x.get(e);
            out.set(e, v * sigmoid(v * (GELU_A + GELU_B * v * v)));
        }
    }

    @Override
    public void geluBackward(Tensor x, Tensor dOut, Tensor dx, int from, int to) {
        for (int e = from; e < to; e++) {
            double v = x.get(e);
            double s = sigmoid(v * (GELU_A + GELU_B * v * v));
            double grad = s + v * s * (1.0 - s) * (GELU_A + 3.0 * GELU_B * v * v);
            dx.set(e, dOut.get(e) * grad);
        }
    }

    @Override
    public void relu(Tensor x, Tensor out, int from, int to) {
        for (int e = from; e < to; e++) {
            out.set(e, Math.max(0.0, x.get(e)));
        }
    }

    @Override
    public void reluBackward(Tensor x, Tensor dOut, Tensor dx, int from, int to) {
        for (int e = from; e < to; e++) {
            dx.set(e, x.get(e) > 0 ? dOut.get(e) : 0.0);
        }
    }

    @Override
    public void residual(Tensor x, Tensor y, ByteBuffer mask, int maskOff, double keep, Tensor out, int from, int to) {
        for (int e = from; e < to; e++) {
            double m = mask == null ? 1.0 : mask.get(maskOff + e) != 0 ? keep : 0.0;
            out.set(e, x.get(e) + y.get(e) * m);
        }
    }

    @Override
    public void applyMask(Tensor y, int offY, ByteBuffer mask, int maskOff, double keep, int from, int to) {
        for (int e = from; e < to; e++) {
            y.set(offY + e, mask.get(maskOff + e) != 0 ? y.get(offY + e) * keep : 0.0);
        }
    }

    @Override
    public void zero(Tensor x, int from, int to) {
        for (int e = from; e < to; e++) {
            x.set(e, 0.0);
        }
    }

    @Override
    public void add(Tensor src, Tensor dst, int from, int to) {
        for (int e = from; e < to; e++) {
            dst.set(e, dst.get(e) + src.get(e));
        }
    }

    @Override
    public void causalSoftmax(Tensor s, int off, int ld, int shift, int from, int to) {
        for (int i = from; i < to; i++) {
            int row = off + i * ld;
            int n = i + shift + 1;
            double max = Double.NEGATIVE_INFINITY;
            for (int j = 0; j < n; j++) {
                max = Math.max(max, s.get(row + j));
            }
            double sum = 0;
            for (int j = 0; j < n; j++) {
                double e = Math.exp(s.get(row + j) - max);
                s.set(row + j, e);
                sum += e;
            }
            for (int j = 0; j < n; j++) {
                s.set(row + j, s.get(row + j) / sum);
            }
            for (int j = n; j < ld; j++) {
                s.set(row + j, 0.0);
            }
        }
    }

    @Override
    public void causalSoftmaxBackward(Tensor p, int offP, Tensor dp, int offDp, int seqLen, int from, int to) {
        for (int i = from; i < to; i++) {
            int rp = offP + i * seqLen;
            int rd = offDp + i * seqLen;
            double dot = 0;
            for (int j = 0; j <= i; j++) {
                dot += p.get(rp + j) * dp.get(rd + j);
            }
            for (int j = 0; j <= i; j++) {
                dp.set(rd + j, p.get(rp + j) * (dp.get(rd + j) - dot));
            }
            for (int j = i + 1; j < seqLen; j++) {
                dp.set(rd + j, 0.0);
            }
        }
    }

    @Override
    public void maskedCopy(Tensor src, int offSrc, ByteBuffer mask, int maskOff, double keep, Tensor dst, int offDst, int n) {
        for (int e = 0; e < n; e++) {
            dst.set(offDst + e, mask.get(maskOff + e) != 0 ? src.get(offSrc + e) * keep : 0.0);
        }
    }

    @Override
    public void crossEntropy(Tensor logits, int[] targets, int firstRow, int vocab, Tensor losses, double gradScale, int from, int to) {
        for (int r = from; r < to; r++) {
            int o = r * vocab;
            double max = Double.NEGATIVE_INFINITY;
            for (int v = 0; v < vocab; v++) {
                max = Math.max(max, logits.get(o + v));
            }
            double sum = 0;
            for (int v = 0; v < vocab; v++) {
                sum += Math.exp(logits.get(o + v) - max);
            }
            int target = targets[firstRow + r];
            losses.set(firstRow + r, Math.log(sum) + max - logits.get(o + target));
            if (Double.isFinite(gradScale)) {
                for (int v = 0; v < vocab; v++) {
                    double p = Math.exp(logits.get(o + v) - max) / sum;
                    logits.set(o + v, (p - (v == target ? 1.0 : 0.0)) * gradScale);
                }
            }
        }
    }
}
