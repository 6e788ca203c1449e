package io.dtrain.data.loader;

import io.dtrain.data.reader.BadRecordPolicy;
import io.dtrain.data.reader.Document;
import io.dtrain.data.reader.PileReader;
import io.dtrain.data.tokenizer.Tokenizer;

/** Builds the in-memory packed dataset from Pile shards. */
public final class TokenDatasets {
    private TokenDatasets() {}

    /**
     * Reads every document of {@code pathOrGlob} (file, directory or glob of {@code .jsonl}/{@code .jsonl.zst}),
     * tokenizes it, appends the tokenizer's end-of-document id, and packs all of it in reader order.
     */
    public static PackedTokenDataset open(String pathOrGlob, Tokenizer tok, int seqLen, BadRecordPolicy policy) {
        PackedTokenDataset.Builder builder = new PackedTokenDataset.Builder(tok.vocabSize());
        try (PileReader reader = PileReader.open(pathOrGlob, policy)) {
            while (reader.hasNext()) {
                Document doc = reader.next();
                builder.addDocument(tok.encode(doc.text()), tok.eotId());
            }
            return builder.build(seqLen, reader.badRecords());
        }
    }
}
