package io.dtrain.parallel;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.MappedByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import org.agrona.IoUtil;
import org.agrona.concurrent.UnsafeBuffer;

/**
 * AllReduce of a group whose members all share one host's memory, through one mapped file instead of the ring's
 * 2(n-1) steps: every member copies its buffer into its own slot once, and every member reads the others' slots
 * straight from shared memory. A large buffer goes through in pieces of at most {@link #SLOT_BYTES} per member.
 *
 * <p>Two algorithms by piece size, as MPI and NCCL choose by message size:
 * <ul>
 * <li><b>direct</b> (pieces up to {@link #DIRECT_MAX_BYTES}): one synchronisation; each member sums all slots itself,
 * in slot order 0, 1, ..., n-1, so every member computes the same bits from the same inputs.
 * <li><b>reduce-scatter / all-gather</b> (larger pieces): each member copies into its slot all but its own segment
 * (only it reads that), member r sums segment r of all members (in slot order; its own part straight from its buffer)
 * through an L1-sized block into its buffer and into segment r of its slot; after a second synchronisation every
 * member copies the other segments' results. Each element is computed once, by its owner, and then only copied.
 * </ul>
 * Both orders are fixed, so results are the same on every run.
 *
 * <p>Layout: per member a 256-byte line pair {@code arrived} (the last piece whose data is in its slot) and
 * {@code reduced} (the last piece whose owned segment holds the result); then per parity and member a 64-byte
 * descriptor of the piece (collective kind, sequence, name hash, elements, type and op, offset), checked by every
 * reader so members in different collectives fail at once; then the slots, two parities of n slots. Pieces
 * alternate parities. Why two are enough: a member writes parity p again (piece g+2) only after piece g+1 completed,
 * which needs every member to have published piece g+1, which each did only after it had finished reading piece g.
 *
 * <p>A buffer from the group's {@link ShmBuffers} (larger than the direct algorithm's pieces) needs no slots: it is
 * reduced in place, in one piece, by the same rule (member r sums segment r in member order), straight from every
 * member's buffer into every member's buffer ({@link #allReduceShared}); the same bits as through the slots.
 *
 * <p>Waiting (the only blocking): a few busy polls, then, when every member has a core of its own, spinning for up to
 * as long as this member's own share of the work took (the others did theirs at the same time; at most 50 us),
 * then yielding (at once when members outnumber cores: a spinning waiter would take the core from the member it
 * waits for; on a loaded host the member waited for is often not running at all), and parking after 2 ms so a long
 * wait (a member still computing) costs no CPU.
 */
final class ShmExchange implements AutoCloseable {
    /** Largest piece per member; 1 MiB: the n slots of both parities stay in the 4 MiB L2 and the shared L3. */
    static final int SLOT_BYTES = 1 << 20;
    /** Pieces up to this use the direct algorithm (one synchronisation instead of two, n reads of the piece). */
    static final int DIRECT_MAX_BYTES = 16 << 10;
    private static final int LINE = 256;
    private static final int ARRIVED = 0;
    private static final int REDUCED = 128;
    private static final int DESCRIPTOR = 64;
    /** Reduce in blocks that stay in L1 between the n passes over them. */
    private static final int BLOCK_BYTES = 16 << 10;
    /**
     * Busy polls before yielding, when every member has a core (a few microseconds): beyond that the member waited
     * for is usually not running at all (a loaded host), and spinning would keep it from the core it waits for.
     */
    private static final int SPINS = 16;
    private static final long MAX_SPIN_NS = 50_000;
    private static final long YIELD_NS = 2_000_000;

    private final Ring ring;
    private final int n;
    private final int me;
    private final boolean oversubscribed;
    private final MappedByteBuffer mapped;
    private final UnsafeBuffer meta;
    private final long dataAddress;
    private final int descriptorsOffset;
    private final java.nio.ByteBuffer scratch = java.nio.ByteBuffer.allocateDirect(BLOCK_BYTES);
    private final long scratchAddress = org.agrona.BufferUtil.address(scratch);
    /** This group's buffers in shared memory ({@link ProcessGroup#allocateBuffer}): reduced in place, no slots. */
    final ShmBuffers buffers;
    /** Per member, the address of its shared buffer in the running AllReduce (comm thread only). */
    private final long[] peerBuffers;
    private long generation;
    /** Bytes this member wrote into shared memory for the others (its pieces, and its segments' results). */
    private volatile long bytesShared;

