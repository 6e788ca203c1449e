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
                "Mean validation loss and perplexity of a checkpoint.",
                "",
                "Evaluates the same fixed set of validation sequences that training does (training.eval_sequences of",
                "data.val in the stored configuration, unless overridden).",
                "",
                "Example:",
                "  dtrain eval --checkpoint runs/gpt-tiny",
                "  dtrain eval --checkpoint runs/gpt-tiny --set data.val=data/pile-tiny/train --sequences 256"})
public final class EvalCommand implements Callable<Integer> {
    @Mixin
    CheckpointOptions checkpoint;

    @Option(names = "--sequences", paramLabel = "N", description = "Validation sequences (default: training.eval_sequences).")
    Integer sequences;

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
            Evaluator ev = new Evaluator(model, val, sequences != null ? sequences : cfg.training().evalSequences(),
                    cfg.microBatch(1));
            double loss = ev.meanLoss();
            System.out.printf(Locale.ROOT, "checkpoint %s (step %d): val loss %.4f | val ppl %.3f | %d sequences of %d tokens%n",
                    ck.directory(), ck.step(), loss, Math.exp(loss), ev.sequences(), cfg.model().seqLen());
        }
        return 0;
    }
}
