package io.dtrain.parallel;

import io.aeron.Publication;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.MappedByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import org.agrona.BitUtil;
import org.agrona.IoUtil;
import org.agrona.MutableDirectBuffer;
import org.agrona.concurrent.UnsafeBuffer;

/**
 * A one-way frame stream between two processes of one host: a single-producer single-consumer ring of records in a
 * memory-mapped file in the job's 0700 directory. It does what an {@code aeron:ipc} stream does for the ring, minus
 * the media driver's part: Aeron's driver zeroes every consumed term byte and alone moves the publisher's limit,
 * which cost a third of all CPU of an AllReduce on 2 cores (benchmarks/RESULTS.md). Here a record is valid because
 * the producer's position says so, not because its length is non-zero, so nothing is ever cleaned, and the producer
 * reads the consumer's position itself.
 *
 * <p>Layout: a 4 KiB header of positions on separate cache lines, then {@code capacity} bytes of records. A record is
 * an int length (or {@link #PADDING} up to the end of the ring), 4 spare bytes, the frame; records are 64-byte
 * aligned. The producer writes a record, then publishes its position (ordered store); the consumer reads the
 * position (volatile load), then the record, and publishes its own position when it is done with it.
 *
 * <p>The consumer creates the file and passes its path (through the rendezvous store); once the producer has mapped
 * it and said so, the consumer unlinks it, so no file outlives the job even if both processes are killed.
 */
final class ShmLink {
    static final int HEADER_BYTES = 4096;
    static final int RECORD_ALIGNMENT = 64;
    private static final int LENGTH_BYTES = 8;
    private static final int PADDING = -1;
    private static final int PRODUCER_POSITION = 0;
    private static final int CONSUMER_POSITION = 128;
    private static final int PRODUCER_ATTACHED = 256;
    private static final int PRODUCER_CLOSED = 384;
    private static final int CONSUMER_CLOSED = 512;
    private static final int CAPACITY = 640;

    private ShmLink() {
    }

    static int recordLength(int frameLength) {
        return BitUtil.align(LENGTH_BYTES + frameLength, RECORD_ALIGNMENT);
    }

    /** One end's mapping of a link file: the header of positions and the ring of records. */
    private abstract static class End {
        final Path file;
        final MappedByteBuffer mapped;
        final UnsafeBuffer meta;
        final UnsafeBuffer records;
        final int capacity;
        final int mask;
        /** This end's position: the producer's next record, or the consumer's. */
        long position;

        End(Path file, MappedByteBuffer mapped) {
            this.file = file;
            this.mapped = mapped;
            this.meta = new UnsafeBuffer(mapped, 0, HEADER_BYTES);
            this.capacity = meta.getInt(CAPACITY);
            if (!BitUtil.isPowerOfTwo(capacity) || mapped.capacity() != HEADER_BYTES + (long) capacity) {
                IoUtil.unmap(mapped);
                throw new CollectiveException("shm link file " + file + " is not a dtrain link (capacity " + capacity + ")");
            }
            this.records = new UnsafeBuffer(mapped, HEADER_BYTES, capacity);
            this.mask = capacity - 1;
        }

        public String describe() {
            return "shm " + file + " (" + capacity + " B)";
        }
    }

    /** The consuming end; creates the file. */
    static final class Consumer extends End implements RingLinks.InboundFrames {
        private long producerPosition;
        private boolean unlinked;

        Consumer(Path file, int capacity) {
            super(file, mapNew(file, capacity));
        }

        private static MappedByteBuffer mapNew(Path file, int capacity) {
            if (!BitUtil.isPowerOfTwo(capacity)) {
                throw new IllegalArgumentException("shm link capacity must be a power of two, got " + capacity);
            }
            try {
                Files.deleteIfExists(file);
            } catch (IOException e) {
                throw new UncheckedIOException("cannot replace " + file, e);
            }
            MappedByteBuffer mapped = IoUtil.mapNewFile(file.toFile(), HEADER_BYTES + (long) capacity, false);
            new UnsafeBuffer(mapped, 0, HEADER_BYTES).putInt(CAPACITY, capacity);
            return mapped;
        }

        Path file() {
            return file;
        }

