package io.dtrain.parallel;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.SplittableRandom;
import java.util.zip.CRC32;

/**
 * A worker process for the multi-process tests: {@code CollectiveWorker SCENARIO}, configured by torchrun-style
 * environment variables. Prints {@code CRC ...}, {@code BYTES ...}, {@code OK} or {@code FAILED ...} lines on stdout.
 */
public final class CollectiveWorker {
    public static void main(String[] args) throws Exception {
        String scenario = args[0];
        long start = System.nanoTime();
        int code;
        ProcessGroup joined;
        try {
            joined = ProcessGroup.fromEnvironment();
        } catch (io.dtrain.common.UserFacingException e) {
            // As dtrain's launcher (ErrorHandler) shows it: one line, exit code 2.
            System.err.println("error: " + e.getMessage());
            System.exit(2);
            return;
        }
        try (ProcessGroup world = joined) {
            System.out.println("JOINED " + world.rank() + " after " + (System.nanoTime() - start) / 1_000_000 + " ms, clock offset "
                    + world.clockOffsetToRank0Nanos() + " ns");
            code = switch (scenario) {
                case "correctness" -> correctness(world);
                case "kill" -> loop(world);
                case "mismatch" -> mismatch(world);
                case "stall" -> stall(world);
                case "udp" -> udp(world);
                case "exchange" -> exchange(world);
                case "shared" -> shared(world);
                case "shared-mismatch" -> sharedMismatch(world);
                case "steady" -> steady(world);
                case "peers" -> peers(world);
                case "peers-stall" -> peersStall(world);
                default -> throw new IllegalArgumentException("unknown scenario " + scenario);
            };
        }
        System.out.flush();
        System.exit(code);
    }

    // ---------------------------------------------------------------------------------------------------------

