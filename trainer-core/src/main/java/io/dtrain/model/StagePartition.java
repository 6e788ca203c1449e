package io.dtrain.model;

import io.dtrain.config.ConfigException;
import io.dtrain.config.ModelConfig;

import java.util.Arrays;

/**
 * How many transformer blocks each pipeline stage holds: given explicitly ({@code parallel.pipeline.partition}) or
 * balanced by an estimate of each stage's forward FLOPs per token, so the stage with the LM head (2 d V, large for
 * a 50K vocabulary) gets fewer blocks. The backward costs about twice the forward everywhere, so balancing the
 * forward balances the step.
 */
public final class StagePartition {
    private StagePartition() {
    }

    /**
     * @param spec "" for the balanced split, else blocks per stage, comma-separated (e.g. "3,2,1")
     */
    public static int[] blocksPerStage(ModelConfig cfg, int stages, String spec) {
        if (stages < 1 || stages > cfg.nLayer()) {
            throw new ConfigException(null, -1, "parallel.pipeline.stages", "cannot split model.n_layer=" + cfg.nLayer()
                    + " blocks into " + stages + " pipeline stages: use 1.." + cfg.nLayer() + " stages");
        }
        if (spec == null || spec.isBlank()) {
            return balanced(cfg, stages);
        }
        String[] parts = spec.split(",");
        int[] out = new int[parts.length];
        try {
            for (int i = 0; i < parts.length; i++) {
                out[i] = Integer.parseInt(parts[i].strip());
            }
        } catch (NumberFormatException e) {
            throw new ConfigException(null, -1, "parallel.pipeline.partition", "parallel.pipeline.partition '" + spec
                    + "' must be blocks per stage separated by commas, e.g. 2,2");
        }
        if (out.length != stages || Arrays.stream(out).anyMatch(b -> b < 1) || Arrays.stream(out).sum() != cfg.nLayer()) {
            throw new ConfigException(null, -1, "parallel.pipeline.partition", "parallel.pipeline.partition '" + spec
                    + "' must list " + stages + " positive block counts (parallel.pipeline.stages) summing to model.n_layer="
                    + cfg.nLayer() + ", or be empty for a balanced split");
        }
        return out;
    }

    /** The contiguous split minimising the most expensive stage (exact, by dynamic programming over split points). */
    public static int[] balanced(ModelConfig cfg, int stages) {
        int layers = cfg.nLayer();
        double block = blockCost(cfg);
        double head = headCost(cfg);
        // best[s][i]: the smallest possible maximum stage cost when stages s.. hold blocks i..layers-1
        double[][] best = new double[stages + 1][layers + 1];
        int[][] take = new int[stages + 1][layers + 1];
        for (double[] row : best) {
            Arrays.fill(row, Double.POSITIVE_INFINITY);
        }
        best[stages][layers] = 0;
        for (int s = stages - 1; s >= 0; s--) {
            boolean last = s == stages - 1;
            for (int i = 0; i < layers; i++) {
                for (int n = 1; i + n <= layers; n++) {
                    double cost = n * block + (last ? head : 0);
                    double worst = Math.max(cost, best[s + 1][i + n]);
                    if (Double.isInfinite(worst)) {
                        continue; // the later stages cannot each get a block
                    }
                    // ties go to the earlier stage taking more blocks, as an even split would
                    if (worst < best[s][i] - 1e-9 * worst || (Math.abs(worst - best[s][i]) <= 1e-9 * worst && n > take[s][i])) {
                        best[s][i] = worst;
                        take[s][i] = n;
                    }
                }
            }
        }
        int[] out = new int[stages];
        for (int s = 0, i = 0; s < stages; s++) {
            out[s] = take[s][i];
            i += out[s];
        }
        return out;
    }

    /** Forward FLOPs per token of one block: 24 d^2 for the matmuls, 4 T d for attention scores and their use. */
    static double blockCost(ModelConfig cfg) {
        double d = cfg.dModel();
        return 2.0 * (4 * d * d + 2 * d * cfg.ffWidth()) + 4.0 * cfg.seqLen() * d;
    }

    /** Forward FLOPs per token of the LM head (the embedding lookup is free by comparison). */
    static double headCost(ModelConfig cfg) {
        return 2.0 * cfg.dModel() * cfg.vocabSize();
    }
}
