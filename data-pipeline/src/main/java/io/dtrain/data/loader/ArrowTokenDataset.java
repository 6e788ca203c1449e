package io.dtrain.data.loader;

import io.dtrain.data.DataException;
import io.dtrain.data.fs.DataFiles;
import io.dtrain.data.reader.BadRecordReport;
import io.dtrain.data.shards.Manifest;
import io.dtrain.data.shards.ShardFormat;
import io.dtrain.data.shards.ShardInfo;
import io.dtrain.data.tokenizer.Tokenizer;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.apache.hadoop.fs.FSDataInputStream;
import org.apache.hadoop.fs.Path;

/**
 * The token stream of a preprocessed directory ({@code manifest.json} + Arrow shards, see {@link ShardFormat}):
 * the shards in manifest order, each shard's record batches in order; sample {@code i} is tokens
 * {@code [i*T, i*T + T + 1)}, exactly as {@link PackedTokenDataset} over the same input.
 *
 * <p>Local shards are memory-mapped and ids are read in place (zero-copy: the page cache is the only copy, shared
 * by every process on the machine). Shards on other file systems (HDFS, ...) are read with positioned reads
 * through Hadoop streams, one read per window piece. Only the position of each record batch's ids is kept in memory.
 */
public final class ArrowTokenDataset implements TokenDataset, AutoCloseable {
    private final String dir;
    private final int seqLen;
    private final boolean uint16;
    private final int width;
    private final long numTokens;
    private final long numSamples;
    private final long numDocuments;
    private final BadRecordReport badRecords;
    private final ByteBuffer[] mapped;          // per shard; null when remote
    private final FSDataInputStream[] streams;  // per shard; null when local
    private final long[] segmentStart;          // global index of each non-empty batch's first token, then numTokens
    private final int[] segmentShard;
    private final long[] segmentOffset;         // byte offset of the batch's ids in its shard file

    private ArrowTokenDataset(String dir, Manifest manifest, int seqLen) {
        if (seqLen < 1) {
            throw new IllegalArgumentException("seqLen must be >= 1, got " + seqLen);
        }
        this.dir = dir;
        this.seqLen = seqLen;
        this.uint16 = "uint16".equals(manifest.tokenType());
        this.width = uint16 ? 2 : 4;
        this.numDocuments = manifest.documents();
        this.badRecords = BadRecordReport.restored(manifest.badRecords(), List.of());
        List<ShardInfo> shards = manifest.shards();
        this.mapped = new ByteBuffer[shards.size()];
        this.streams = new FSDataInputStream[shards.size()];
        List<long[]> segments = new ArrayList<>();  // {start, shard, offset}
        long total = 0;
        try {
            for (int s = 0; s < shards.size(); s++) {
                ShardInfo info = shards.get(s);
                Path path = new Path(dir, info.file());
                ShardFormat.Layout layout = ShardFormat.readLayout(path);
                if (layout.info().tokens() != info.tokens() || layout.uint16() != uint16
                        || (info.bytes() != null && info.bytes() != layout.fileBytes())) {
                    throw new DataException(DataFiles.display(path) + ": does not match " + Manifest.FILE_NAME
                            + " (manifest: " + info.tokens() + " tokens, " + info.bytes() + " bytes; file: "
                            + layout.info().tokens() + " tokens, " + layout.fileBytes() + " bytes); re-run dtrain"
                            + " preprocess into a fresh directory");
                }
                for (ShardFormat.Segment seg : layout.segments()) {
                    if (seg.tokens() > 0) {
                        segments.add(new long[] {total, s, seg.dataOffset()});
                        total += seg.tokens();
                    }
                }
                if (layout.info().tokens() > 0) {
                    open(s, path, layout.fileBytes());
                }
            }
        } catch (RuntimeException e) {
            close();
            throw e;
        }
        if (total != manifest.tokens()) {
            close();
            throw new DataException(dir + "/" + Manifest.FILE_NAME + ": says " + manifest.tokens()
                    + " tokens, the shards hold " + total + "; re-run dtrain preprocess");
        }
        this.numTokens = total;
        this.segmentStart = new long[segments.size() + 1];
        this.segmentShard = new int[segments.size()];
        this.segmentOffset = new long[segments.size()];
        for (int i = 0; i < segments.size(); i++) {
            segmentStart[i] = segments.get(i)[0];
            segmentShard[i] = (int) segments.get(i)[1];
            segmentOffset[i] = segments.get(i)[2];
        }
        segmentStart[segments.size()] = total;
        this.numSamples = total <= seqLen ? 0 : (total - 1) / seqLen;
        if (numSamples == 0) {
            close();
            throw new DataException(dir + " holds " + total + " tokens, fewer than one sample needs (seqLen + 1 = "
                    + (seqLen + 1) + "); use more data or a shorter sequence length");
        }
    }