    static int correctness(ProcessGroup world) {
        int n = world.size();
        for (ElementType type : ElementType.values()) {
            for (int length : new int[] {1, 2, 3, 5, 7, 1001, 40_001}) {
                for (ReduceOp op : ReduceOp.values()) {
                    ByteBuffer buffer = input(type, world.rank(), length, 1);
                    world.allReduce(FlatBuffer.of(buffer, type), op);
                    checkReduced(buffer, type, n, length, 1, op, 0, length, "allReduce " + type + " " + length + " " + op);
                    System.out.println("CRC allReduce " + type + " " + length + " " + op + " " + crc(buffer));
                }
            }
        }
        // Bytes sent by one AllReduce of 100,000 float32.
        ByteBuffer big = input(ElementType.FLOAT32, world.rank(), 100_000, 2);
        long before = world.bytesSent();
        world.allReduce(FlatBuffer.of(big, ElementType.FLOAT32), ReduceOp.SUM);
        System.out.println("BYTES " + (world.bytesSent() - before) + " " + 400_000 + " "
                + exchangeBytes(n, world.rank(), 100_000, 4));
        checkReduced(big, ElementType.FLOAT32, n, 100_000, 2, ReduceOp.SUM, 0, 100_000, "big allReduce");

        // Broadcast from the last rank.
        int root = n - 1;
        ByteBuffer b = world.rank() == root ? input(ElementType.FLOAT64, root, 1001, 3) : ByteBuffer.allocateDirect(1001 * 8).order(ByteOrder.nativeOrder());
        world.broadcast(FlatBuffer.of(b, ElementType.FLOAT64), root);
        ByteBuffer expected = input(ElementType.FLOAT64, root, 1001, 3);
        check(b.equals(expected), "broadcast from " + root + " differs");
        System.out.println("CRC broadcast " + crc(b));

        // AllGather of 3 float32 per rank.
        ByteBuffer part = input(ElementType.FLOAT32, world.rank(), 3, 4);
        ByteBuffer gathered = ByteBuffer.allocateDirect(3 * n * 4).order(ByteOrder.nativeOrder());
        world.allGather(FlatBuffer.of(part, ElementType.FLOAT32), FlatBuffer.of(gathered, ElementType.FLOAT32));
        for (int r = 0; r < n; r++) {
            ByteBuffer theirs = input(ElementType.FLOAT32, r, 3, 4);
            for (int i = 0; i < 3; i++) {
                check(Float.floatToRawIntBits(gathered.getFloat((r * 3 + i) * 4)) == Float.floatToRawIntBits(theirs.getFloat(i * 4)),
                        "allGather element " + i + " of rank " + r);
            }
        }
        System.out.println("CRC allGather " + crc(gathered));

        // ReduceScatter of 5 float64 per rank, AVG.
        ByteBuffer whole = input(ElementType.FLOAT64, world.rank(), 5 * n, 5);
        ByteBuffer wholeCopy = input(ElementType.FLOAT64, world.rank(), 5 * n, 5);
        ByteBuffer mine = ByteBuffer.allocateDirect(5 * 8).order(ByteOrder.nativeOrder());
        world.reduceScatter(FlatBuffer.of(whole, ElementType.FLOAT64), FlatBuffer.of(mine, ElementType.FLOAT64), ReduceOp.AVG);
        check(whole.equals(wholeCopy), "reduceScatter modified its input");
        checkReduced(mine, ElementType.FLOAT64, n, 5 * n, 5, ReduceOp.AVG, world.rank() * 5, 5, "reduceScatter");

        world.barrier();

        // Async: three collectives in flight, completed in issue order.
        ByteBuffer[] buffers = new ByteBuffer[3];
        CollectiveHandle[] handles = new CollectiveHandle[3];
        for (int k = 0; k < 3; k++) {
            buffers[k] = input(ElementType.FLOAT32, world.rank(), 777 + k, 10 + k);
            handles[k] = world.allReduceAsync(FlatBuffer.of(buffers[k], ElementType.FLOAT32), ReduceOp.SUM, "async" + k);
        }
        for (int k = 2; k >= 0; k--) {
            handles[k].await();
        }
        for (int k = 0; k < 3; k++) {
            checkReduced(buffers[k], ElementType.FLOAT32, n, 777 + k, 10 + k, ReduceOp.SUM, 0, 777 + k, "async " + k);
        }

        // A sub-group of the even ranks.
        if (n >= 3) {
            int[] even = java.util.stream.IntStream.range(0, n).filter(r -> r % 2 == 0).toArray();
            if (world.rank() % 2 == 0) {
                try (ProcessGroup sub = world.subGroup(even)) {
                    ByteBuffer s = input(ElementType.FLOAT32, world.rank(), 333, 6);
                    sub.allReduce(FlatBuffer.of(s, ElementType.FLOAT32), ReduceOp.SUM);
                    double tolerance = 0;
                    for (int i = 0; i < 333; i++) {
                        double exact = 0;
                        double magnitude = 0;
                        for (int r : even) {
                            float x = input(ElementType.FLOAT32, r, 333, 6).getFloat(i * 4);
                            exact += x;
                            magnitude += Math.abs(x);
                        }
                        tolerance = 4 * even.length * Math.ulp((float) magnitude);
                        check(Math.abs(s.getFloat(i * 4) - exact) <= tolerance, "subgroup element " + i);
                    }
                    System.out.println("CRC subgroup " + crc(s));
                }
            }
            world.barrier();
        }
        System.out.println("OK");
        return 0;
    }

    /**
     * AllReduce at every size around the shared-memory exchange's thresholds (direct vs reduce-scatter/all-gather
     * pieces, one vs several pieces, the exchange vs the ring above DTRAIN_SHM_ALLREDUCE_MAX_BYTES), float and double,
     * SUM and AVG: correct, the same bits on every rank (CRC lines) and on a second run of the same inputs, and
     * through the exchange exactly when it should (ALGO lines, told apart by the bytes sent).
     */
    static int exchange(ProcessGroup world) {
        int n = world.size();
        long threshold = Long.parseLong(System.getenv("DTRAIN_SHM_ALLREDUCE_MAX_BYTES"));
        for (ElementType type : ElementType.values()) {
            int direct = ShmExchange.DIRECT_MAX_BYTES / type.bytes();
            int slot = ShmExchange.SLOT_BYTES / type.bytes();
            int limit = (int) (threshold / type.bytes());
            int[] lengths = {1, 2, 3, n - 1, n + 1, 1001, direct - 1, direct, direct + 1, slot - 1, slot, slot + 1,
                    2 * slot + 7, limit, limit + 1};
            for (int length : lengths) {
                if (length < 1) {
                    continue;
                }
                for (ReduceOp op : ReduceOp.values()) {
                    String what = "exchange " + type + " " + length + " " + op;
                    long crc = 0;
                    for (int run = 0; run < 2; run++) {
                        ByteBuffer buffer = input(type, world.rank(), length, 8);
                        long before = world.bytesSent();
                        world.allReduce(FlatBuffer.of(buffer, type), op);
                        long sent = world.bytesSent() - before;
                        if (run == 0) {
                            checkReduced(buffer, type, n, length, 8, op, 0, length, what);
                            crc = crc(buffer);
                            System.out.println("CRC " + what + " " + crc);
                            System.out.println("ALGO " + type + " " + length + " "
                                    + (sent == exchangeBytes(n, world.rank(), length, type.bytes()) ? "exchange" : "ring"));
                        } else {
                            check(crc == crc(buffer), what + ": a second run of the same inputs gave other bits");
                        }
                    }
                }
            }
        }
        System.out.println("OK");
        return 0;
    }

