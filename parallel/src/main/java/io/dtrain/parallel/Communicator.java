package io.dtrain.parallel;

import io.aeron.Aeron;
import io.dtrain.parallel.rendezvous.RendezvousClient;
import io.dtrain.parallel.rendezvous.RendezvousServer;
import io.dtrain.parallel.transport.MediaDriverProcess;
import io.dtrain.parallel.transport.UdpKeys;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.UnknownHostException;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * How a worker joins its job, and the process-wide state behind every {@link ProcessGroup} of it: the rendezvous
 * store (hosted here on rank 0 when configured) and this rank's connections to it, the clock offset to it, every
 * rank's node id, the Aeron client on the host's media driver, and the single communication thread that runs all
 * collectives in issue order. Whether the other ranks are alive is the {@link HealthMonitor}'s business.
 */
final class Communicator implements AutoCloseable {
    private static final Logger log = LoggerFactory.getLogger(Communicator.class);

    private final WorldConfig config;
    private final RendezvousServer server;
    private final RendezvousClient store;
    /** Connected on first use ({@link #aeron}): a job whose links are all shared memory needs no media driver. */
    private Aeron aeron;
    private boolean closed;
    private final String[] nodeIds;
    private final long clockOffsetNanos;
    private final InetAddress advertiseAddress;
    private final ExecutorService commThread;
    private final Object issueLock = new Object();
    private final java.util.concurrent.locks.ReentrantLock running = new java.util.concurrent.locks.ReentrantLock();
    private final java.util.concurrent.atomic.AtomicInteger queued = new java.util.concurrent.atomic.AtomicInteger();
    private final HealthMonitor health;
    private UdpDropWatch udpDrops;

    private Communicator(WorldConfig config) {
        this.config = config;
        if (config.worldSize() == 1 && config.hostStore()) {
            server = null;
            store = null;
            nodeIds = new String[] {config.nodeId()};
            clockOffsetNanos = 0;
            advertiseAddress = InetAddress.getLoopbackAddress();
            commThread = newCommThread();
            health = new HealthMonitor(config.rank(), null, config.resolvedLogDir());
            return;
        }
        RendezvousServer startedServer = null;
        RendezvousClient connected = null;
        RendezvousClient connectedHeartbeat = null;
        try {
            if (config.hostStore() && config.rank() == 0) {
                startedServer = startServer(config);
            }
            connected = connect(config);
            connectedHeartbeat = connect(config);
            clockOffsetNanos = connected.measureClockOffsetNanos(16);
            advertiseAddress = config.advertiseAddress() != null ? InetAddress.getByName(config.advertiseAddress())
                    : connected.localAddress();
            connected.set("node/" + config.rank(), config.nodeId());
            nodeIds = new String[config.worldSize()];
            long deadline = System.nanoTime() + config.rendezvousTimeout().toNanos();
            for (int r = 0; r < nodeIds.length; r++) {
                nodeIds[r] = awaitJoined(connected, config, r, deadline);
            }
        } catch (IOException | RuntimeException e) {
            closeQuietly(connectedHeartbeat);
            closeQuietly(connected);
            closeQuietly(startedServer);
            if (e instanceof IOException io) {
                throw new UncheckedIOException(io);
            }
            throw (RuntimeException) e;
        }
        server = startedServer;
        store = connected;
        commThread = newCommThread();
        health = new HealthMonitor(config.rank(), connectedHeartbeat, config.resolvedLogDir());
    }

    /**
     * Waits until rank {@code r} joined (its node id), failing at once, naming it, if a rank reported that it failed
     * before joining ({@link #reportFailedBringUp}), was refused by the store (another WORLD_SIZE) or died.
     */
    private static String awaitJoined(RendezvousClient store, WorldConfig config, int r, long deadline) {
        while (true) {
            try {
                return store.getString("node/" + r, Duration.ofMillis(Math.max(1, Math.min(500,
                        (deadline - System.nanoTime()) / 1_000_000L))));
            } catch (io.dtrain.parallel.rendezvous.RendezvousTimeoutException e) {
                Map<String, byte[]> failed = new java.util.TreeMap<>(store.getPrefix(RendezvousServer.FAIL_PREFIX));
                failed.putAll(store.getPrefix(RendezvousServer.REFUSED_PREFIX));
                if (!failed.isEmpty()) {
                    Map.Entry<String, byte[]> first = failed.entrySet().iterator().next();
                    String rank = first.getKey().substring(first.getKey().indexOf('/') + 1);
                    String what = new String(first.getValue(), java.nio.charset.StandardCharsets.UTF_8);
                    String why = first.getKey().startsWith(RendezvousServer.REFUSED_PREFIX)
                            ? "rank " + rank + " was refused by the rendezvous store (worker on "
                            + what.substring(0, what.indexOf(": ")) + "): " + what.substring(what.indexOf(": ") + 2)
                            : what.startsWith("rank ") ? what : "rank " + rank + " " + what;
                    throw new io.dtrain.parallel.rendezvous.RendezvousException(why + "; rank " + config.rank()
                            + " stops instead of waiting for it");
                }
                if (System.nanoTime() > deadline) {
                    throw new io.dtrain.parallel.rendezvous.RendezvousTimeoutException("rank " + r + " did not join job '"
                            + config.jobId() + "' within " + config.rendezvousTimeout().toSeconds() + " s"
                            + " (DTRAIN_RENDEZVOUS_TIMEOUT): is it running, and with the same MASTER_ADDR/MASTER_PORT,"
                            + " job id and secret? The store's log (rank 0) lists refused workers");
                }
            }
        }
    }

