package io.dtrain.train;

import io.dtrain.config.RunConfig;
import io.dtrain.data.tokenizer.Tokenizer;
import io.dtrain.data.tokenizer.Tokenizers;

/** The tokenizer a run configuration names (data.tokenizer, data.tokenizer_dir). */
public final class TrainTokenizer {
    private TrainTokenizer() {
    }

    public static Tokenizer forConfig(RunConfig cfg) {
        String kind = cfg.data().tokenizer();
        Tokenizer t = "byte".equals(kind) ? Tokenizers.open("byte") : Tokenizers.open(cfg.data().tokenizerDir());
        if (t.vocabSize() > cfg.model().vocabSize()) {
            throw new io.dtrain.config.ConfigException(null, -1, "model.vocab_size",
                    "model.vocab_size (" + cfg.model().vocabSize() + ") is smaller than the tokenizer's vocabulary ("
                            + t.vocabSize() + ", " + t.identity() + "); set model.vocab_size >= " + t.vocabSize());
        }
        return t;
    }
}