    /**
     * AllReduce of buffers from {@link ProcessGroup#allocateBuffer} (in shared memory: reduced in place) at the sizes
     * of {@link #exchange}, at an offset into the buffer that differs per rank, float and double, SUM and AVG:
     * correct, the same bits on every rank (CRC lines), on a second run and as the copying exchange of an ordinary
     * buffer with the same inputs, through the exchange at every size (also above DTRAIN_SHM_ALLREDUCE_MAX_BYTES).
     */
    static int shared(ProcessGroup world) {
        int n = world.size();
        long threshold = Long.parseLong(System.getenv("DTRAIN_SHM_ALLREDUCE_MAX_BYTES"));
        for (ElementType type : ElementType.values()) {
            int direct = ShmExchange.DIRECT_MAX_BYTES / type.bytes();
            int slot = ShmExchange.SLOT_BYTES / type.bytes();
            int limit = (int) (threshold / type.bytes());
            int[] lengths = {1, 2, 3, n - 1, n + 1, 1001, direct - 1, direct, direct + 1, slot + 1, 2 * slot + 7, limit,
                    2 * limit + 3};
            FlatBuffer whole = world.allocateBuffer(2 * limit + 3 + n, type);
            for (int length : lengths) {
                if (length < 1) {
                    continue;
                }
                int offset = world.rank();
                FlatBuffer flat = whole.slice(offset, offset + length);
                for (ReduceOp op : ReduceOp.values()) {
                    String what = "shared " + type + " " + length + " " + op;
                    ByteBuffer input = input(type, world.rank(), length, 9);
                    long crc = 0;
                    for (int run = 0; run < 2; run++) {
                        org.agrona.UnsafeApi.copyMemory(org.agrona.BufferUtil.address(input), flat.address(), flat.byteLength());
                        long before = world.bytesSent();
                        world.allReduce(flat, op);
                        long sent = world.bytesSent() - before;
                        ByteBuffer result = ByteBuffer.allocateDirect((int) flat.byteLength()).order(ByteOrder.nativeOrder());
                        org.agrona.UnsafeApi.copyMemory(flat.address(), org.agrona.BufferUtil.address(result), flat.byteLength());
                        if (run == 0) {
                            checkReduced(result, type, n, length, 9, op, 0, length, what);
                            crc = crc(result);
                            System.out.println("CRC " + what + " " + crc);
                            check(sent == sharedBytes(n, world.rank(), length, type.bytes()), what + ": wrote " + sent
                                    + " bytes for the others, not " + sharedBytes(n, world.rank(), length, type.bytes()));
                        } else {
                            check(crc == crc(result), what + ": a second run of the same inputs gave other bits");
                        }
                    }
                    if (length <= limit) {
                        ByteBuffer copied = input(type, world.rank(), length, 9);
                        world.allReduce(FlatBuffer.of(copied, type), op);
                        check(crc == crc(copied), what + ": other bits than the copying exchange");
                    }
                    // The buffer around the slice is untouched.
                    check(offset == 0 || readElement(whole, type, offset - 1) == 0, what + ": wrote before the slice");
                }
            }
        }
        System.out.println("OK");
        return 0;
    }

    private static double readElement(FlatBuffer buffer, ElementType type, long index) {
        long address = buffer.address() + index * type.bytes();
        return type == ElementType.FLOAT32 ? org.agrona.UnsafeApi.getFloat(address) : org.agrona.UnsafeApi.getDouble(address);
    }