    /**
     * A rank that fails before it joins (a bad configuration, input it cannot see) says so through the store, so that
     * the others fail at once naming it and its host instead of waiting until the rendezvous timeout. Best effort: if
     * the store cannot be reached within a few seconds, the others time out as before.
     */
    static void reportFailedBringUp(WorldConfig config, String message) {
        if (config.hostStore() && config.rank() == 0) {
            return; // this rank would have hosted the store: the others time out naming it
        }
        Duration wait = config.rendezvousTimeout().compareTo(Duration.ofSeconds(10)) < 0 ? config.rendezvousTimeout()
                : Duration.ofSeconds(10);
        try (RendezvousClient store = connect(config.withRendezvousTimeout(wait))) {
            store.set(RendezvousServer.FAIL_PREFIX + config.rank(), "on " + config.nodeId() + " failed before joining: "
                    + message);
        } catch (RuntimeException e) {
            log.debug("could not report the failure to the rendezvous store: {}", e.toString());
        }
    }

    /** Joins the job (blocks until every rank has joined, or the rendezvous timeout) and starts the heartbeat. */
    static Communicator start(WorldConfig config) {
        Communicator comm = new Communicator(config);
        comm.health.start();
        return comm;
    }

    private static RendezvousServer startServer(WorldConfig config) throws IOException {
        InetSocketAddress bind;
        try {
            bind = new InetSocketAddress(InetAddress.getByName(config.masterAddr()), config.masterPort());
            return RendezvousServer.start(bind, config.jobId(), config.secret(), config.worldSize());
        } catch (UnknownHostException e) {
            throw new IOException("MASTER_ADDR '" + config.masterAddr() + "' does not resolve", e);
        } catch (IOException e) {
            // MASTER_ADDR may name this host by an address it cannot bind (NAT, alias): listen on all interfaces.
            log.info("cannot bind {}:{} ({}), listening on all interfaces", config.masterAddr(), config.masterPort(), e.getMessage());
            return RendezvousServer.start(new InetSocketAddress(config.masterPort()), config.jobId(), config.secret(),
                    config.worldSize());
        }
    }

    private static RendezvousClient connect(WorldConfig config) {
        return RendezvousClient.connect(config.masterAddr(), config.masterPort(), config.jobId(), config.rank(),
                config.worldSize(), config.restartRound(), config.secret(), config.rendezvousTimeout());
    }

    private static Aeron connectAeron(WorldConfig config) {
        String dir = config.resolvedAeronDir().toString();
        Aeron.Context context = new Aeron.Context()
                .aeronDirectoryName(dir)
                .driverTimeoutMs(30_000) // tolerate a driver starved of CPU; deaths are detected by the store
                .errorHandler(t -> log.warn("Aeron client error: {}", t.toString()));
        if (config.externalDriver()) {
            return Aeron.connect(context);
        }
        int idleExit = Integer.parseInt(System.getenv().getOrDefault("DTRAIN_DRIVER_IDLE_EXIT", "10"));
        byte[] udpKey = config.udpJobKey();
        if (udpKey != null) {
            // Where the driver finds the key of this job's authenticated udp channels (see UdpKeys).
            UdpKeys.publish(config.resolvedAeronDir(), udpKey);
        }
        return MediaDriverProcess.ensureRunningAndConnect(config.resolvedAeronDir(), idleExit, Duration.ofSeconds(30),
                () -> registered(Aeron.connect(context), config));
    }

    /** Type of the counter every worker adds (shown by AeronStat as "dtrain worker rank R of job J"). */
    static final int WORKER_COUNTER_TYPE_ID = 1_917;

    /**
     * The driver counts a client only once it asked for something, and exits when it has counted none for a while:
     * a worker whose ring runs over shared memory would otherwise be no client at all, and lose the driver that its
     * Aeron links (pipeline, other hosts) need later. One counter per worker makes it a client from the start.
     */
    private static Aeron registered(Aeron aeron, WorldConfig config) {
        try {
            aeron.addCounter(WORKER_COUNTER_TYPE_ID, "dtrain worker rank " + config.rank() + " of job " + config.jobId());
            return aeron;
        } catch (RuntimeException e) {
            aeron.close();
            throw e;
        }
    }

