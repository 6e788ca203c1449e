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
public final class ArrowTokenDataset extends AbstractTokenDataset implements AutoCloseable {
    private final Shards shards;

    private ArrowTokenDataset(String dir, Manifest manifest, int seqLen, Shards shards) {
        super(seqLen, samplesIn(shards.tokens, seqLen, dir), shards.tokens, manifest.documents(),
                BadRecordReport.restored(manifest.badRecords(),
                        manifest.badRecordExamples().stream().map(BadRecordReport.BadRecord::parse).toList()));
        this.shards = shards;
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
        checkSeqLen(seqLen);
        Shards shards = Shards.open(dir, manifest);
        try {
            if (shards.tokens != manifest.tokens()) {
                throw new DataException(dir + "/" + Manifest.FILE_NAME + ": says " + manifest.tokens()
                        + " tokens, the shards hold " + shards.tokens + "; re-run dtrain preprocess");
            }
            return new ArrowTokenDataset(dir, manifest, seqLen, shards);
        } catch (RuntimeException e) {
            shards.close();
            throw e;
        }
    }

    @Override
    int tokenAt(long i) {
        int[] one = new int[1];
        shards.read(i, one, 0, 1);
        return one[0];
    }

    @Override
    void copyWindow(long sampleIndex, int[] dst) {
        shards.read(sampleIndex * seqLen(), dst, 0, seqLen() + 1);
    }

    /** Drops the mappings (unmapped when collected) and closes remote streams. */
    @Override
    public void close() {
        shards.close();
    }

    /** The open shards of a directory as one token stream: where each non-empty record batch's ids are. */
    private static final class Shards {
        private final String dir;
        private final boolean uint16;
        private final int width;
        private final ByteBuffer[] mapped;          // per shard; null when remote
        private final FSDataInputStream[] streams;  // per shard; null when local
        private final long[] segmentStart;          // global index of each non-empty batch's first token, then tokens
        private final int[] segmentShard;
        private final long[] segmentOffset;         // byte offset of the batch's ids in its shard file
        private final long tokens;

        private Shards(String dir, boolean uint16, ByteBuffer[] mapped, FSDataInputStream[] streams,
                       List<long[]> segments, long tokens) {
            this.dir = dir;
            this.uint16 = uint16;
            this.width = uint16 ? 2 : 4;
            this.mapped = mapped;
            this.streams = streams;
            this.tokens = tokens;
            this.segmentStart = new long[segments.size() + 1];
            this.segmentShard = new int[segments.size()];
            this.segmentOffset = new long[segments.size()];
            for (int i = 0; i < segments.size(); i++) {
                segmentStart[i] = segments.get(i)[0];
                segmentShard[i] = (int) segments.get(i)[1];
                segmentOffset[i] = segments.get(i)[2];
            }
            segmentStart[segments.size()] = tokens;
        }

        /** Reads every shard's layout, checks it against the manifest and opens it; closes what it opened on failure. */
        static Shards open(String dir, Manifest manifest) {
            List<ShardInfo> infos = manifest.shards();
            boolean uint16 = "uint16".equals(manifest.tokenType());
            ByteBuffer[] mapped = new ByteBuffer[infos.size()];
            FSDataInputStream[] streams = new FSDataInputStream[infos.size()];
            List<long[]> segments = new ArrayList<>();  // {start, shard, offset}
            long total = 0;
            try {
                for (int s = 0; s < infos.size(); s++) {
                    ShardInfo info = infos.get(s);
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
                        openShard(s, path, layout.fileBytes(), mapped, streams);
                    }
                }
            } catch (RuntimeException e) {
                close(mapped, streams);
                throw e;
            }
            return new Shards(dir, uint16, mapped, streams, segments, total);
        }

        private static void openShard(int shard, Path path, long size, ByteBuffer[] mapped, FSDataInputStream[] streams) {
            boolean local = "file".equals(DataFiles.fileSystem(path).getUri().getScheme());
            try {
                if (local) {
                    if (size > Integer.MAX_VALUE) {
                        throw new DataException(DataFiles.display(path) + ": " + size + " bytes; shards are mapped as"
                                + " one buffer of at most 2 GiB: preprocess again with --shard-size 1GiB");
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

        /** Copies tokens {@code [from, from + count)} of the stream into {@code dst[off..]}, across batches and shards. */
        void read(long from, int[] dst, int off, int count) {
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

        void close() {
            close(mapped, streams);
        }

        private static void close(ByteBuffer[] mapped, FSDataInputStream[] streams) {
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
}