    private ShmExchange(Ring ring, Communicator comm, MappedByteBuffer mapped, boolean oversubscribed) {
        this.ring = ring;
        this.buffers = new ShmBuffers(ring, comm);
        this.peerBuffers = new long[ring.size];
        this.n = ring.size;
        this.me = ring.index;
        this.oversubscribed = oversubscribed;
        this.mapped = mapped;
        this.meta = new UnsafeBuffer(mapped);
        this.descriptorsOffset = n * LINE;
        this.dataAddress = meta.addressOffset() + dataOffset(n);
    }

    private static int dataOffset(int n) {
        return align(n * LINE + 2 * n * DESCRIPTOR, 4096);
    }

    private static int align(int value, int to) {
        return (value + to - 1) / to * to;
    }

    static long fileBytes(int n) {
        return dataOffset(n) + 2L * n * SLOT_BYTES;
    }

    /**
     * Opens the group's exchange file: member 0 creates it in the job's 0700 shm directory and publishes its path;
     * the others map it; member 0 unlinks it once all have (so nothing outlives the job).
     */
    static ShmExchange open(Ring ring, Communicator comm) {
        WorldConfig config = comm.config();
        Duration wait = config.rendezvousTimeout();
        String key = "exchange/" + ring.groupKey;
        MappedByteBuffer mapped;
        Path file = null;
        if (ring.index == 0) {
            file = config.shmDirectory().resolve("exchange-" + ring.groupKey);
            try {
                Files.deleteIfExists(file);
            } catch (IOException e) {
                throw new UncheckedIOException("cannot replace " + file, e);
            }
            mapped = IoUtil.mapNewFile(file.toFile(), fileBytes(ring.size), false);
            comm.store().set(key, file.toString());
        } else {
            mapped = IoUtil.mapExistingFile(Path.of(comm.store().getString(key, wait)).toFile(), "shm exchange");
            comm.store().set(key + "/" + comm.rank(), "mapped");
        }
        if (ring.index == 0) {
            for (int i = 1; i < ring.size; i++) {
                comm.store().getString(key + "/" + ring.members[i], wait);
            }
            try {
                Files.deleteIfExists(file);
            } catch (IOException ignored) {
                // removed with the job directory
            }
        }
        org.slf4j.LoggerFactory.getLogger(Ring.class).info("group {} rank {}: AllReduce up to {} B through the shared-memory"
                + " exchange {} ({} B slots)", ring.groupKey, comm.rank(), config.shmAllReduceMaxBytes(), key, SLOT_BYTES);
        Reduce.warmUp();
        int localMembers = ring.size; // every member is on this host
        return new ShmExchange(ring, comm, mapped, localMembers > Runtime.getRuntime().availableProcessors());
    }

    /** AllReduce of {@code buffer} in place (the ring has begun the collective: kind, name, sequence). */
    void allReduce(FlatBuffer buffer, ReduceOp op, int kind, int nameHash, long seq) {
        // A member that comes late to a collective the others have given up on must not complete it.
        ring.checkWaiting(System.nanoTime());
        // Small buffers take the direct algorithm (one synchronisation) through the slots, shared or not.
        long location = buffer.byteLength() <= DIRECT_MAX_BYTES ? -1 : buffers.locate(buffer);
        if (location >= 0) {
            allReduceShared(buffer, location, op, kind, nameHash, seq);
            return;
        }
        int elementBytes = buffer.type().bytes();
        long total = buffer.elements();
        long perPiece = SLOT_BYTES / elementBytes;
        boolean direct = total * elementBytes <= DIRECT_MAX_BYTES;
        int misc = Frame.misc(buffer.type(), op);
        long pieces = Math.max(1, (total + perPiece - 1) / perPiece);
        for (long p = 0; p < pieces; p++) {
            long offset = p * perPiece;
            piece(buffer, offset, (int) Math.min(perPiece, total - offset), op, direct, kind, nameHash, seq, misc);
        }
    }

