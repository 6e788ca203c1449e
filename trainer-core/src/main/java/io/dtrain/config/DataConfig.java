package io.dtrain.config;

/**
 * Where training and validation text comes from. Keys under {@code data:}.
 *
 * @param train        training input: a file, a directory or a glob of *.jsonl / *.jsonl.zst (or preprocessed shards)
 * @param val          validation input, same forms ("" = none)
 * @param tokenizer    "byte" (256 byte values + end-of-document = 256) or "gpt2"
 * @param tokenizerDir directory with vocab.json + merges.txt when tokenizer is gpt2
 * @param onBadRecord  "skip" (count and report) or "fail" (stop naming file and line)
 * @param seed         seed of the sample order (shuffle of global sample indices per epoch)
 * @param workers      background threads preparing batches
 */
public record DataConfig(
        String train,
        String val,
        String tokenizer,
        String tokenizerDir,
        String onBadRecord,
        long seed,
        int workers) {

    public static DataConfig defaults() {
        return ConfigSchema.defaults().data();
    }
}
