package io.dtrain.data.shards;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonProperty;
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
        @JsonProperty("sha256") String sha256) {

    /** Documents and tokens of one {@code pile_set_name}. */
    public record SetCount(@JsonProperty("documents") long documents, @JsonProperty("tokens") long tokens) {
        SetCount plus(SetCount o) {
            return new SetCount(documents + o.documents, tokens + o.tokens);
        }
    }

    public ShardInfo {
        pileSetNames = new TreeMap<>(pileSetNames == null ? Map.of() : pileSetNames);
    }

    ShardInfo withFile(long size, String sha) {
        return new ShardInfo(file, source, firstLine, lastLine, documents, tokens, recordBatches, inputComplete,
                badRecords, pileSetNames, size, sha);
    }

    ShardInfo withoutFile() {
        return new ShardInfo(file, source, firstLine, lastLine, documents, tokens, recordBatches, inputComplete,
                badRecords, pileSetNames, null, null);
    }

    static void addTo(Map<String, SetCount> total, Map<String, SetCount> part) {
        part.forEach((name, count) -> total.merge(name, count, SetCount::plus));
    }
}