    private static ExecutorService newCommThread() {
        return Executors.newSingleThreadExecutor(r -> {
            Thread t = new Thread(r, "dtrain-comm");
            t.setDaemon(true);
            return t;
        });
    }

    // ---------------------------------------------------------------------------------------------------------

    WorldConfig config() {
        return config;
    }

    int rank() {
        return config.rank();
    }

    /**
     * The Aeron client on this host's media driver, connected (and the driver started if it is not running) on the
     * first call: only links that are not shared memory (another host, or {@code DTRAIN_TRANSPORT=ipc|udp}) ask for it,
     * so a job that runs on one host over shared memory has no driver, whose idle threads cost a third of a core.
     */
    synchronized Aeron aeron() {
        if (closed) {
            throw new IllegalStateException("rank " + config.rank() + ": the communicator is closed");
        }
        if (aeron == null) {
            aeron = connectAeron(config);
            udpDrops = new UdpDropWatch(aeron, config.rank());
        }
        return aeron;
    }

    RendezvousClient store() {
        return store;
    }

    String nodeId(int rank) {
        return nodeIds[rank];
    }

    /** Ranks of the job on this host (same node id), this one included. */
    int ranksOnThisHost() {
        int n = 0;
        for (String id : nodeIds) {
            n += id.equals(nodeId(rank())) ? 1 : 0;
        }
        return n;
    }

    /** True if ring links from {@code rank} to this rank go through a shared-memory file (same host, transport). */
    boolean sharesMemoryWith(int rank) {
        WorldConfig.Transport transport = config.transport();
        return (transport == WorldConfig.Transport.AUTO || transport == WorldConfig.Transport.SHM)
                && nodeId(rank).equals(nodeId(rank()));
    }

    InetAddress advertiseAddress() {
        return advertiseAddress;
    }

    long clockOffsetNanos() {
        return clockOffsetNanos;
    }

    ExecutorService commThread() {
        return commThread;
    }

    /**
     * Issue order across all groups: a collective is issued (its sequence number taken, and either queued for the
     * communication thread or started inline) under this lock.
     */
    Object issueLock() {
        return issueLock;
    }

    /**
     * Runs a queued collective on the communication thread: one at a time with inline ones ({@link #tryStartInline}).
     */
    void runQueued(Runnable collective) {
        running.lock();
        try {
            collective.run();
        } finally {
            queued.decrementAndGet();
            running.unlock();
        }
    }

    /** Counts a collective about to be queued (under {@link #issueLock}). */
    void queue() {
        queued.incrementAndGet();
    }

    /**
     * Under {@link #issueLock}: true if nothing is queued or running, in which case the caller now holds the right to
     * run one collective on its own thread (and must call {@link #finishInline}). A blocking call then costs no
     * hand-over to the communication thread and back: two thread wake-ups, 50-150 us each on a busy 2-core VM.
     */
    boolean tryStartInline() {
        return queued.get() == 0 && running.tryLock();
    }

    void finishInline() {
        running.unlock();
    }

    HealthMonitor health() {
        return health;
    }

    /** Udp datagrams this host's media driver dropped as not authentic (0 in a world of one). */
    synchronized long udpDatagramsDropped() {
        return udpDrops == null ? 0 : udpDrops.dropped();
    }

    @Override
    public void close() {
        close(null);
    }

    /** Closes {@code worldRing} after the last collective and before the Aeron client. */
    void close(Ring worldRing) {
        commThread.shutdown();
        try {
            if (!commThread.awaitTermination(config.timeout().toMillis() + 5_000, TimeUnit.MILLISECONDS)) {
                log.warn("communication thread still busy at close; abandoning it");
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        health.stop();
        if (store != null) {
            // Rank 0 keeps the store up until every live rank has left (at most 10 s), so that a rank still in a
            // collective learns from the store why it failed instead of only that the store is gone.
            try {
                long closed = store.add("closed", 1);
                if (server != null) {
                    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
                    while (closed + store.getPrefix(RendezvousServer.LOST_PREFIX).size() < config.worldSize()
                            && System.nanoTime() < deadline) {
                        Thread.sleep(20);
                        closed = store.add("closed", 0);
                    }
                }
            } catch (RuntimeException | InterruptedException e) {
                log.debug("close barrier: {}", e.toString());
            }
        }
        closeQuietly(worldRing);
        boolean usedDriver;
        synchronized (this) {
            closed = true;
            usedDriver = aeron != null;
            closeQuietly(udpDrops);
            closeQuietly(aeron);
        }
        if (config.worldSize() > 1) {
            config.removeShmDirectoryIfEmpty(!usedDriver);
        }
        closeQuietly(health::close);
        closeQuietly(store);
        closeQuietly(server);
    }

    private static void closeQuietly(AutoCloseable closeable) {
        if (closeable == null) {
            return;
        }
        try {
            closeable.close();
        } catch (Exception e) {
            log.debug("close: {}", e.toString());
        }
    }
}
