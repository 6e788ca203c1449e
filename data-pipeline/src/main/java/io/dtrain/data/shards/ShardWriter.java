package io.dtrain.data.shards;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.channels.Channels;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;
import org.apache.arrow.memory.ArrowBuf;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.BaseFixedWidthVector;
import org.apache.arrow.vector.BigIntVector;
import org.apache.arrow.vector.VarCharVector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.complex.ListVector;
import org.apache.arrow.vector.ipc.ArrowFileWriter;

/**
 * Writes one token shard (see {@link ShardFormat}) to a stream: documents are buffered and written as a record
 * batch whenever {@code batchTokens} tokens are pending; {@link #finish} writes the last batch and the footer.
 */
final class ShardWriter implements AutoCloseable {
    private final boolean uint16;
    private final int batchTokens;
    private final BufferAllocator allocator = new RootAllocator();
    private final VectorSchemaRoot root;
    private final Map<String, String> footer = new HashMap<>();  // ArrowFileWriter reads it when the file ends
    private final ArrowFileWriter writer;

    private int[] pendingTokens = new int[1 << 16];
    private int pendingTokenCount;
    private int[] docEnds = new int[256];
    private String[] setNames = new String[256];
    private long[] lines = new long[256];
    private int pendingDocs;
    private int batches;

    ShardWriter(OutputStream out, boolean uint16, String tokenizerIdentity, int batchTokens) throws IOException {
        this.uint16 = uint16;
        this.batchTokens = batchTokens;
        this.root = VectorSchemaRoot.create(ShardFormat.schema(uint16, tokenizerIdentity), allocator);
        this.writer = new ArrowFileWriter(root, null, Channels.newChannel(out), footer);
        writer.start();
    }

    /** Appends one document: its ids, then {@code eotId}. */
    void add(int[] ids, int eotId, String setName, long line) throws IOException {
        int needed = pendingTokenCount + ids.length + 1;
        if (needed > pendingTokens.length) {
            pendingTokens = Arrays.copyOf(pendingTokens, Math.max(needed, pendingTokens.length * 2));
        }
        System.arraycopy(ids, 0, pendingTokens, pendingTokenCount, ids.length);
        pendingTokenCount += ids.length;
        pendingTokens[pendingTokenCount++] = eotId;
        if (pendingDocs == docEnds.length) {
            docEnds = Arrays.copyOf(docEnds, pendingDocs * 2);
            setNames = Arrays.copyOf(setNames, pendingDocs * 2);
            lines = Arrays.copyOf(lines, pendingDocs * 2);
        }
        docEnds[pendingDocs] = pendingTokenCount;
        setNames[pendingDocs] = setName;
        lines[pendingDocs] = line;
        pendingDocs++;
        if (pendingTokenCount >= batchTokens) {
            flush();
        }
    }

    int batches() {
        return batches;
    }

    /** Writes the pending documents as a record batch (none pending: nothing). */
    void flush() throws IOException {
        if (pendingDocs == 0) {
            return;
        }
        root.clear();
        ListVector tokens = (ListVector) root.getVector(0);
        VarCharVector sets = (VarCharVector) root.getVector(1);
        BigIntVector sourceLines = (BigIntVector) root.getVector(2);
        tokens.setInitialCapacity(pendingDocs);
        tokens.allocateNew();
        BaseFixedWidthVector ids = (BaseFixedWidthVector) tokens.getDataVector();
        ids.allocateNew(pendingTokenCount);
        ArrowBuf data = ids.getDataBuffer();
        ArrowBuf validity = ids.getValidityBuffer();
        validity.setOne(0, validity.capacity());  // the id column has no nulls
        if (uint16) {
            for (int i = 0; i < pendingTokenCount; i++) {
                data.setShort((long) i << 1, pendingTokens[i]);
            }
        } else {
            for (int i = 0; i < pendingTokenCount; i++) {
                data.setInt((long) i << 2, pendingTokens[i]);
            }
        }
        sets.allocateNew(pendingDocs);
        sourceLines.allocateNew(pendingDocs);
        int start = 0;
        for (int d = 0; d < pendingDocs; d++) {
            tokens.startNewValue(d);
            tokens.endValue(d, docEnds[d] - start);
            start = docEnds[d];
            if (setNames[d] == null) {
                sets.setNull(d);
            } else {
                sets.setSafe(d, setNames[d].getBytes(StandardCharsets.UTF_8));
            }
            sourceLines.set(d, lines[d]);
        }
        tokens.setValueCount(pendingDocs);  // also sets the id column's count to the last offset
        sets.setValueCount(pendingDocs);
        sourceLines.setValueCount(pendingDocs);
        root.setRowCount(pendingDocs);
        writer.writeBatch();
        batches++;
        Arrays.fill(setNames, 0, pendingDocs, null);
        pendingDocs = 0;
        pendingTokenCount = 0;
    }

    /** Writes what is pending and the footer carrying {@code infoJson}; the stream is complete afterwards. */
    void finish(String infoJson) throws IOException {
        flush();
        footer.put(ShardFormat.FOOTER_KEY, infoJson);
        writer.end();
    }

    @Override
    public void close() {
        root.close();
        allocator.close();
    }
}
