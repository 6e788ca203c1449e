package io.dtrain.bench;

import io.dtrain.config.ConfigLoader;
import io.dtrain.config.RunConfig;
import io.dtrain.model.GptModel;
import io.dtrain.model.fused.FusedStage;
import io.dtrain.model.fused.OpTimes;
import io.dtrain.model.samediff.SameDiffStage;
import io.dtrain.train.RunContext;
import io.dtrain.train.StepStats;
import io.dtrain.train.Trainer;
import org.nd4j.autodiff.listeners.At;
import org.nd4j.autodiff.listeners.BaseListener;
import org.nd4j.autodiff.listeners.Operation;
import org.nd4j.autodiff.samediff.SameDiff;
import org.nd4j.autodiff.samediff.internal.SameDiffOp;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.api.ops.OpContext;
import org.nd4j.linalg.dataset.api.MultiDataSet;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;

/**
 * Where one training step's time goes, by kind of op, for either engine: the fused engine's own op timer
 * ({@link OpTimes}), or for SameDiff a listener that times every op of the graphs and files it by op name. Plus
 * the step's optimizer phase (clip, AdamW) and the rest, from the step records. Runs a Trainer in-process on a
 * config (dropout 0, one micro-batch per step unless overridden), warms up, then profiles the timed steps.
 */
@Command(name = "step-breakdown", mixinStandardHelpOptions = true,
        description = "Per-op time breakdown of a training step (fused or SameDiff engine).")
public final class StepBreakdown implements Callable<Integer> {
    @Option(names = "--config", description = "dtrain YAML config (default: ${DEFAULT-VALUE})")
    Path config = Path.of("configs/gpt-cpu-small.yaml");

    @Option(names = "--set", description = "extra config override key=value (repeatable), applied last")
    List<String> overrides = new ArrayList<>();

    @Option(names = "--engine", description = "fused or samediff (default ${DEFAULT-VALUE})")
    String engine = "fused";

    @Option(names = "--warmup", description = "untimed steps first (default ${DEFAULT-VALUE})")
    int warmup = 20;

    @Option(names = "--steps", description = "profiled steps (default ${DEFAULT-VALUE})")
    int steps = 10;

    public static void main(String[] args) {
        System.exit(new CommandLine(new StepBreakdown()).execute(args));
    }

    /** Times SameDiff ops by kind (from the op's name), between the listener's pre- and post-execution calls. */
    static final class SameDiffOpTimer extends BaseListener {
        final Map<String, Long> nanosByKind = new LinkedHashMap<>();
        private long opStart;
        boolean on;

        @Override
        public boolean isActive(Operation operation) {
            return true;
        }

        @Override
        public void preOpExecution(SameDiff sd, At at, SameDiffOp op, OpContext opContext) {
            opStart = System.nanoTime();
        }

        @Override
        public void opExecution(SameDiff sd, At at, MultiDataSet batch, SameDiffOp op, OpContext opContext,
                                INDArray[] outputs) {
            if (on) {
                nanosByKind.merge(kind(op.getOp().opName()), System.nanoTime() - opStart, Long::sum);
            }
        }

        /** SameDiff's ops filed under the fused engine's kinds where the name says which (the rest: element-wise). */
        static String kind(String op) {
            String name = op.replace("_bp", "");
            if (name.equals("matmul") || name.equals("mmul") || name.equals("tensormmul")) {
                return "linear + attention products (matmul)";
            }
            if (name.equals("softmax")) {
                return "attention softmax";
            }
            if (name.contains("softmax_cross_entropy") || name.contains("sparse_softmax")) {
                return "cross-entropy";
            }
            if (name.equals("sigmoid")) {
                return "GELU's sigmoid";
            }
            if (name.equals("reduce_mean") || name.equals("mean") || name.equals("rsqrt") || name.equals("reduce_sum")
                    || name.equals("sum") || name.equals("standardize") || name.equals("layer_norm")) {
                return "reductions, rsqrt (layer norm, loss)";
            }
            if (name.equals("reshape") || name.equals("permute") || name.equals("split") || name.equals("transpose")
                    || name.equals("identity") || name.equals("concat")) {
                return "reshape, permute, split";
            }
            return "element-wise (add, sub, mul, ...)";
        }
    }

