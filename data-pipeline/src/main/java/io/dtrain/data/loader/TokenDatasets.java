package io.dtrain.data.loader;

import io.dtrain.data.DataException;
import io.dtrain.data.reader.BadRecordPolicy;
import io.dtrain.data.reader.BadRecordReport;
import io.dtrain.data.reader.Document;
import io.dtrain.data.reader.PileReader;
import io.dtrain.data.shards.Manifest;
import io.dtrain.data.tokenizer.Tokenizer;

/** Opens training data: a preprocessed directory (Arrow shards) or raw Pile-format input (packed in memory). */
public final class TokenDatasets {
    private TokenDatasets() {}

    /**
     * A directory with a {@code manifest.json} (made by {@code dtrain preprocess}) opens as an
     * {@link ArrowTokenDataset}; anything else is read as raw input by {@link #open}. Both give the same windows
     * for the same documents and tokenizer.
     */
    public static TokenDataset load(String pathOrGlob, Tokenizer tok, int seqLen, BadRecordPolicy policy) {
        if (!isPreprocessed(pathOrGlob)) {
            return open(pathOrGlob, tok, seqLen, policy);
        }
        ArrowTokenDataset ds = ArrowTokenDataset.open(pathOrGlob, tok, seqLen);
        BadRecordReport bad = ds.badRecords();
        if (policy == BadRecordPolicy.FAIL && bad.count() > 0) {
            ds.close();
            // The records were skipped when the shards were made; `fail` must refuse them here as it would the raw input.
            throw new DataException(pathOrGlob + ": " + bad.count() + " bad record(s) were skipped when it was"
                    + " preprocessed" + (bad.records().isEmpty() ? "" : " (first: " + bad.records().get(0) + ")")
                    + " and the bad-record policy is fail (data.on_bad_record); fix the input and run dtrain"
                    + " preprocess again, or set data.on_bad_record: skip to train on the records that were kept");
        }
        return ds;
    }

    /** True when {@code path} is a directory holding a token-shard manifest. */
    public static boolean isPreprocessed(String path) {
        return path != null && !path.isBlank() && !hasGlob(path) && Manifest.existsIn(path);
    }

    /**
     * Reads every document of {@code pathOrGlob} (file, directory or glob of {@code .jsonl}/{@code .jsonl.zst}),
     * tokenizes it, appends the tokenizer's end-of-document id, and packs all of it in reader order.
     * A preprocessed directory is refused here (it has no jsonl files); {@link #load} opens both.
     */
    public static PackedTokenDataset open(String pathOrGlob, Tokenizer tok, int seqLen, BadRecordPolicy policy) {
        if (isPreprocessed(pathOrGlob)) {
            throw new DataException(pathOrGlob + " is a preprocessed (Arrow token shard) directory; open it with"
                    + " TokenDatasets.load, which memory-maps the shards");
        }
        PackedTokenDataset.Builder builder = new PackedTokenDataset.Builder(tok.vocabSize());
        try (PileReader reader = PileReader.open(pathOrGlob, policy)) {
            while (reader.hasNext()) {
                Document doc = reader.next();
                builder.addDocument(tok.encode(doc.text()), tok.eotId());
            }
            return builder.build(seqLen, reader.badRecords());
        }
    }

    private static boolean hasGlob(String s) {
        return s.indexOf('*') >= 0 || s.indexOf('?') >= 0 || s.indexOf('[') >= 0 || s.indexOf('{') >= 0;
    }
}
