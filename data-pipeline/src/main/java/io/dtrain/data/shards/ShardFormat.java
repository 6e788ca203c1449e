package io.dtrain.data.shards;

import com.fasterxml.jackson.core.JsonProcessingException;
import io.dtrain.data.DataException;
import io.dtrain.data.fs.DataFiles;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.apache.arrow.flatbuf.Message;
import org.apache.arrow.flatbuf.MessageHeader;
import org.apache.arrow.flatbuf.RecordBatch;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.ipc.ArrowFileReader;
import org.apache.arrow.vector.ipc.message.ArrowBlock;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.arrow.vector.types.pojo.FieldType;
import org.apache.arrow.vector.types.pojo.Schema;
import org.apache.hadoop.fs.FSDataInputStream;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.Path;

/**
 * The token shard format: an Arrow IPC file (uncompressed, little-endian) with the schema
 * <pre>
 *   tokens:        list&lt;uint16&gt; not null   (int32 when the vocabulary has more than 65,536 ids)
 *                  one document's ids followed by the end-of-document id
 *   pile_set_name: utf8, nullable             (meta.pile_set_name of the document)
 *   source_line:   int64 not null             (1-based line of the document in its input file)
 * </pre>
 * one row per document, record batches of about {@link Preprocessor.Options#batchTokens} tokens, schema metadata
 * {@code dtrain.format}/{@code dtrain.tokenizer} and footer metadata {@code dtrain.shard} (a {@link ShardInfo} as
 * JSON). A shard's token stream is the {@code tokens} child values of its batches in order, which the loader reads in
 * place (see {@link #readLayout}).
 */
public final class ShardFormat {
    public static final String FORMAT = "dtrain-token-shard-v1";
    public static final String FORMAT_KEY = "dtrain.format";
    public static final String TOKENIZER_KEY = "dtrain.tokenizer";
    public static final String FOOTER_KEY = "dtrain.shard";
    public static final String NO_SET_NAME = "(none)";
    public static final String SUFFIX = ".arrow";

    /** Buffer order of a record batch: tokens validity, offsets, child validity, child data, then the other columns. */
    private static final int TOKEN_DATA_BUFFER = 3;

    private ShardFormat() {}

    /** Ids fit unsigned 16 bit when every id is below 65,536. */
    public static boolean uint16(int vocabSize) {
        return vocabSize <= 65536;
    }

    public static Schema schema(boolean uint16, String tokenizerIdentity) {
        ArrowType idType = uint16 ? new ArrowType.Int(16, false) : new ArrowType.Int(32, true);
        Field item = new Field("item", FieldType.notNullable(idType), null);
        Field tokens = new Field("tokens", FieldType.notNullable(ArrowType.List.INSTANCE), List.of(item));
        Field set = new Field("pile_set_name", FieldType.nullable(ArrowType.Utf8.INSTANCE), null);
        Field line = new Field("source_line", FieldType.notNullable(new ArrowType.Int(64, true)), null);
        return new Schema(List.of(tokens, set, line), Map.of(FORMAT_KEY, FORMAT, TOKENIZER_KEY, tokenizerIdentity));
    }

    /** {@code 00.jsonl.zst} -> {@code 00}: output shards are named after their input. */
    public static String stem(String inputName) {
        for (String ext : List.of(".jsonl.zst", ".jsonl.zstd", ".jsonl", ".zst", ".zstd", ".json")) {
            if (inputName.endsWith(ext) && inputName.length() > ext.length()) {
                return inputName.substring(0, inputName.length() - ext.length());
            }
        }
        return inputName;
    }

    /** Shard {@code index} of the input with stem {@code stem}: {@code 00-00003.arrow}. */
    public static String shardName(String stem, int index) {
        return String.format("%s-%05d%s", stem, index, SUFFIX);
    }

    /** One record batch's token values: {@code tokens} ids starting at byte {@code dataOffset} of the file. */
    public record Segment(long dataOffset, long tokens) {}

    /** What the loader and a resuming preprocess need from a shard, read from its footer and batch headers. */
    public record Layout(ShardInfo info, boolean uint16, String tokenizerIdentity, long fileBytes,
                         List<Segment> segments) {}

