package io.dtrain.launcher;

import io.dtrain.checkpoint.Checkpoint;
import io.dtrain.config.RunConfig;
import io.dtrain.data.loader.TokenDataset;
import io.dtrain.data.loader.TokenDatasets;
import io.dtrain.data.reader.BadRecordPolicy;
import io.dtrain.data.tokenizer.Tokenizer;
import io.dtrain.model.GptModel;
import io.dtrain.train.Evaluator;
import io.dtrain.train.TrainTokenizer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.util.Locale;
import java.util.concurrent.Callable;

@Command(name = "eval",
        mixinStandardHelpOptions = true,
        description = {
                "Mean validation loss and perplexity of a checkpoint, over the same fixed validation batches that",
                "training evaluates (data.val of the stored configuration unless overridden).",
                "",
                "Example:",
                "  dtrain eval --checkpoint runs/gpt-tiny",
                "  dtrain eval --checkpoint runs/gpt-tiny --set data.val=data/pile-tiny/train --batches 32"})
public final class EvalCommand implements Callable<Integer> {
    @Mixin
    CheckpointOptions checkpoint;

    @Option(names = "--batches", paramLabel = "N", description = "Validation micro-batches (default: training.eval_batches).")
    Integer batches;

    @Override
    public Integer call() {
        Checkpoint ck = checkpoint.load();
        RunConfig cfg = checkpoint.config(ck);
        if (cfg.data().val() == null || cfg.data().val().isBlank()) {
            throw new UserError("no validation data: the checkpoint's configuration has no data.val; pass --set data.val=PATH");
        }
        Tokenizer tok = TrainTokenizer.forConfig(cfg);
        TokenDataset val = TokenDatasets.load(cfg.data().val(), tok, cfg.model().seqLen(),
                BadRecordPolicy.parse(cfg.data().onBadRecord()));
        try (GptModel model = new GptModel(cfg.model())) {
            var params = model.newFlatBuffer();
            ck.readParams(model.layout(), params);
            model.setParams(params);
            Evaluator ev = new Evaluator(model, val, cfg.training().microBatch(),
                    batches != null ? batches : cfg.training().evalBatches());
            double loss = ev.meanLoss();
            System.out.printf(Locale.ROOT, "checkpoint %s (step %d): val loss %.4f | val ppl %.3f | %d batches of %d x %d tokens%n",
                    ck.directory(), ck.step(), loss, Math.exp(loss), ev.batches(), cfg.training().microBatch(),
                    cfg.model().seqLen());
        }
        return 0;
    }
}
