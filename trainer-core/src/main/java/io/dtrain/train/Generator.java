package io.dtrain.train;

import io.dtrain.model.GptModel;
import io.dtrain.model.fused.KvCacheDecoder;
import org.nd4j.linalg.api.ndarray.INDArray;

import java.util.Arrays;
import java.util.SplittableRandom;
import java.util.function.IntConsumer;

/**
 * Autoregressive sampling with temperature and top-k, the context cropped to the model's seq_len. With the fused
 * engine each new token runs through a {@link KvCacheDecoder} (only the new token is computed; the cache restarts
 * from the cropped context once the sequence outgrows seq_len, since positions are absolute); otherwise every
 * token recomputes the whole context. Both give the same tokens.
 */
public final class Generator {
    private final GptModel model;
    private final int seqLen;
    private final boolean useCache;

    public Generator(GptModel model) {
        this(model, true);
    }

    /** {@code useCache} false always recomputes the context (the reference the cache is tested against). */
    public Generator(GptModel model, boolean useCache) {
        this.model = model;
        this.seqLen = model.config().seqLen();
        this.useCache = useCache;
    }

    /**
     * @param prompt      token ids to continue (at least one)
     * @param maxTokens   tokens to generate
     * @param temperature 0 = greedy (argmax); otherwise logits / temperature
     * @param topK        keep the K most likely tokens (0 = all)
     * @param onToken     called with each new token as it is generated
     */
    public int[] generate(int[] prompt, int maxTokens, double temperature, int topK, long seed, IntConsumer onToken) {
        if (prompt.length == 0) {
            throw new IllegalArgumentException("the prompt must hold at least one token");
        }
        SplittableRandom rng = new SplittableRandom(seed);
        int[] seq = Arrays.copyOf(prompt, prompt.length + maxTokens);
        int len = prompt.length;
        KvCacheDecoder decoder = useCache ? model.newDecoder() : null;
        if (decoder != null) {
            for (int n = 0; n < maxTokens; n++) {
                double[] row;
                if (decoder.length() > 0 && len <= seqLen) {
                    row = decoder.append(new int[] {seq[len - 1]});
                } else {
                    decoder.reset();
                    row = decoder.append(Arrays.copyOfRange(seq, Math.max(0, len - seqLen), len));
                }
                int next = sample(row, temperature, topK, rng);
                seq[len++] = next;
                if (onToken != null) {
                    onToken.accept(next);
                }
            }
            return Arrays.copyOf(seq, len);
        }
        for (int n = 0; n < maxTokens; n++) {
            int from = Math.max(0, len - seqLen);
            int[] ctx = Arrays.copyOfRange(seq, from, len);
            INDArray logits = model.logits(new int[][] {ctx});
            long vocab = logits.size(2);
            double[] row = new double[(int) vocab];
            for (int v = 0; v < vocab; v++) {
                row[v] = logits.getDouble(0, ctx.length - 1, v);
            }
            int next = sample(row, temperature, topK, rng);
            seq[len++] = next;
            if (onToken != null) {
                onToken.accept(next);
            }
        }
        return Arrays.copyOf(seq, len);
    }

    static int sample(double[] logits, double temperature, int topK, SplittableRandom rng) {
        int vocab = logits.length;
        if (temperature <= 0) {
            int best = 0;
            for (int v = 1; v < vocab; v++) {
                if (logits[v] > logits[best]) {
                    best = v;
                }
            }
            return best;
        }
        double cutoff = Double.NEGATIVE_INFINITY;
        if (topK > 0 && topK < vocab) {
            double[] sorted = logits.clone();
            Arrays.sort(sorted);
            cutoff = sorted[vocab - topK];
        }
        double max = Double.NEGATIVE_INFINITY;
        for (double l : logits) {
            max = Math.max(max, l);
        }
        double[] p = new double[vocab];
        double sum = 0;
        for (int v = 0; v < vocab; v++) {
            p[v] = logits[v] < cutoff ? 0 : Math.exp((logits[v] - max) / temperature);
            sum += p[v];
        }
        double u = rng.nextDouble() * sum;
        for (int v = 0; v < vocab; v++) {
            u -= p[v];
            if (u <= 0 && p[v] > 0) {
                return v;
            }
        }
        for (int v = vocab - 1; v >= 0; v--) {
            if (p[v] > 0) {
                return v;
            }
        }
        return 0;
    }
}
