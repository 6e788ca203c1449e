package io.dtrain.data.shards;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonProperty;
import io.dtrain.data.reader.BadRecordReport;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * What one token shard holds. Stored twice: as JSON in the shard's Arrow footer (key {@link ShardFormat#FOOTER_KEY},
 * without {@code bytes}/{@code sha256}, so a re-run can resume from complete shards without a manifest) and as an
 * entry of the manifest (with them).
 *
 * @param file          the shard's file name inside the output directory
 * @param source        the input file its documents came from
 * @param firstLine     1-based line of its first document in the (decompressed) input; 0 when it has none
 * @param lastLine      line of its last document (a re-run resumes after it); 0 when it has none
 * @param documents     documents (each followed by the end-of-document id)
 * @param tokens        tokens, end-of-document ids included
 * @param recordBatches Arrow record batches
 * @param inputComplete true on the last shard of its input file
 * @param badRecords    records of the input skipped while this shard was filled
 * @param pileSetNames  documents and tokens per {@code meta.pile_set_name} ({@value ShardFormat#NO_SET_NAME} = none)
 * @param bytes         file size (manifest only)
 * @param sha256        SHA-256 of the file, hex (manifest only)
 * @param badRecordExamples the skipped records of this shard among the first {@value BadRecordReport#MAX_KEPT} of
 *                      its input, as {@code file:line: reason} (footer only, null when none): a re-run that keeps
 *                      the whole input, or a part, still lists them in the manifest
 */
@JsonInclude(JsonInclude.Include.NON_NULL)
public record ShardInfo(
        @JsonProperty("file") String file,
        @JsonProperty("source") String source,
        @JsonProperty("first_line") long firstLine,
        @JsonProperty("last_line") long lastLine,
        @JsonProperty("documents") long documents,
        @JsonProperty("tokens") long tokens,
        @JsonProperty("record_batches") int recordBatches,
        @JsonProperty("input_complete") boolean inputComplete,
        @JsonProperty("bad_records") long badRecords,
        @JsonProperty("pile_set_names") Map<String, SetCount> pileSetNames,
        @JsonProperty("bytes") Long bytes,
        @JsonProperty("sha256") String sha256,
        @JsonProperty("bad_record_examples") List<String> badRecordExamples) {

    /** Documents and tokens of one {@code pile_set_name}. */
    public record SetCount(@JsonProperty("documents") long documents, @JsonProperty("tokens") long tokens) {
        SetCount plus(SetCount o) {
            return new SetCount(documents + o.documents, tokens + o.tokens);
        }
    }

    public ShardInfo {
        pileSetNames = new TreeMap<>(pileSetNames == null ? Map.of() : pileSetNames);
        badRecordExamples = badRecordExamples == null || badRecordExamples.isEmpty() ? null
                : List.copyOf(badRecordExamples);
    }

    ShardInfo withFile(long size, String sha) {
        return new ShardInfo(file, source, firstLine, lastLine, documents, tokens, recordBatches, inputComplete,
                badRecords, pileSetNames, size, sha, badRecordExamples);
    }

    ShardInfo withoutFile() {
        return new ShardInfo(file, source, firstLine, lastLine, documents, tokens, recordBatches, inputComplete,
                badRecords, pileSetNames, null, null, badRecordExamples);
    }

    /** The manifest's entry: the examples are listed once, for the whole dataset. */
    ShardInfo withoutExamples() {
        return new ShardInfo(file, source, firstLine, lastLine, documents, tokens, recordBatches, inputComplete,
                badRecords, pileSetNames, bytes, sha256, null);
    }

    /** The examples, never null. */
    List<String> examples() {
        return badRecordExamples == null ? List.of() : badRecordExamples;
    }

    static void addTo(Map<String, SetCount> total, Map<String, SetCount> part) {
        part.forEach((name, count) -> total.merge(name, count, SetCount::plus));
    }
}