    /**
     * What a member writes into the others' shared buffers: its segment's result, n - 1 times; up to the direct
     * algorithm's size, its whole buffer into its slot (as for an ordinary buffer).
     */
    static long sharedBytes(int n, int rank, long length, int elementBytes) {
        if (length * elementBytes <= ShmExchange.DIRECT_MAX_BYTES) {
            return exchangeBytes(n, rank, length, elementBytes);
        }
        return ((long) (rank + 1) * length / n - (long) rank * length / n) * elementBytes * (n - 1);
    }

    /**
     * Rank 1 passes an ordinary buffer to AllReduce #1 where the others pass a shared one ({@code -Dlength}: below or
     * above DTRAIN_SHM_ALLREDUCE_MAX_BYTES, i.e. rank 1 in the exchange or on the ring).
     */
    static int sharedMismatch(ProcessGroup world) {
        int length = Integer.getInteger("length", 1000);
        FlatBuffer shared = world.allocateBuffer(length, ElementType.FLOAT32);
        world.allReduce(shared, ReduceOp.SUM);
        long start = System.nanoTime();
        try {
            FlatBuffer buffer = world.rank() == 1 ? FlatBuffer.of(input(ElementType.FLOAT32, 1, length, 1), ElementType.FLOAT32) : shared;
            world.allReduceAsync(buffer, ReduceOp.SUM, "grads").await();
        } catch (CollectiveException e) {
            return failed(e, start);
        }
        System.out.println("OK");
        return 0;
    }

    /**
     * The bytes {@link ShmExchange} writes for the others in an AllReduce of {@code length} elements: the buffer once
     * (direct: all of it; reduce-scatter: the others' segments, then this member's segment's result).
     */
    static long exchangeBytes(int n, int rank, long length, int elementBytes) {
        return length * elementBytes;
    }

    /** Many AllReduces (the kill test SIGKILLs one rank in the middle of one). */
    static int loop(ProcessGroup world) {
        ByteBuffer buffer = input(ElementType.FLOAT32, world.rank(), 20_000, 1);
        // -Dshared=true: the buffer in shared memory (allocateBuffer), reduced in place by the exchange.
        FlatBuffer flat = Boolean.getBoolean("shared") ? world.allocateBuffer(20_000, ElementType.FLOAT32)
                : FlatBuffer.of(buffer, ElementType.FLOAT32);
        for (int i = 0; i < 200; i++) {
            long start = System.nanoTime();
            try {
                world.allReduceAsync(flat, ReduceOp.AVG, "step").await();
            } catch (CollectiveException e) {
                return failed(e, start);
            }
        }
        System.out.println("OK");
        return 0;
    }

    /** Rank 1 calls allGather where the others call allReduce (#2). */
    static int mismatch(ProcessGroup world) {
        ByteBuffer buffer = input(ElementType.FLOAT32, world.rank(), 1000, 1);
        world.allReduce(FlatBuffer.of(buffer, ElementType.FLOAT32), ReduceOp.SUM);
        world.barrier();
        long start = System.nanoTime();
        try {
            if (world.rank() == 1) {
                ByteBuffer out = ByteBuffer.allocateDirect(1000 * 4 * world.size()).order(ByteOrder.nativeOrder());
                world.allGatherAsync(FlatBuffer.of(buffer, ElementType.FLOAT32), FlatBuffer.of(out, ElementType.FLOAT32), "params").await();
            } else {
                world.allReduceAsync(FlatBuffer.of(buffer, ElementType.FLOAT32), ReduceOp.SUM, "grads").await();
            }
        } catch (CollectiveException e) {
            return failed(e, start);
        }
        System.out.println("OK");
        return 0;
    }

    /** Rank 2 does not call AllReduce #1 for a long time (alive, heartbeating, but stuck elsewhere). */
    static int stall(ProcessGroup world) throws InterruptedException {
        ByteBuffer buffer = input(ElementType.FLOAT32, world.rank(), 1000, 1);
        world.allReduce(FlatBuffer.of(buffer, ElementType.FLOAT32), ReduceOp.SUM);
        if (world.rank() == 2) {
            Thread.sleep(Long.getLong("stall.ms", 8000));
        }
        long start = System.nanoTime();
        try {
            world.allReduceAsync(FlatBuffer.of(buffer, ElementType.FLOAT32), ReduceOp.SUM, "grads").await();
        } catch (CollectiveException e) {
            return failed(e, start);
        }
        System.out.println("OK");
        return 0;
    }