    /**
     * Opens a preprocessed directory. {@code tokenizer} must be the one the shards were made with (its
     * {@link Tokenizer#identity()} is compared with the manifest's).
     */
    public static ArrowTokenDataset open(String dir, Tokenizer tokenizer, int seqLen) {
        Manifest manifest = Manifest.read(dir);
        Manifest.TokenizerInfo made = manifest.tokenizer();
        if (!made.identity().equals(tokenizer.identity())) {
            throw new DataException(dir + ": the shards were tokenized with " + made.identity() + " (vocabulary "
                    + made.vocabSize() + "), but the configured tokenizer is " + tokenizer.identity() + " (vocabulary "
                    + tokenizer.vocabSize() + "); set data.tokenizer to match or preprocess again");
        }
        return new ArrowTokenDataset(dir, manifest, seqLen);
    }

    private void open(int shard, Path path, long size) {
        boolean local = "file".equals(DataFiles.fileSystem(path).getUri().getScheme());
        try {
            if (local) {
                if (size > Integer.MAX_VALUE) {
                    throw new DataException(DataFiles.display(path) + ": " + size + " bytes; shards are mapped as one"
                            + " buffer of at most 2 GiB: preprocess again with --shard-size 1GiB");
                }
                java.nio.file.Path file = java.nio.file.Path.of(path.toUri().getPath());
                try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
                    mapped[shard] = ch.map(FileChannel.MapMode.READ_ONLY, 0, size).order(ByteOrder.LITTLE_ENDIAN);
                }
            } else {
                streams[shard] = DataFiles.fileSystem(path).open(path);
            }
        } catch (IOException e) {
            throw new DataException(DataFiles.display(path) + ": cannot open: " + e.getMessage(), e);
        }
    }

    @Override
    public long numSamples() {
        return numSamples;
    }

    @Override
    public int seqLen() {
        return seqLen;
    }

    @Override
    public long numTokens() {
        return numTokens;
    }

    @Override
    public long numDocuments() {
        return numDocuments;
    }

    @Override
    public BadRecordReport badRecords() {
        return badRecords;
    }

    @Override
    public int token(long i) {
        int[] one = new int[1];
        read(i, one, 0, 1);
        return one[0];
    }

    @Override
    public void window(long sampleIndex, int[] dst) {
        if (sampleIndex < 0 || sampleIndex >= numSamples) {
            throw new IndexOutOfBoundsException("sample " + sampleIndex + " of " + numSamples);
        }
        if (dst.length != seqLen + 1) {
            throw new IllegalArgumentException("window buffer has length " + dst.length + ", needs seqLen + 1 = " + (seqLen + 1));
        }
        read(sampleIndex * seqLen, dst, 0, seqLen + 1);
    }

    /** Copies tokens {@code [from, from + count)} of the stream into {@code dst[off..]}, across batches and shards. */
    private void read(long from, int[] dst, int off, int count) {
        if (from < 0 || from + count > numTokens) {
            throw new IndexOutOfBoundsException("tokens [" + from + ", " + (from + count) + ") of " + numTokens);
        }
        int seg = Arrays.binarySearch(segmentStart, from);
        seg = seg >= 0 ? seg : -seg - 2;
        while (count > 0) {
            long within = from - segmentStart[seg];
            int n = (int) Math.min(count, segmentStart[seg + 1] - from);
            long byteOffset = segmentOffset[seg] + within * width;
            ByteBuffer map = mapped[segmentShard[seg]];
            if (map != null) {
                int p = (int) byteOffset;
                if (uint16) {
                    for (int k = 0; k < n; k++) {
                        dst[off + k] = map.getChar(p + 2 * k);
                    }
                } else {
                    for (int k = 0; k < n; k++) {
                        dst[off + k] = map.getInt(p + 4 * k);
                    }
                }
            } else {
                readRemote(segmentShard[seg], byteOffset, dst, off, n);
            }
            from += n;
            off += n;
            count -= n;
            seg++;
        }
    }

    private void readRemote(int shard, long byteOffset, int[] dst, int off, int n) {
        byte[] bytes = new byte[n * width];
        try {
            streams[shard].readFully(byteOffset, bytes, 0, bytes.length);  // positioned read: thread-safe
        } catch (IOException e) {
            throw new DataException(dir + ": reading shard " + shard + " at byte " + byteOffset + " failed: "
                    + e.getMessage(), e);
        }
        ByteBuffer b = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
        for (int k = 0; k < n; k++) {
            dst[off + k] = uint16 ? b.getChar(2 * k) : b.getInt(4 * k);
        }
    }

    /** Drops the mappings (unmapped when collected) and closes remote streams. */
    @Override
    public void close() {
        Arrays.fill(mapped, null);
        for (int i = 0; i < streams.length; i++) {
            if (streams[i] != null) {
                try {
                    streams[i].close();
                } catch (IOException ignored) {
                    // nothing to do on a failed close of a read-only stream
                }
                streams[i] = null;
            }
        }
    }
}
