package io.dtrain.data.tokenizer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.Test;

class ByteTokenizerTest {
    private final ByteTokenizer tok = new ByteTokenizer();

    @Test
    void utf8BytesRoundTrip() {
        assertArrayEquals(new int[] {104, 105, 0xC3, 0xA9, 0xF0, 0x9F, 0x98, 0x80}, tok.encode("hi\u00e9\uD83D\uDE00"));
        String text = "mixed: caf\u00e9 \u4e2d\u6587 \uD83D\uDE00 \t\n end";
        assertEquals(text, tok.decode(tok.encode(text)));
        assertEquals(257, tok.vocabSize());
        assertEquals(256, tok.eotId());
    }

    @Test
    void decodeReplacesInvalidUtf8AndSpellsOutTheEndOfTextId() {
        assertEquals("a\uFFFDb", tok.decode(new int[] {'a', 0xFF, 'b'}));
        assertEquals("a<|endoftext|>b", tok.decode(new int[] {'a', 256, 'b'}));
    }
}