    /**
     * A chain 0 - 1 - ... - (n-1), like pipeline stages: every rank first sends all its messages to both
     * neighbours (more than the streams can hold, so only a receiver that drains while nobody waits makes this
     * finish), then receives and checks them bit for bit. Prints the bytes each link moved.
     */
    static int peers(ProcessGroup world) {
        int me = world.rank();
        int n = world.size();
        int[] neighbours = java.util.stream.IntStream.of(me - 1, me + 1).filter(r -> r >= 0 && r < n).toArray();
        int messages = 6;
        long[] shape = {4, 300, 256}; // 2.4 MiB as float64: several pieces per message
        try (PeerLinks links = world.peerLinks("chain", neighbours)) {
            for (int m = 0; m < messages; m++) {
                for (int peer : neighbours) {
                    org.nd4j.linalg.api.ndarray.INDArray t = org.nd4j.linalg.factory.Nd4j.rand(
                            org.nd4j.linalg.api.buffer.DataType.DOUBLE, shape).muli(1000 * me + 10 * peer + m);
                    t.putScalar(0, 0, 0, me * 100 + m);
                    links.send(peer, m, t);
                }
            }
            for (int m = 0; m < messages; m++) {
                for (int peer : neighbours) {
                    PeerLinks.Message msg = links.await(peer, "message " + m + " from rank " + peer);
                    check(msg.tag() == m, "tag " + msg.tag() + " != " + m);
                    check(java.util.Arrays.equals(msg.tensor().shape(), shape), "shape");
                    check(msg.tensor().getDouble(0, 0, 0) == peer * 100 + m, "first element of message " + m + " from " + peer);
                }
            }
            // float32, a single element, and a strided view are sent as contiguous copies
            for (int peer : neighbours) {
                links.send(peer, 99, org.nd4j.linalg.factory.Nd4j.createFromArray(new float[] {me + 0.5f}).reshape(1, 1));
                links.send(peer, 100, org.nd4j.linalg.factory.Nd4j.arange(12).reshape(3, 4).castTo(
                        org.nd4j.linalg.api.buffer.DataType.FLOAT).transpose());
            }
            for (int peer : neighbours) {
                PeerLinks.Message one = links.await(peer, "scalar");
                check(one.tag() == 99 && one.tensor().getFloat(0, 0) == peer + 0.5f, "scalar from " + peer);
                PeerLinks.Message view = links.await(peer, "view");
                check(view.tensor().getFloat(1, 2) == 9f && view.tensor().rows() == 4, "transposed view from " + peer);
            }
            System.out.println("BYTES " + links.bytesSent() + " " + links.bytesReceived());
        }
        world.barrier();
        System.out.println("OK");
        return 0;
    }

    /** Rank 1 never sends: rank 0 fails within the timeout naming rank 1 and what it waited for. */
    static int peersStall(ProcessGroup world) throws InterruptedException {
        int me = world.rank();
        try (PeerLinks links = world.peerLinks("stall", me == 0 ? 1 : 0)) {
            if (me == 1) {
                Thread.sleep(Long.getLong("stall.ms", 8000));
                System.out.println("OK");
                return 0;
            }
            long start = System.nanoTime();
            try {
                links.await(1, "activation of micro-batch 0 from stage 1");
            } catch (CollectiveException e) {
                return failed(e, start);
            }
        }
        System.out.println("OK");
        return 0;
    }

