package io.dtrain.data.reader;

/**
 * One document of a Pile-format shard.
 *
 * @param text        the document text (decoded JSON string)
 * @param pileSetName {@code meta.pile_set_name}, or null when the record has none
 * @param file        the shard it came from, as given to the reader
 * @param line        1-based line number inside the (decompressed) shard
 */
public record Document(String text, String pileSetName, String file, long line) {}