        /** True once the producer mapped the file; the file is then unlinked (both ends keep their mapping). */
        @Override
        public boolean isConnected() {
            if (meta.getIntVolatile(PRODUCER_ATTACHED) == 0) {
                return false;
            }
            if (!unlinked) {
                unlinked = true;
                deleteQuietly(file);
            }
            return true;
        }

        /**
         * The producer closed its end and everything it sent was consumed (a killed producer cannot say so: the
         * group's failure detection covers that).
         */
        @Override
        public boolean isClosed() {
            return meta.getIntVolatile(PRODUCER_CLOSED) != 0 && position == meta.getLongVolatile(PRODUCER_POSITION);
        }

        @Override
        public int poll(RingLinks.FrameHandler handler) {
            if (position == producerPosition) {
                producerPosition = meta.getLongVolatile(PRODUCER_POSITION);
                if (position == producerPosition) {
                    return 0;
                }
            }
            int index = (int) (position & mask);
            int length = records.getInt(index);
            if (length == PADDING) {
                position += capacity - index;
                meta.putLongOrdered(CONSUMER_POSITION, position);
                return poll(handler);
            }
            if (!handler.onFrame(records, index + LENGTH_BYTES, length)) {
                return 0;
            }
            position += recordLength(length);
            meta.putLongOrdered(CONSUMER_POSITION, position);
            return 1;
        }

        @Override
        public void close() {
            meta.putIntOrdered(CONSUMER_CLOSED, 1);
            IoUtil.unmap(mapped);
            deleteQuietly(file);
        }
    }

    /** The producing end; maps the consumer's file. Claim, write at {@link #offset}, commit. */
    static final class Producer extends End implements RingLinks.Outbound {
        private long consumerPosition;
        private int claimIndex;
        private int claimLength;

        Producer(Path file) {
            super(file, IoUtil.mapExistingFile(file.toFile(), "shm link"));
            meta.putIntOrdered(PRODUCER_ATTACHED, 1);
        }

        /**
         * Claims room for a frame of {@code length} bytes: the position after it (> 0), or
         * {@link Publication#BACK_PRESSURED} while the consumer has not made room, {@link Publication#NOT_CONNECTED}
         * once it closed its end (the caller treats both as Aeron's).
         */
        @Override
        public long tryClaim(int length) {
            int record = recordLength(length);
            if (record > capacity / 2) {
                throw new IllegalArgumentException("frame of " + length + " bytes too long for a " + capacity + " B shm link");
            }
            int index = (int) (position & mask);
            int toEnd = capacity - index;
            int needed = record <= toEnd ? record : toEnd + record;
            if (position + needed - consumerPosition > capacity) {
                consumerPosition = meta.getLongVolatile(CONSUMER_POSITION);
                if (position + needed - consumerPosition > capacity) {
                    return meta.getIntVolatile(CONSUMER_CLOSED) != 0 ? Publication.NOT_CONNECTED : Publication.BACK_PRESSURED;
                }
            }
            if (record > toEnd) {
                records.putInt(index, PADDING);
                position += toEnd;
                meta.putLongOrdered(PRODUCER_POSITION, position);
                index = 0;
            }
            claimIndex = index;
            claimLength = length;
            return position + record;
        }

        @Override
        public MutableDirectBuffer buffer() {
            return records;
        }

        /** Where the claimed frame's bytes go in {@link #buffer}. */
        @Override
        public int offset() {
            return claimIndex + LENGTH_BYTES;
        }

        @Override
        public void commit() {
            records.putInt(claimIndex, claimLength);
            position += recordLength(claimLength);
            meta.putLongOrdered(PRODUCER_POSITION, position);
        }

        /** Mapped is connected: the consumer made the file and waits for this end. */
        @Override
        public boolean isConnected() {
            return true;
        }

        /** As long as Aeron ipc frames (mtu 65504 minus its 32-byte header), so mixed groups cut buffers alike. */
        @Override
        public int maxFrameLength() {
            return Inbound.LOOPBACK_MTU - io.aeron.protocol.DataHeaderFlyweight.HEADER_LENGTH;
        }

        @Override
        public void close() {
            meta.putIntOrdered(PRODUCER_CLOSED, 1);
            IoUtil.unmap(mapped);
        }
    }

    private static void deleteQuietly(Path file) {
        try {
            Files.deleteIfExists(file);
        } catch (IOException ignored) {
            // The job directory is removed with the job.
        }
    }
}
