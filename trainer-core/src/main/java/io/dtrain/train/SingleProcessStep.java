package io.dtrain.train;

import io.dtrain.config.RunConfig;
import io.dtrain.data.loader.BatchLoader;
import io.dtrain.optim.GradClipper;

import java.io.PrintStream;

/** The step of one process holding the whole model: nothing to synchronise, the micro-batches' mean is the step's. */
public final class SingleProcessStep extends TrainStepBase {

    public SingleProcessStep(RunConfig cfg, RunContext context, BatchLoader loader, PrintStream out) {
        super(cfg, context, loader, out, wholeModel(cfg));
        model.setParams(params);
    }

    @Override
    public StepStats run() {
        long t0 = beginStep();
        double lr = schedule.lr(step());
        Pass pass = forwardBackward(graph -> { });
        long o0 = System.nanoTime();
        if (accumulation > 1) {
            grads.divi(accumulation);
        }
        double norm = GradClipper.globalNorm(grads);
        boolean skipped = !updateOrSkip(pass.meanLoss(), norm, lr, () -> GradClipper.firstNonFinite(model.layout(), grads),
                "although every gradient is finite (their squares overflow)");
        long o1 = System.nanoTime();
        tracer.span("optimizer", "optimizer", o0, o1);
        // No communication: the division by the micro-batch count is optimizer work.
        return finish(t0, pass.meanLoss(), lr, norm, skipped, pass.computeNanos(), o1 - o0, 0, Double.NaN);
    }

    @Override
    public double evaluate(Evaluator evaluator) {
        return evaluator.meanLoss();
    }
}