    private void piece(FlatBuffer buffer, long offset, int count, ReduceOp op, boolean direct, int kind, int nameHash,
                       long seq, int misc) {
        long g = ++generation;
        int parity = (int) (g & 1);
        ElementType type = buffer.type();
        int elementBytes = type.bytes();
        long own = buffer.address() + offset * elementBytes;
        long mySlot = slot(parity, me);
        // Direct: every member reads every slot whole. Reduce-scatter: only this member reads its own segment, so that
        // part of its buffer is not copied: it is summed straight from the buffer.
        long segment = direct ? 0 : (long) me * count / n;
        long segmentEnd = direct ? 0 : (long) (me + 1) * count / n;
        Reduce.copy(mySlot, own, segment * elementBytes);
        Reduce.copy(mySlot + segmentEnd * elementBytes, own + segmentEnd * elementBytes, (count - segmentEnd) * elementBytes);
        int d = descriptor(parity, me);
        meta.putInt(d, kind);
        meta.putInt(d + 4, nameHash);
        meta.putLong(d + 8, seq);
        meta.putLong(d + 16, buffer.elements());
        meta.putLong(d + 24, offset);
        meta.putInt(d + 32, misc);
        meta.putLong(d + 40, -1);
        meta.putLongOrdered(me * LINE + ARRIVED, g);
        if (!ring.warmingUp) {
            ring.comm.health().frameSent();
        }
        await(ARRIVED, g, 0);
        for (int r = 0; r < n; r++) {
            checkDescriptor(r, parity, kind, nameHash, seq, buffer.elements(), offset, misc, false);
        }
        if (direct) {
            reduce(own, 0, parity, 0, count, type, op, 0);
            bytesShared += (long) count * elementBytes;
            return;
        }
        int segmentCount = (int) (segmentEnd - segment);
        long summing = System.nanoTime();
        reduce(own + segment * elementBytes, mySlot + segment * elementBytes, parity, segment * elementBytes,
                segmentCount, type, op, own + segment * elementBytes);
        meta.putLongOrdered(me * LINE + REDUCED, g);
        bytesShared += (long) count * elementBytes;
        await(REDUCED, g, System.nanoTime() - summing);
        for (int r = 0; r < n; r++) {
            if (r != me) {
                long start = (long) r * count / n;
                long end = (long) (r + 1) * count / n;
                Reduce.copy(own + start * elementBytes, slot(parity, r) + start * elementBytes, (end - start) * elementBytes);
            }
        }
    }

    /**
     * AllReduce of a buffer in the group's shared buffers on every member, in one piece: once every member has
     * arrived, member r sums segment r of all members' buffers (in member order) and writes the result into segment r
     * of every member's buffer; once every member has done so, every buffer holds the whole result. Each member reads
     * and writes the buffer's size once (the copying exchange moves ~3.5x that), and only member r ever touches
     * segment r between the two synchronisations, so nothing needs a slot or a parity.
     */
    private void allReduceShared(FlatBuffer buffer, long location, ReduceOp op, int kind, int nameHash, long seq) {
        long g = ++generation;
        int parity = (int) (g & 1);
        int elementBytes = buffer.type().bytes();
        long total = buffer.elements();
        int misc = Frame.misc(buffer.type(), op);
        int d = descriptor(parity, me);
        meta.putInt(d, kind);
        meta.putInt(d + 4, nameHash);
        meta.putLong(d + 8, seq);
        meta.putLong(d + 16, total);
        meta.putLong(d + 24, 0);
        meta.putInt(d + 32, misc);
        meta.putLong(d + 40, location);
        meta.putLongOrdered(me * LINE + ARRIVED, g);
        if (!ring.warmingUp) {
            ring.comm.health().frameSent();
        }
        await(ARRIVED, g, 0);
        for (int r = 0; r < n; r++) {
            checkDescriptor(r, parity, kind, nameHash, seq, total, 0, misc, true);
            long address = r == me ? buffer.address() : buffers.address(meta.getLong(descriptor(parity, r) + 40), r, total * elementBytes);
            if (address == 0) {
                throw ring.comm.health().fail(ring, "rank " + ring.members[r] + " passed a shared buffer this rank does not"
                        + " know (allocateBuffer must be called by every member, in the same order)", true);
            }
            peerBuffers[r] = address;
        }
        long start = (long) me * total / n;
        long end = (long) (me + 1) * total / n;
        long summing = System.nanoTime();
        reduceToAll(start * elementBytes, end - start, buffer.type(), op);
        bytesShared += (end - start) * elementBytes * (n - 1);
        meta.putLongOrdered(me * LINE + REDUCED, g);
        await(REDUCED, g, System.nanoTime() - summing);
    }

