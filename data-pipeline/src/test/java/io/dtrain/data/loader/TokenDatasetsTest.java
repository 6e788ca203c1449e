package io.dtrain.data.loader;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.dtrain.data.SharedData;
import io.dtrain.data.reader.BadRecordPolicy;
import io.dtrain.data.reader.Document;
import io.dtrain.data.reader.PileReader;
import io.dtrain.data.tokenizer.ByteTokenizer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

class TokenDatasetsTest {

    @Test
    void pileTinyPacksEveryByteAndOneEotPerDocument() {
        ByteTokenizer tok = new ByteTokenizer();
        String input = SharedData.path("pile-tiny").toString();
        PackedTokenDataset ds = TokenDatasets.open(input, tok, 64, BadRecordPolicy.FAIL);
        assertEquals(71, ds.numDocuments());
        assertEquals(323_900 + 71, ds.numTokens());
        assertEquals((ds.numTokens() - 1) / 64, ds.numSamples());

        List<Document> docs = new ArrayList<>();
        try (PileReader r = PileReader.open(input, BadRecordPolicy.FAIL)) {
            r.forEachRemaining(docs::add);
        }
        long pos = 0;
        for (Document d : docs) {
            for (byte b : d.text().getBytes(StandardCharsets.UTF_8)) {
                assertEquals(b & 0xFF, ds.token(pos++), "position " + pos);
            }
            assertEquals(ByteTokenizer.EOT, ds.token(pos++));
        }
        assertEquals(ds.numTokens(), pos);
        int[] w = new int[65];
        ds.window(ds.numSamples() - 1, w);
        assertEquals(ds.token((ds.numSamples() - 1) * 64 + 64), w[64]);
    }
}