    /**
     * Reads a shard's schema, footer metadata and the position of every batch's token values, without reading the
     * token data. Any mismatch with the format is a {@link DataException} naming the file.
     */
    public static Layout readLayout(Path path) {
        String name = DataFiles.display(path);
        FileStatus status = DataFiles.statusOrNull(path);
        if (status == null || !status.isFile()) {
            throw new DataException(name + ": token shard not found; re-run dtrain preprocess");
        }
        try (BufferAllocator allocator = new RootAllocator();
             FSDataInputStream in = DataFiles.fileSystem(path).open(path);
             ArrowFileReader reader = new ArrowFileReader(new HadoopReadChannel(in, status.getLen()), allocator)) {
            Schema schema = reader.getVectorSchemaRoot().getSchema();
            if (!FORMAT.equals(schema.getCustomMetadata().get(FORMAT_KEY))) {
                throw new DataException(name + ": not a dtrain token shard (schema metadata " + FORMAT_KEY + " is "
                        + schema.getCustomMetadata().get(FORMAT_KEY) + ", expected " + FORMAT + ")");
            }
            ArrowType idType = schema.getFields().get(0).getChildren().get(0).getType();
            boolean uint16 = idType.equals(new ArrowType.Int(16, false));
            if (!uint16 && !idType.equals(new ArrowType.Int(32, true))) {
                throw new DataException(name + ": token type " + idType + " is neither uint16 nor int32");
            }
            String json = reader.getMetaData().get(FOOTER_KEY);
            if (json == null) {
                throw new DataException(name + ": the Arrow footer has no " + FOOTER_KEY + " entry; re-run dtrain preprocess");
            }
            ShardInfo info = Manifest.JSON.readValue(json, ShardInfo.class);
            List<Segment> segments = new ArrayList<>();
            long total = 0;
            for (ArrowBlock block : reader.getRecordBlocks()) {
                Segment s = segment(in, block, name);
                segments.add(s);
                total += s.tokens();
            }
            if (total != info.tokens() || segments.size() != info.recordBatches()) {
                throw new DataException(name + ": footer says " + info.tokens() + " tokens in " + info.recordBatches()
                        + " batches, the file holds " + total + " in " + segments.size() + "; re-run dtrain preprocess");
            }
            return new Layout(info, uint16, schema.getCustomMetadata().get(TOKENIZER_KEY), status.getLen(), segments);
        } catch (JsonProcessingException e) {
            throw new DataException(name + ": footer " + FOOTER_KEY + " is not valid JSON: " + e.getOriginalMessage(), e);
        } catch (IOException | RuntimeException e) {
            if (e instanceof DataException de) {
                throw de;
            }
            throw new DataException(name + ": not a readable Arrow IPC file (" + e + "); delete it and re-run"
                    + " dtrain preprocess", e);
        }
    }

    /** Finds where a record batch's token values lie by parsing only its flatbuffer header. */
    private static Segment segment(FSDataInputStream in, ArrowBlock block, String name) throws IOException {
        byte[] meta = new byte[block.getMetadataLength()];
        in.readFully(block.getOffset(), meta, 0, meta.length);
        ByteBuffer buf = ByteBuffer.wrap(meta).order(ByteOrder.LITTLE_ENDIAN);
        int start = buf.getInt(0) == -1 ? 8 : 4;  // 0xFFFFFFFF continuation marker, then the length
        Message message = Message.getRootAsMessage(buf.position(start).slice().order(ByteOrder.LITTLE_ENDIAN));
        if (message.headerType() != MessageHeader.RecordBatch) {
            throw new DataException(name + ": block at byte " + block.getOffset() + " is not a record batch");
        }
        RecordBatch batch = (RecordBatch) message.header(new RecordBatch());
        if (batch.compression() != null) {
            throw new DataException(name + ": compressed record batches are not supported (write shards uncompressed)");
        }
        if (batch.nodesLength() != 4 || batch.buffersLength() < TOKEN_DATA_BUFFER + 1) {
            throw new DataException(name + ": record batch at byte " + block.getOffset() + " does not have the"
                    + " token-shard layout (" + batch.nodesLength() + " field nodes)");
        }
        long bodyStart = block.getOffset() + block.getMetadataLength();
        return new Segment(bodyStart + batch.buffers(TOKEN_DATA_BUFFER).offset(), batch.nodes(1).length());
    }
}
