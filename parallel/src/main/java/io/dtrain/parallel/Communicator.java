package io.dtrain.parallel;

import io.aeron.Aeron;
import io.dtrain.parallel.rendezvous.RendezvousClient;
import io.dtrain.parallel.rendezvous.RendezvousServer;
import io.dtrain.parallel.transport.MediaDriverProcess;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.UnknownHostException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Process-wide state behind every {@link ProcessGroup} of this worker: the rendezvous store (hosted here on rank 0
 * when configured), the Aeron client on the host's media driver, the single communication thread that runs all
 * collectives in issue order, and the heartbeat thread that publishes this rank's state and watches for failed ranks.
 */
final class Communicator implements AutoCloseable {
    static final String STATUS_PREFIX = "status/";
    private static final Logger log = LoggerFactory.getLogger(Communicator.class);
    private static final long HEARTBEAT_INTERVAL_MS = 200;
    private static final long STALE_HEARTBEAT_MS = 2_000;

    private final WorldConfig config;
    private final RendezvousServer server;
    private final RendezvousClient store;
    private final RendezvousClient heartbeatStore;
    private final Aeron aeron;
    private final String[] nodeIds;
    private final long clockOffsetNanos;
    private final InetAddress advertiseAddress;
    private final ExecutorService commThread;
    private final Thread heartbeat;
    private final long killAfterFrames = Long.getLong("dtrain.test.killAfterChunks", 0);
    private long framesSent;

    private volatile Map<Integer, String> failures = Map.of();
    private volatile CollectiveException broken;
    private volatile Ring activeRing;
    private volatile boolean running;
    private volatile boolean closing;

    private Communicator(WorldConfig config) {
        this.config = config;
        if (config.worldSize() == 1 && config.hostStore()) {
            server = null;
            store = null;
            heartbeatStore = null;
            aeron = null;
            nodeIds = new String[] {config.nodeId()};
            clockOffsetNanos = 0;
            advertiseAddress = InetAddress.getLoopbackAddress();
            commThread = newCommThread();
            heartbeat = null;
            return;
        }
        RendezvousServer startedServer = null;
        RendezvousClient connected = null;
        RendezvousClient connectedHeartbeat = null;
        Aeron client = null;
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
            for (int r = 0; r < nodeIds.length; r++) {
                try {
                    nodeIds[r] = connected.getString("node/" + r, config.rendezvousTimeout());
                } catch (io.dtrain.parallel.rendezvous.RendezvousTimeoutException e) {
                    throw new io.dtrain.parallel.rendezvous.RendezvousTimeoutException("rank " + r + " did not join job '"
                            + config.jobId() + "' within " + config.rendezvousTimeout().toSeconds() + " s"
                            + " (DTRAIN_RENDEZVOUS_TIMEOUT): is it running, and with the same MASTER_ADDR/MASTER_PORT,"
                            + " job id and secret? The store's log (rank 0) lists refused workers");
                }
            }
            client = connectAeron(config);
        } catch (IOException | RuntimeException e) {
            closeQuietly(client);
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
        heartbeatStore = connectedHeartbeat;
        aeron = client;
        commThread = newCommThread();
        heartbeat = new Thread(this::heartbeatLoop, "dtrain-heartbeat");
        heartbeat.setDaemon(true);
    }

    static Communicator start(WorldConfig config) {
        Communicator comm = new Communicator(config);
        if (comm.heartbeat != null) {
            comm.heartbeat.start();
        }
        return comm;
    }

    private static RendezvousServer startServer(WorldConfig config) throws IOException {
        InetSocketAddress bind;
        try {
            bind = new InetSocketAddress(InetAddress.getByName(config.masterAddr()), config.masterPort());
            return RendezvousServer.start(bind, config.jobId(), config.secret());
        } catch (UnknownHostException e) {
            throw new IOException("MASTER_ADDR '" + config.masterAddr() + "' does not resolve", e);
        } catch (IOException e) {
            // MASTER_ADDR may name this host by an address it cannot bind (NAT, alias): listen on all interfaces.
            log.info("cannot bind {}:{} ({}), listening on all interfaces", config.masterAddr(), config.masterPort(), e.getMessage());
            return RendezvousServer.start(new InetSocketAddress(config.masterPort()), config.jobId(), config.secret());
        }
    }

