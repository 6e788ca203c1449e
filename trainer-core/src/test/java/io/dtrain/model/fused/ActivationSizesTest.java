package io.dtrain.model.fused;

import io.dtrain.config.ModelConfig;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * The sizes a memory estimate takes from the engine ({@link Activations#bytes}, {@link Scratch#bytes}) are what its
 * constructors allocate, for every kind of stage: first or last, pre- or post-norm, with or without dropout masks,
 * float32 or float64, with blocks of their own or a shared recompute workspace, with a vocabulary whose logits are computed in row chunks.
 */
class ActivationSizesTest {

    private static ModelConfig config(String norm, double dropout, String dtype, int vocab) {
        return new ModelConfig(vocab, 24, 48, 3, 4, 0, norm, "gelu", dropout, true, true, 0.02, 1e-5, dtype, "fused");
    }

    @Test
    void activationSetsAndScratchAllocateExactlyWhatTheEstimateSays() {
        for (String norm : new String[] {"pre", "post"}) {
            for (double dropout : new double[] {0.0, 0.1}) {
                for (String dtype : new String[] {"float32", "float64"}) {
                    ModelConfig cfg = config(norm, dropout, dtype, dropout > 0 ? 50257 : 257);
                    for (boolean first : new boolean[] {true, false}) {
                        for (boolean last : new boolean[] {true, false}) {
                            for (int batch : new int[] {1, 3}) {
                                String what = norm + " " + dropout + " " + dtype + " first=" + first + " last=" + last + " B=" + batch;
                                Activations a = new Activations(cfg, 2, first, last, batch, cfg.isDouble(), null);
                                assertEquals(Activations.bytes(cfg, 2, first, last, batch, false), a.allocatedBytes, what);
                                Activations.Block workspace = new Activations.Block(cfg, batch, cfg.isDouble());
                                assertEquals(Activations.Block.bytes(cfg, batch), workspace.allocatedBytes, what);
                                Activations r = new Activations(cfg, 2, first, last, batch, cfg.isDouble(), workspace);
                                assertEquals(Activations.bytes(cfg, 2, first, last, batch, true), r.allocatedBytes,
                                        "recompute " + what);
                            }
                        }
                    }
                    Scratch s = new Scratch(cfg, 3, 2, cfg.isDouble());
                    assertEquals(Scratch.bytes(cfg, 3, 2), s.allocatedBytes, norm + " " + dropout + " " + dtype);
                }
            }
        }
    }
}
