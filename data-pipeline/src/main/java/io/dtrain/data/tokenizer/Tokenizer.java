package io.dtrain.data.tokenizer;

/** Text to token ids and back. Implementations are immutable and safe to share between threads. */
public interface Tokenizer {
    /** The ids of {@code text}, treating any special-token spelling in it as ordinary text. */
    int[] encode(String text);

    /** The text of {@code ids}; byte sequences that are not valid UTF-8 become U+FFFD. */
    String decode(int[] ids);

    /** Number of ids: every id is in {@code [0, vocabSize())}. */
    int vocabSize();

    /** The end-of-document id appended after each document when packing. */
    int eotId();

    /** A short stable string that changes whenever the id mapping changes (stored next to tokenized data). */
    String identity();
}
