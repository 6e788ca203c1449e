package io.dtrain.data.shards;

import com.fasterxml.jackson.annotation.JsonProperty;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import io.dtrain.data.DataException;
import io.dtrain.data.fs.DataFiles;
import java.io.IOException;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.apache.hadoop.fs.Path;

/**
 * {@code manifest.json} of a preprocessed dataset: written last, so its presence means every listed shard is
 * complete. The token stream of the dataset is the shards in this order, each shard's documents in order.
 */
public record Manifest(
        @JsonProperty("format") String format,
        @JsonProperty("version") int version,
        @JsonProperty("tokenizer") TokenizerInfo tokenizer,
        @JsonProperty("token_type") String tokenType,
        @JsonProperty("documents") long documents,
        @JsonProperty("tokens") long tokens,
        @JsonProperty("bad_records") long badRecords,
        @JsonProperty("bad_record_examples") List<String> badRecordExamples,
        @JsonProperty("shard_size_target") long shardSizeTarget,
        @JsonProperty("pile_set_names") Map<String, ShardInfo.SetCount> pileSetNames,
        @JsonProperty("inputs") List<InputInfo> inputs,
        @JsonProperty("shards") List<ShardInfo> shards) {

    public static final String FILE_NAME = "manifest.json";
    public static final String FORMAT = "dtrain-token-shards";
    public static final int VERSION = 1;

    static final ObjectMapper JSON = new ObjectMapper()
            .enable(SerializationFeature.INDENT_OUTPUT)
            .disable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES);

    /** The tokenizer the ids came from; {@code identity} must match the one training uses. */
    public record TokenizerInfo(@JsonProperty("identity") String identity,
                                @JsonProperty("vocab_size") int vocabSize,
                                @JsonProperty("eot_id") int eotId) {}

    /** One input file and what it became. */
    public record InputInfo(@JsonProperty("file") String file,
                            @JsonProperty("bytes") long bytes,
                            @JsonProperty("documents") long documents,
                            @JsonProperty("tokens") long tokens,
                            @JsonProperty("bad_records") long badRecords,
                            @JsonProperty("shards") int shards) {}

    public Manifest {
        pileSetNames = new TreeMap<>(pileSetNames);
        inputs = List.copyOf(inputs);
        shards = List.copyOf(shards);
        badRecordExamples = badRecordExamples == null ? List.of() : List.copyOf(badRecordExamples);
    }

    /** True when {@code dir} holds a manifest (i.e. is a complete preprocessed dataset). */
    public static boolean existsIn(String dir) {
        return DataFiles.isFile(new Path(dir, FILE_NAME));
    }

    /** Reads {@code dir/manifest.json}; a clear error when it is missing or not a dtrain manifest. */
    public static Manifest read(String dir) {
        Path path = new Path(dir, FILE_NAME);
        if (!DataFiles.isFile(path)) {
            throw new DataException(DataFiles.display(path) + ": no manifest; run `dtrain preprocess --output " + dir
                    + "` (a directory without manifest.json is an unfinished preprocess)");
        }
        Manifest m;
        try {
            m = JSON.readValue(DataFiles.readAllBytes(path), Manifest.class);
        } catch (IOException e) {
            throw new DataException(DataFiles.display(path) + ": not a valid manifest: " + e.getMessage()
                    + "; re-run dtrain preprocess", e);
        }
        if (!FORMAT.equals(m.format) || m.version != VERSION) {
            throw new DataException(DataFiles.display(path) + ": format " + m.format + " version " + m.version
                    + ", expected " + FORMAT + " version " + VERSION + "; re-run dtrain preprocess with this dtrain");
        }
        return m;
    }

    void write(String dir) {
        DataFiles.writeAtomically(new Path(dir, FILE_NAME), out -> out.write(JSON.writeValueAsBytes(this)));
    }
}