    private static RendezvousClient connect(WorldConfig config) {
        return RendezvousClient.connect(config.masterAddr(), config.masterPort(), config.jobId(), config.rank(),
                config.secret(), config.rendezvousTimeout());
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

    Aeron aeron() {
        return aeron;
    }

    RendezvousClient store() {
        return store;
    }

    String nodeId(int rank) {
        return nodeIds[rank];
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

    CollectiveException broken() {
        return broken;
    }

    void started(Ring ring) {
        activeRing = ring;
        running = true;
    }

    void finished() {
        running = false;
    }

    /** Test hook: {@code -Ddtrain.test.killAfterChunks=k} SIGKILLs this process after it sent k frames. */
    void frameSent() {
        if (killAfterFrames > 0 && ++framesSent >= killAfterFrames) {
            System.err.println("dtrain.test.killAfterChunks=" + killAfterFrames + ": killing rank " + rank() + " now");
            System.err.flush();
            try {
                new ProcessBuilder("kill", "-9", Long.toString(ProcessHandle.current().pid())).start().waitFor();
                Thread.sleep(10_000);
            } catch (IOException | InterruptedException e) {
                // fall through to halt
            }
            Runtime.getRuntime().halt(137);
        }
    }

    /** The failure reported by rank {@code member}, or null. Cheap: a volatile read when healthy. */
    String failureOf(int member) {
        Map<Integer, String> current = failures;
        String reason = current.isEmpty() || member == rank() ? null : current.get(member);
        if (reason == null) {
            return null;
        }
        return reason.startsWith("rank " + member) ? reason : "rank " + member + " failed: " + reason;
    }

    /** The failure reported by any member of {@code members}, or null. Cheap: a volatile read when healthy. */
    String failureOf(int[] members) {
        if (failures.isEmpty()) {
            return null;
        }
        StringBuilder reasons = null;
        for (int member : members) {
            String reason = failureOf(member);
            if (reason != null) {
                reasons = reasons == null ? new StringBuilder() : reasons.append("; ");
                reasons.append(reason);
            }
        }
        return reasons == null ? null : reasons.toString();
    }

    /** Like {@link #failureOf} but asks the store now instead of waiting for the next heartbeat. */
    String failureOfNow(int[] members) {
        if (heartbeatStore != null) {
            try {
                updateFailures(heartbeatStore.getPrefix(RendezvousServer.FAIL_PREFIX));
            } catch (RuntimeException e) {
                log.debug("store unreachable: {}", e.toString());
            }
        }
        return failureOf(members);
    }

    private synchronized void updateFailures(Map<String, byte[]> failed) {
        if (failed.isEmpty() || failed.size() == failures.size()) {
            return;
        }
        Map<Integer, String> parsed = new HashMap<>(failures);
        failed.forEach((key, value) -> parsed.put(Integer.parseInt(key.substring(RendezvousServer.FAIL_PREFIX.length())),
                new String(value, StandardCharsets.UTF_8)));
        failures = Map.copyOf(parsed);
    }

    /**
     * Builds the error of a failed collective, logs it with a thread dump, tells the other ranks through the store
     * (when this rank saw the failure first-hand) and marks the process unusable.
     */
    CollectiveException fail(Ring ring, String reason, boolean firstHand) {
        return fail(ring.describeOp() + " in group " + ring.describeGroup() + " failed on rank " + rank() + ": " + reason,
                firstHand);
    }

    /** As above for a failure that is not a collective's (a point-to-point link, {@link PeerLinks}). */
    CollectiveException fail(String message, boolean firstHand) {
        CollectiveException error = new CollectiveException(message);
        if (broken == null) {
            broken = error;
        }
        log.error(message);
        System.err.println(threadDump("dtrain thread dump of rank " + rank() + " after: " + message));
        System.err.flush();
        if (firstHand && heartbeatStore != null) {
            try {
                heartbeatStore.set(RendezvousServer.FAIL_PREFIX + rank(), message);
            } catch (RuntimeException e) {
                log.warn("could not report the failure to the rendezvous store: {}", e.getMessage());
            }
        }
        return error;
    }

    /** What the store's heartbeats say about one rank: alive and where, stalled, or never seen. */
    String describeRank(int member) {
        Map<String, byte[]> statuses;
        try {
            statuses = heartbeatStore.getPrefix(STATUS_PREFIX);
        } catch (RuntimeException e) {
            return "the rendezvous store is unreachable (" + e.getMessage() + ")";
        }
        byte[] raw = statuses.get(STATUS_PREFIX + member);
        if (raw == null) {
            return "rank " + member + " never reported a heartbeat";
        }
        String[] f = new String(raw, StandardCharsets.UTF_8).split("\\|", 6);
        long age = System.currentTimeMillis() - Long.parseLong(f[4]);
        if (age > STALE_HEARTBEAT_MS) {
            return "rank " + member + " has sent no heartbeat for " + age + " ms (stalled or dead)";
        }
        return "rank " + member + " is alive (heartbeat " + age + " ms ago) but did not send: stalled in its own work,"
                + " or its program differs from this rank's";
    }

    /** Explains a timeout from the other members' heartbeats in the store: who is dead, stalled or elsewhere. */
    String diagnose(Ring ring) {
        Map<String, byte[]> statuses;
        try {
            statuses = heartbeatStore.getPrefix(STATUS_PREFIX);
        } catch (RuntimeException e) {
            return "rank " + ring.prevRank + " (previous in the ring) sent nothing, and the rendezvous store is"
                    + " unreachable (" + e.getMessage() + ")";
        }
        long now = System.currentTimeMillis();
        List<String> findings = new ArrayList<>();
        List<Integer> culprits = new ArrayList<>();
        for (int member : ring.members) {
            if (member == rank()) {
                continue;
            }
            byte[] raw = statuses.get(STATUS_PREFIX + member);
            if (raw == null) {
                findings.add("rank " + member + " never reported a heartbeat");
                culprits.add(member);
                continue;
            }
            // groupKey|seq|kind|state|epochMillis|name
            String[] f = new String(raw, StandardCharsets.UTF_8).split("\\|", 6);
            long age = now - Long.parseLong(f[4]);
            String where = Frame.kindName(Integer.parseInt(f[2])) + " '" + f[5] + "' #" + f[1] + " of group " + f[0];
            if (age > STALE_HEARTBEAT_MS) {
                findings.add("rank " + member + " has sent no heartbeat for " + age + " ms (stalled or dead; last in " + where + ")");
                culprits.add(member);
            } else if (f[3].equals("idle") && f[0].equals(ring.groupKey) && Long.parseLong(f[1]) >= ring.seq()) {
                continue; // it finished this collective: not the one holding it up
            } else if (f[3].equals("idle")) {
                findings.add("rank " + member + " is idle (last finished " + where + ") and has not called this collective");
                culprits.add(member);
            } else if (!f[0].equals(ring.groupKey) || Long.parseLong(f[1]) != ring.seq()
                    || Integer.parseInt(f[2]) != ring.kind() || !f[5].equals(ring.opName())) {
                findings.add("rank " + member + " is in " + where);
                culprits.add(member);
            }
        }
        if (culprits.isEmpty()) {
            return "rank " + ring.prevRank + " (previous in the ring) sent nothing although every member reports being"
                    + " in this collective (network or media driver problem?)";
        }
        return "missing or mismatched ranks " + culprits + ": " + String.join("; ", findings);
    }

    private void heartbeatLoop() {
        while (!closing) {
            try {
                Ring ring = activeRing;
                String status = ring == null
                        ? "none|-1|0|idle|" + System.currentTimeMillis() + "|"
                        : ring.groupKey + "|" + ring.seq() + "|" + ring.kind() + "|" + (running ? "running" : "idle") + "|"
                          + System.currentTimeMillis() + "|" + ring.opName();
                heartbeatStore.set(STATUS_PREFIX + rank(), status);
                updateFailures(heartbeatStore.getPrefix(RendezvousServer.FAIL_PREFIX));
                Thread.sleep(HEARTBEAT_INTERVAL_MS);
            } catch (InterruptedException e) {
                return;
            } catch (RuntimeException e) {
                if (closing) {
                    return;
                }
                // The store lives in rank 0 (or the launcher): losing it means that process died.
                String reason = "the rendezvous store " + heartbeatStore.where() + " is unreachable: rank 0 (or the"
                        + " launcher hosting it) probably died (" + e.getMessage() + ")";
                log.error(reason);
                synchronized (this) {
                    Map<Integer, String> lost = new HashMap<>(failures);
                    lost.putIfAbsent(0, reason);
                    failures = Map.copyOf(lost);
                }
                return;
            }
        }
    }

    static String threadDump(String title) {
        StringBuilder out = new StringBuilder(title).append('\n');
        for (Map.Entry<Thread, StackTraceElement[]> e : Thread.getAllStackTraces().entrySet()) {
            Thread t = e.getKey();
            out.append('"').append(t.getName()).append("\" ").append(t.isDaemon() ? "daemon " : "")
                    .append(t.getState()).append('\n');
            for (StackTraceElement frame : e.getValue()) {
                out.append("\tat ").append(frame).append('\n');
            }
        }
        return out.toString();
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
        closing = true;
        if (heartbeat != null) {
            heartbeat.interrupt();
            try {
                heartbeat.join(2_000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
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
        if (config.worldSize() > 1) {
            config.removeShmDirectoryIfEmpty();
        }
        closeQuietly(aeron);
        closeQuietly(heartbeatStore);
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