    /**
     * AllReduces of float64 data, each checked, until rank 0 sees the file named by {@code -Dstop.file} or after
     * {@code -Dsteady.rounds} (everyone learns it from a flag AllReduce, so all stop at the same call); for tests that
     * disturb a running job. Round r's inputs repeat every 35 rounds, so its result is round r % 35's.
     */
    static int steady(ProcessGroup world) throws java.io.IOException {
        java.nio.file.Path stop = java.nio.file.Path.of(System.getProperty("stop.file", "/nonexistent"));
        int maxRounds = Integer.getInteger("steady.rounds", Integer.MAX_VALUE);
        int n = world.size();
        ByteBuffer flag = ByteBuffer.allocateDirect(4).order(ByteOrder.nativeOrder());
        long deadline = System.nanoTime() + java.util.concurrent.TimeUnit.MINUTES.toNanos(2);
        int rounds = 0;
        while (true) {
            flag.putFloat(0, world.rank() == 0 && (java.nio.file.Files.exists(stop) || rounds >= maxRounds) ? 1 : 0);
            world.allReduce(FlatBuffer.of(flag, ElementType.FLOAT32), ReduceOp.SUM);
            if (flag.getFloat(0) > 0 || System.nanoTime() > deadline) {
                break;
            }
            int length = 50_001 + rounds % 7;
            ByteBuffer buffer = input(ElementType.FLOAT64, world.rank(), length, 20 + rounds % 5);
            world.allReduce(FlatBuffer.of(buffer, ElementType.FLOAT64), ReduceOp.SUM);
            checkReduced(buffer, ElementType.FLOAT64, n, length, 20 + rounds % 5, ReduceOp.SUM, 0, length, "round " + rounds);
            System.out.println("CRC round " + rounds + " " + crc(buffer));
            rounds++;
        }
        System.out.println("ROUNDS " + rounds);
        System.out.println("DROPPED " + world.udpDatagramsDropped());
        System.out.println("OK");
        return 0;
    }

    /** A few AllReduces (for the two-host test over UDP). */
    static int udp(ProcessGroup world) {
        int n = world.size();
        for (int length : new int[] {3, 1001, 300_001}) {
            ByteBuffer buffer = input(ElementType.FLOAT32, world.rank(), length, 7);
            world.allReduce(FlatBuffer.of(buffer, ElementType.FLOAT32), ReduceOp.SUM);
            checkReduced(buffer, ElementType.FLOAT32, n, length, 7, ReduceOp.SUM, 0, length, "udp allReduce " + length);
            System.out.println("CRC udp " + length + " " + crc(buffer));
        }
        System.out.println("OK");
        return 0;
    }

    private static int failed(CollectiveException e, long startNs) {
        System.out.println("FAILED after " + (System.nanoTime() - startNs) / 1_000_000 + " ms: " + e.getMessage().replace('\n', ' '));
        System.out.flush();
        return 3;
    }

    // ---------------------------------------------------------------------------------------------------------

    /** Rank r's test input: values of mixed sign and magnitude, so the order of additions changes the bits. */
    static ByteBuffer input(ElementType type, int rank, int length, int seed) {
        ByteBuffer buffer = ByteBuffer.allocateDirect(length * type.bytes()).order(ByteOrder.nativeOrder());
        SplittableRandom random = new SplittableRandom(seed * 1_000_003L + rank * 7919L + length);
        for (int i = 0; i < length; i++) {
            double value = random.nextGaussian() * Math.pow(10, random.nextInt(-3, 4));
            if (type == ElementType.FLOAT32) {
                buffer.putFloat(i * 4, (float) value);
            } else {
                buffer.putDouble(i * 8, value);
            }
        }
        return buffer;
    }

    /** Checks {@code result[i]} (for inputs [from, from+count)) element by element against a float64 sum. */
    static void checkReduced(ByteBuffer result, ElementType type, int n, int length, int seed, ReduceOp op, int from, int count, String what) {
        ByteBuffer[] inputs = new ByteBuffer[n];
        for (int r = 0; r < n; r++) {
            inputs[r] = input(type, r, length, seed);
        }
        for (int i = 0; i < count; i++) {
            double exact = 0;
            double magnitude = 0;
            for (int r = 0; r < n; r++) {
                double x = type == ElementType.FLOAT32 ? inputs[r].getFloat((from + i) * 4) : inputs[r].getDouble((from + i) * 8);
                exact += x;
                magnitude += Math.abs(x);
            }
            if (op == ReduceOp.AVG) {
                exact /= n;
                magnitude /= n;
            }
            double got = type == ElementType.FLOAT32 ? result.getFloat(i * 4) : result.getDouble(i * 8);
            double tolerance = type == ElementType.FLOAT32 ? 2 * n * Math.ulp((float) magnitude) : 2 * n * Math.ulp(magnitude);
            check(Math.abs(got - exact) <= tolerance, what + ": element " + (from + i) + " is " + got + ", float64 sum "
                    + exact + " (tolerance " + tolerance + ")");
        }
    }

    static long crc(ByteBuffer buffer) {
        CRC32 crc = new CRC32();
        crc.update(buffer.duplicate().clear());
        return crc.getValue();
    }

    static void check(boolean condition, String message) {
        if (!condition) {
            throw new AssertionError(message);
        }
    }
}
