package io.dtrain.parallel;

import io.dtrain.common.ByteSizes;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.MappedByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import org.agrona.BufferUtil;
import org.agrona.IoUtil;

/**
 * Buffers of a group whose members share this host's memory, allocated in shared files so that the group's
 * {@link ShmExchange} reduces straight from every member's buffer into every member's buffer: no copy into an
 * exchange slot and back (see {@link ProcessGroup#allocateBuffer}).
 *
 * <p>Each allocation is one file of n equal regions, region m being member m's buffer; every member maps the whole
 * file, so member m's buffer is at {@code base + m x stride} in every process's mapping. Member 0 creates the file in
 * the job's 0700 {@code shm/} directory and unlinks it once every member has mapped it. A mapping is never unmapped
 * explicitly: the {@link FlatBuffer}s handed out hold it, so it lives as long as they are reachable (also after the
 * group is closed) and the garbage collector unmaps it after.
 */
final class ShmBuffers {
    /** A member's buffer within an allocation: regions of {@code stride} bytes, {@code bytes} of them usable. */
    private record Allocation(int id, MappedByteBuffer mapping, long base, long stride, long bytes) {
        long region(int member) {
            return base + member * stride;
        }
    }

    private final Ring ring;
    private final Communicator comm;
    /** Copy on write: allocated on a caller's thread, read on the communication thread. */
    private volatile Allocation[] allocations = new Allocation[0];

    ShmBuffers(Ring ring, Communicator comm) {
        this.ring = ring;
        this.comm = comm;
    }

    /**
     * Allocates this member's buffer of {@code elements} of {@code type} in a new shared file (every member calls it
     * with the same arguments, in the same order); zero-filled. Null on every member if the file system has no room
     * for it (member 0 decides, logs it and tells the others): the caller then uses an ordinary buffer.
     */
    synchronized FlatBuffer allocate(long elements, ElementType type) {
        long bytes = Math.max(1, elements) * type.bytes();
        long stride = (bytes + 4095) / 4096 * 4096;
        int id = allocations.length;
        WorldConfig config = comm.config();
        Duration wait = config.rendezvousTimeout();
        String key = "exchange/" + ring.groupKey + "/buffer/" + id;
        long fileBytes = stride * ring.size;
        MappedByteBuffer mapped;
        Path file = null;
        if (ring.index == 0) {
            if (!ShmSpace.hasRoom(config.shmDirectory(), fileBytes)) {
                org.slf4j.LoggerFactory.getLogger(ShmBuffers.class).warn("group {}: no room in {} for a shared buffer of"
                        + " {} x {}: using ordinary buffers (AllReduce copies through the exchange or goes around the"
                        + " ring); give the workers more shared memory, e.g. docker run --shm-size", ring.groupKey,
                        config.shmDirectory(), ring.size, ByteSizes.format(bytes));
                comm.store().set(key, "");
                return null;
            }
            file = config.shmDirectory().resolve("buffer-" + ring.groupKey + "-" + id);
            try {
                Files.deleteIfExists(file);
            } catch (IOException e) {
                throw new UncheckedIOException("cannot replace " + file, e);
            }
            mapped = IoUtil.mapNewFile(file.toFile(), fileBytes, false);
            comm.store().set(key, file.toString());
            for (int i = 1; i < ring.size; i++) {
                comm.store().getString(key + "/" + ring.members[i], wait);
            }
            try {
                Files.deleteIfExists(file);
            } catch (IOException ignored) {
                // removed with the job directory
            }
        } else {
            String path = comm.store().getString(key, wait);
            if (path.isEmpty()) {
                return null;
            }
            mapped = IoUtil.mapExistingFile(Path.of(path).toFile(), "shared buffer");
            comm.store().set(key + "/" + comm.rank(), "mapped");
        }
        Allocation allocation = new Allocation(id, mapped, BufferUtil.address(mapped), stride, bytes);
        Allocation[] grown = java.util.Arrays.copyOf(allocations, id + 1);
        grown[id] = allocation;
        allocations = grown;
        return FlatBuffer.ofAddress(mapped, allocation.region(ring.index), elements, type);
    }

    /** Whether a buffer of {@code bytes} per member fits one mapping (a MappedByteBuffer is int-indexed). */
    boolean fits(long bytes) {
        return ((bytes + 4095) / 4096 * 4096) * ring.size <= Integer.MAX_VALUE;
    }

    /**
     * Where {@code buffer} lies in this member's shared buffers, as {@code id << 40 | byte offset}, or -1 if it is not
     * inside one (an ordinary buffer).
     */
    long locate(FlatBuffer buffer) {
        long address = buffer.address();
        for (Allocation a : allocations) {
            long mine = a.region(ring.index);
            if (address >= mine && address + buffer.byteLength() <= mine + a.bytes()) {
                return (long) a.id() << 40 | (address - mine);
            }
        }
        return -1;
    }

    /**
     * The address in this process of member {@code member}'s buffer of {@code bytes} at {@code location} (from
     * {@link #locate} on that member), or 0 if that is not inside one of its shared buffers.
     */
    long address(long location, int member, long bytes) {
        int id = (int) (location >>> 40);
        long offset = location & ((1L << 40) - 1);
        Allocation[] known = allocations;
        if (location < 0 || id >= known.length || offset + bytes > known[id].bytes()) {
            return 0;
        }
        return known[id].region(member) + offset;
    }
}
