package io.dtrain.bench;

import io.dtrain.config.ModelConfig;
import io.dtrain.model.GptModel;
import org.nd4j.linalg.api.ndarray.INDArray;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.util.Locale;
import java.util.SplittableRandom;
import java.util.concurrent.Callable;

/**
 * Tokens/s of {@link GptModel#forwardBackward} alone (no optimizer, no loader) on a small float32 GPT: d 128, 4 layers,
 * 4 heads, seq 128, vocabulary 257, batch 16, with the process's default threads (set OMP_NUM_THREADS to pin them).
 * The quick check of a model change's speed; the full training step against PyTorch is {@code compare-pytorch.sh}.
 * {@code --engine} picks fused (default) or samediff; {@code --all} also measures dropout 0.1. With the fused engine
 * it also prints the per-op breakdown of the timed calls. Run it through {@code benchmarks/model/run.sh}.
 */
@Command(name = "gpt-model-speed", mixinStandardHelpOptions = true,
        description = "Tokens/s of GptModel.forwardBackward on a small float32 GPT.")
public final class GptModelSpeed implements Callable<Integer> {
    static final int VOCAB = 257;
    static final int SEQ_LEN = 128;

    @Option(names = "--batch", description = "windows per forwardBackward (default ${DEFAULT-VALUE})")
    int batch = 16;

    @Option(names = "--warmup", description = "untimed calls first (default ${DEFAULT-VALUE})")
    int warmup = 1;

    @Option(names = "--steps", description = "timed calls (default ${DEFAULT-VALUE})")
    int steps = 2;

    @Option(names = "--all", description = "also dropout 0.1")
    boolean all;

    @Option(names = "--engine", description = "fused or samediff (default ${DEFAULT-VALUE})")
    String engine = "fused";

    public static void main(String[] args) {
        System.exit(new CommandLine(new GptModelSpeed()).execute(args));
    }

    @Override
    public Integer call() {
        measure(0.0);
        if (all) {
            measure(0.1);
        }
        return 0;
    }

    private void measure(double dropout) {
        ModelConfig cfg = new ModelConfig(VOCAB, SEQ_LEN, 128, 4, 4, 0, "pre", "gelu", dropout, true, true, 0.02,
                1e-5, "float32", engine);
        try (GptModel model = new GptModel(cfg)) {
            io.dtrain.model.fused.OpTimes ops = model.stage(0) instanceof io.dtrain.model.fused.FusedStage f
                    ? f.opTimes() : null;
            INDArray params = model.newFlatBuffer();
            model.initParams(params, 1);
            INDArray grads = model.newFlatBuffer();
            int[][] windows = randomWindows(3, batch);
            double loss = 0;
            long start = 0;
            for (int i = 0; i < warmup + steps; i++) {
                if (i == warmup) {
                    start = System.nanoTime();
                    if (ops != null) {
                        ops.enable(true);
                        ops.reset();
                    }
                }
                grads.assign(0.0);
                model.setParams(params);
                long[] samples = new long[batch];
                for (int b = 0; b < batch; b++) {
                    samples[b] = (long) i * batch + b;
                }
                loss = model.forwardBackward(windows, samples, i, 7, grads);
            }
            double seconds = (System.nanoTime() - start) / 1e9;
            System.out.printf(Locale.ROOT, "GptModel speed (%s engine, dropout %.1f): %.0f tokens/s, %.0f ms"
                            + " per forwardBackward of %d x %d tokens; loss %.4f; load %s%n", engine, dropout,
                    steps * batch * SEQ_LEN / seconds, 1000 * seconds / steps, batch, SEQ_LEN, loss, load());
            if (ops != null) {
                System.out.print(ops.table());
            }
        }
    }

    /** Random windows [batch][SEQ_LEN + 1] of token ids below VOCAB. */
    private static int[][] randomWindows(long seed, int batch) {
        SplittableRandom rng = new SplittableRandom(seed);
        int[][] w = new int[batch][SEQ_LEN + 1];
        for (int b = 0; b < batch; b++) {
            for (int t = 0; t <= SEQ_LEN; t++) {
                w[b][t] = rng.nextInt(VOCAB);
            }
        }
        return w;
    }

    private static String load() {
        try {
            return java.nio.file.Files.readString(java.nio.file.Path.of("/proc/loadavg")).split(" ")[0];
        } catch (java.io.IOException e) {
            return "unknown";
        }
    }
}
