package io.dtrain.data.tokenizer;

/** Opens a tokenizer from a command-line or config value. */
public final class Tokenizers {
    private Tokenizers() {}

    /**
     * {@code byte} gives the {@link ByteTokenizer}; anything else is a directory with {@code vocab.json} +
     * {@code merges.txt} (or {@code tokenizer.json}), or a {@code tokenizer.json} path, for {@link Gpt2Tokenizer}.
     */
    public static Tokenizer open(String spec) {
        if (spec.equalsIgnoreCase("byte")) {
            return new ByteTokenizer();
        }
        return Gpt2Tokenizer.load(spec);
    }
}