    @Override
    public Integer call() {
        List<String> o = new ArrayList<>(List.of("model.dropout=0", "output.dir=target/step-breakdown", "data.val=",
                "training.eval_interval=0", "training.checkpoint_interval=0", "model.engine=" + engine));
        int micro = ConfigLoader.load(config, overrides).microBatch(1);
        o.add("training.global_batch=" + micro);
        o.addAll(overrides);
        RunConfig cfg = ConfigLoader.load(config, o);
        PrintStream quiet = new PrintStream(OutputStream.nullOutputStream());
        try (Trainer trainer = new Trainer(cfg, RunContext.single(), quiet)) {
            GptModel model = trainer.model();
            SameDiffOpTimer sdTimer = new SameDiffOpTimer();
            List<OpTimes> fused = new ArrayList<>();
            for (int s = 0; s < model.numStages(); s++) {
                if (model.stage(s) instanceof FusedStage f) {
                    fused.add(f.opTimes());
                } else if (model.stage(s) instanceof SameDiffStage sd) {
                    sd.addListener(sdTimer);
                }
            }
            PrintStream console = System.out;
            System.setOut(quiet); // SameDiff prints a line per op when it first builds a gradient graph
            // Timing is on from the start: switching it on later would make the JIT recompile the passes mid-run.
            fused.forEach(t -> t.enable(true));
            for (int i = 0; i < warmup; i++) {
                trainer.trainStep();
            }
            fused.forEach(OpTimes::reset);
            sdTimer.on = true;
            List<StepStats> timed = new ArrayList<>();
            for (int i = 0; i < steps; i++) {
                timed.add(trainer.trainStep());
            }
            System.setOut(console);
            double stepMs = timed.stream().mapToDouble(StepStats::stepMs).sum() / steps;
            double computeMs = timed.stream().mapToDouble(StepStats::computeMs).sum() / steps;
            double optimizerMs = timed.stream().mapToDouble(StepStats::optimizerMs).sum() / steps;
            Map<String, Double> rows = new LinkedHashMap<>();
            for (OpTimes t : fused) {
                t.millis().forEach((k, v) -> rows.merge(k, v / steps, Double::sum));
            }
            sdTimer.nanosByKind.forEach((k, v) -> rows.merge(k, v / 1e6 / steps, Double::sum));
            double inOps = rows.values().stream().mapToDouble(Double::doubleValue).sum();
            rows.put("outside ops (graph execution, copies, embedding)", Math.max(0, computeMs - inOps));
            rows.put("optimizer (clip, AdamW, parameters to the model)", optimizerMs);
            rows.put("rest of the step (data, bookkeeping)", Math.max(0, stepMs - computeMs - optimizerMs));
            long tokens = (long) cfg.training().globalBatch() * cfg.model().seqLen();
            long activationBytes = 0;
            for (int s = 0; s < model.numStages(); s++) {
                if (model.stage(s) instanceof FusedStage f) {
                    activationBytes += f.activationBytes();
                }
            }
            if (activationBytes > 0) {
                System.out.printf(Locale.ROOT, "activations held (fused engine, training.recompute=%s): %.1f MiB%n",
                        cfg.training().recompute(), activationBytes / 1048576.0);
            }
            System.out.printf(Locale.ROOT, "%s engine, %s (d %d, %d layers, T %d, %d x %d tokens per step): %.1f ms per"
                            + " step, %.0f tok/s (mean of %d steps after %d warm-up)%n", engine, config,
                    cfg.model().dModel(), cfg.model().nLayer(), cfg.model().seqLen(), cfg.training().globalBatch(),
                    cfg.model().seqLen(), stepMs, tokens / (stepMs / 1000), steps, warmup);
            System.out.println("| op | ms per step | share |");
            System.out.println("|---|---:|---:|");
            rows.entrySet().stream().sorted((a, b) -> Double.compare(b.getValue(), a.getValue()))
                    .filter(e -> e.getValue() >= 0.05)
                    .forEach(e -> System.out.printf(Locale.ROOT, "| %s | %.1f | %.1f%% |%n", e.getKey(), e.getValue(),
                            100 * e.getValue() / stepMs));
        }
        return 0;
    }
}
