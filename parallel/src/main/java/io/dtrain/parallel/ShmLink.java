package io.dtrain.parallel;

import io.aeron.Publication;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.MappedByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import org.agrona.BitUtil;
import org.agrona.DirectBuffer;
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

    /** What a consumer does with one frame (length -1: not a whole frame): true = consumed, false = leave it. */
    interface FrameHandler {
        boolean onFrame(DirectBuffer buffer, int offset, int length);
    }

    static int recordLength(int frameLength) {
        return BitUtil.align(LENGTH_BYTES + frameLength, RECORD_ALIGNMENT);
    }

    /** The consuming end; creates the file. */
    static final class Consumer implements AutoCloseable {
        private final Path file;
        private final MappedByteBuffer mapped;
        private final UnsafeBuffer meta;
        private final UnsafeBuffer records;
        private final int capacity;
        private final int mask;
        private long position;
        private long producerPosition;
        private boolean unlinked;

        Consumer(Path file, int capacity) {
            if (!BitUtil.isPowerOfTwo(capacity)) {
                throw new IllegalArgumentException("shm link capacity must be a power of two, got " + capacity);
            }
            this.file = file;
            this.capacity = capacity;
            this.mask = capacity - 1;
            try {
                Files.deleteIfExists(file);
            } catch (IOException e) {
                throw new UncheckedIOException("cannot replace " + file, e);
            }
            mapped = IoUtil.mapNewFile(file.toFile(), HEADER_BYTES + (long) capacity, false);
            meta = new UnsafeBuffer(mapped, 0, HEADER_BYTES);
            records = new UnsafeBuffer(mapped, HEADER_BYTES, capacity);
            meta.putInt(CAPACITY, capacity);
        }

        Path file() {
            return file;
        }

        /** True once the producer mapped the file; the file is then unlinked (both ends keep their mapping). */
        boolean isConnected() {
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
        boolean isClosed() {
            return meta.getIntVolatile(PRODUCER_CLOSED) != 0 && position == meta.getLongVolatile(PRODUCER_POSITION);
        }

        /** Hands the next frame, if there is one, to {@code handler}; 1 if it was consumed. */
        int poll(FrameHandler handler) {
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
    static final class Producer implements AutoCloseable {
        private final MappedByteBuffer mapped;
        private final UnsafeBuffer meta;
        private final UnsafeBuffer records;
        private final int capacity;
        private final int mask;
        private long position;
        private long consumerPosition;
        private int claimIndex;
        private int claimLength;

        Producer(Path file) {
            mapped = IoUtil.mapExistingFile(file.toFile(), "shm link");
            meta = new UnsafeBuffer(mapped, 0, HEADER_BYTES);
            capacity = meta.getInt(CAPACITY);
            if (!BitUtil.isPowerOfTwo(capacity) || mapped.capacity() != HEADER_BYTES + (long) capacity) {
                IoUtil.unmap(mapped);
                throw new CollectiveException("shm link file " + file + " is not a dtrain link (capacity " + capacity + ")");
            }
            records = new UnsafeBuffer(mapped, HEADER_BYTES, capacity);
            mask = capacity - 1;
            meta.putIntOrdered(PRODUCER_ATTACHED, 1);
        }

        int capacity() {
            return capacity;
        }

        /**
         * Claims room for a frame of {@code length} bytes: the position after it (> 0), or
         * {@link Publication#BACK_PRESSURED} while the consumer has not made room, {@link Publication#NOT_CONNECTED}
         * once it closed its end (the caller treats both as Aeron's).
         */
        long tryClaim(int length) {
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

        MutableDirectBuffer buffer() {
            return records;
        }

        /** Where the claimed frame's bytes go in {@link #buffer}. */
        int offset() {
            return claimIndex + LENGTH_BYTES;
        }

        void commit() {
            records.putInt(claimIndex, claimLength);
            position += recordLength(claimLength);
            meta.putLongOrdered(PRODUCER_POSITION, position);
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