    /**
     * {@code peerBuffers[m][from + i] = sum over r of peerBuffers[r][from + i]} (in member order; then / n for AVG)
     * for every member m, i in [0, count): block by block through the L1-sized scratch block.
     */
    private void reduceToAll(long from, long count, ElementType type, ReduceOp op) {
        int elementBytes = type.bytes();
        int block = BLOCK_BYTES / elementBytes;
        // Members 0 and 1 sum straight into their own buffer (its block is summed first, so nothing is overwritten
        // before it is read); the others through the scratch block.
        boolean inOwn = me < 2;
        for (long at = 0; at < count; at += block) {
            int c = (int) Math.min(block, count - at);
            long atBytes = from + at * elementBytes;
            long out = inOwn ? peerBuffers[me] + atBytes : scratchAddress;
            if (type == ElementType.FLOAT32) {
                Reduce.addFloatsTo(out, peerBuffers[0] + atBytes, peerBuffers[1] + atBytes, c);
                for (int r = 2; r < n; r++) {
                    Reduce.addFloats(out, peerBuffers[r] + atBytes, c);
                }
                if (op == ReduceOp.AVG) {
                    Reduce.divideFloats(out, c, n);
                }
            } else {
                Reduce.addDoublesTo(out, peerBuffers[0] + atBytes, peerBuffers[1] + atBytes, c);
                for (int r = 2; r < n; r++) {
                    Reduce.addDoubles(out, peerBuffers[r] + atBytes, c);
                }
                if (op == ReduceOp.AVG) {
                    Reduce.divideDoubles(out, c, n);
                }
            }
            for (int r = 0; r < n; r++) {
                if (peerBuffers[r] + atBytes != out) {
                    Reduce.copy(peerBuffers[r] + atBytes, out, (long) c * elementBytes);
                }
            }
        }
    }

    /**
     * {@code dst[0, count) = slot 0 + slot 1 + ... + slot n-1}, each at {@code from} bytes into the slot (then / n for
     * AVG), block by block: with {@code mine} != 0 this member's part comes from there instead of its slot, the sum
     * goes to the L1-sized scratch block first and from there to {@code dst} and {@code alsoTo} (the slot the others
     * copy the result from).
     */
    private void reduce(long dst, long alsoTo, int parity, long from, int count, ElementType type, ReduceOp op, long mine) {
        int elementBytes = type.bytes();
        int block = BLOCK_BYTES / elementBytes;
        for (int at = 0; at < count; at += block) {
            int c = Math.min(block, count - at);
            long atBytes = (long) at * elementBytes;
            long out = mine == 0 ? dst + atBytes : scratchAddress;
            if (type == ElementType.FLOAT32) {
                Reduce.addFloatsTo(out, source(0, parity, from, atBytes, mine), source(1, parity, from, atBytes, mine), c);
                for (int r = 2; r < n; r++) {
                    Reduce.addFloats(out, source(r, parity, from, atBytes, mine), c);
                }
                if (op == ReduceOp.AVG) {
                    Reduce.divideFloats(out, c, n);
                }
            } else {
                Reduce.addDoublesTo(out, source(0, parity, from, atBytes, mine), source(1, parity, from, atBytes, mine), c);
                for (int r = 2; r < n; r++) {
                    Reduce.addDoubles(out, source(r, parity, from, atBytes, mine), c);
                }
                if (op == ReduceOp.AVG) {
                    Reduce.divideDoubles(out, c, n);
                }
            }
            if (mine != 0) {
                Reduce.copy(dst + atBytes, out, (long) c * elementBytes);
                Reduce.copy(alsoTo + atBytes, out, (long) c * elementBytes);
            }
        }
    }

    private long source(int member, int parity, long from, long atBytes, long mine) {
        return (member == me && mine != 0 ? mine : slot(parity, member) + from) + atBytes;
    }

    private long slot(int parity, int member) {
        return dataAddress + ((long) parity * n + member) * SLOT_BYTES;
    }

    private int descriptor(int parity, int member) {
        return descriptorsOffset + (parity * n + member) * DESCRIPTOR;
    }

    private void checkDescriptor(int r, int parity, int kind, int nameHash, long seq, long total, long offset, int misc,
                                 boolean shared) {
        int d = descriptor(parity, r);
        int peerKind = meta.getInt(d);
        long peerSeq = meta.getLong(d + 8);
        long peerTotal = meta.getLong(d + 16);
        int peerMisc = meta.getInt(d + 32);
        boolean peerShared = meta.getLong(d + 40) >= 0;
        if (peerKind == kind && meta.getInt(d + 4) == nameHash && peerSeq == seq && peerTotal == total && peerShared != shared) {
            throw failSharedDiffers(r, shared);
        }
        if (peerKind != kind || meta.getInt(d + 4) != nameHash || peerSeq != seq || peerTotal != total
                || meta.getLong(d + 24) != offset || peerMisc != misc) {
            int rank = ring.members[r];
            throw ring.comm.health().fail(ring, "mismatched collectives: rank " + rank + " is in " + Frame.kindName(peerKind)
                    + " #" + peerSeq + (meta.getInt(d + 4) != nameHash ? " with another name" : "") + " (" + peerTotal
                    + " elements, " + Frame.miscName(peerMisc) + ") while rank " + ring.comm.rank() + " is in "
                    + ring.describeOp() + " (" + total + " elements, " + Frame.miscName(misc) + "); every rank must"
                    + " issue the same collectives in the same order with the same sizes", true);
        }
    }

    private CollectiveException failSharedDiffers(int r, boolean shared) {
        int rank = ring.members[r];
        String theirs = shared ? "an ordinary buffer" : "a buffer from allocateBuffer";
        String mine = shared ? "one from allocateBuffer" : "an ordinary one";
        return ring.comm.health().fail(ring, "mismatched buffers: rank " + rank + " passed " + theirs + " to "
                + ring.describeOp() + " while rank " + ring.comm.rank() + " passed " + mine + "; every rank must pass the"
                + " same kind of buffer to the same collective", true);
    }

    long bytesShared() {
        return bytesShared;
    }

    /**
     * For a member waiting in another collective (the ring's): fails at once, naming the member, if one has entered
     * the exchange with the same sequence number for a different collective (kind, name, size, type or op).
     */
    void checkNoPeerDiffers(int kind, int nameHash, long seq, long total, int misc) {
        for (int r = 0; r < n; r++) {
            long g = meta.getLongVolatile(r * LINE + ARRIVED);
            if (r != me && g > generation) {
                int d = descriptor((int) (g & 1), r);
                if (meta.getLong(d + 8) == seq) {
                    boolean peerShared = meta.getLong(d + 40) >= 0;
                    checkDescriptor(r, (int) (g & 1), kind, nameHash, seq, total, meta.getLong(d + 24), misc, peerShared);
                    // Same collective, yet the peer took the exchange and this member the ring: only a shared buffer
                    // takes the exchange above the size threshold.
                    throw failSharedDiffers(r, !peerShared);
                }
            }
        }
    }

    /**
     * Waits until every member's {@code field} (ARRIVED or REDUCED) is at least {@code g}: busy polls a few times,
     * and up to {@code workNs} (capped) when every member has a core (the others did the same work at the same time,
     * so they are likely to finish within about as long), then yields, then parks.
     */
    private void await(int field, long g, long workNs) {
        long spinNs = oversubscribed ? 0 : Math.min(workNs, MAX_SPIN_NS);
        long started = 0;
        int member = 0;
        long spins = 0;
        while (member < n) {
            if (meta.getLongVolatile(member * LINE + field) >= g) {
                member++;
                continue;
            }
            spins++;
            if (!oversubscribed && spins < SPINS) {
                Thread.onSpinWait();
                continue;
            }
            long now = System.nanoTime();
            if (started == 0) {
                started = now;
            }
            long waited = now - started;
            if (waited < spinNs) {
                Thread.onSpinWait();
            } else if (waited < YIELD_NS) {
                Thread.yield();
            } else {
                ring.checkWaiting(started);
                java.util.concurrent.locks.LockSupport.parkNanos(50_000);
            }
            if ((spins & 1023) == 0) {
                ring.checkWaiting(started);
            }
        }
    }

    @Override
    public void close() {
        IoUtil.unmap(mapped);
    }
}
