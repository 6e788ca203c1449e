package io.dtrain.parallel.rendezvous;

import io.dtrain.parallel.log.RateLimitedLog;
import io.dtrain.parallel.log.Untrusted;
import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.SocketException;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.SynchronousQueue;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The rendezvous store: a small TCP key/value store with blocking gets, like torch's TCPStore. Workers prove
 * they know the job secret with an HMAC challenge-response (the secret never crosses the wire); a worker with
 * another job id or a wrong secret is refused and logged.
 *
 * <p>It holds its ground against strangers and mistakes: each rank belongs to the first process that joins with it
 * (a worker opens several connections, all with its process's member id); another process claiming a taken rank
 * (say a stale worker restarted by hand) is refused with the reason, logged, and the real rank is unaffected. Ranks are
 * handed over only by a new restart round ({@link #newRound}): the launcher on node 0 starts one when every node's
 * launcher has stopped its workers; it forgets the workers' keys and ranks, closes the old round's connections, and
 * from then on refuses workers of any other round. The launchers themselves join as agents ({@code rank = -1 - node})
 * and keep their keys ({@link #AGENT_PREFIX}) across rounds. A connection must complete the handshake within a few
 * seconds or it is closed; handshakes run on a small bounded pool and only authenticated connections get a thread
 * of their own (at most {@link RankHolders#CONNECTIONS_PER_RANK} per rank); whatever a client sends is logged only through
 * {@link Untrusted#quote}, and refusals are logged at most once per {@link #LOG_INTERVAL_S} s per kind.
 *
 * <p>This class is the connections: accepting, the handshake, refusals, and serving an accepted connection's
 * requests; what is stored and the requests on it are {@link KeyValueStore}'s, who holds which rank in which restart
 * round {@link RankHolders}'.
 *
 * <p>When an authenticated worker's connection drops without a goodbye (its process died), the store sets
 * {@code fail/<rank>} so the other workers abort their collectives at once instead of waiting for a timeout.
 */
public final class RendezvousServer implements AutoCloseable {
    /** Keys under this prefix report failed ranks: {@code fail/<rank>} = message. */
    public static final String FAIL_PREFIX = "fail/";
    /** Keys under this prefix name ranks whose connection dropped without a goodbye: {@code lost/<rank>}. */
    public static final String LOST_PREFIX = "lost/";
    /** Why a worker that proved the secret was refused: {@code refused/<rank>} = reason (the others stop waiting). */
    public static final String REFUSED_PREFIX = "refused/";
    /** Keys of the node launchers (agents); kept across restart rounds. */
    public static final String AGENT_PREFIX = "agent/";
    /** A connection that has not completed the handshake after this long is closed. */
    public static final Duration HANDSHAKE_TIMEOUT = Duration.ofSeconds(5);
    /** Handshakes in progress at once; connections beyond are closed at once (a worker retries). */
    static final int MAX_HANDSHAKES = 16;
    static final long LOG_INTERVAL_S = 10;

    private static final Logger log = LoggerFactory.getLogger(RendezvousServer.class);

    private final ServerSocket serverSocket;
    private final String jobId;
    private final byte[] secret;
    private final int worldSize;
    private final Duration handshakeTimeout;
    private final KeyValueStore store = new KeyValueStore();
    private final RankHolders ranks = new RankHolders();
    private final Set<Socket> connections = ConcurrentHashMap.newKeySet();
    /** Accepted workers' connections and their round: {@link #newRound} closes those of earlier rounds. */
    private final Map<Socket, Integer> workerConnections = new ConcurrentHashMap<>();
    private final Thread acceptor;
    private final ThreadPoolExecutor handshakes;
    private final ScheduledExecutorService handshakeDeadlines;
    /** Refusals of peers that did not prove the secret (strangers, other jobs) and of the job's own workers, apart. */
    private final RateLimitedLog refusedLog = new RateLimitedLog(log, LOG_INTERVAL_S, TimeUnit.SECONDS);
    private final RateLimitedLog refusedWorkerLog = new RateLimitedLog(log, LOG_INTERVAL_S, TimeUnit.SECONDS);
    private final RateLimitedLog timeoutLog = new RateLimitedLog(log, LOG_INTERVAL_S, TimeUnit.SECONDS);
    private final RateLimitedLog overloadLog = new RateLimitedLog(log, LOG_INTERVAL_S, TimeUnit.SECONDS);
    private final AtomicLong refused = new AtomicLong();
    private final AtomicLong timedOut = new AtomicLong();
    private volatile boolean closed;

    private RendezvousServer(ServerSocket serverSocket, String jobId, byte[] secret, int worldSize, Duration handshakeTimeout) {
        this.serverSocket = serverSocket;
        this.jobId = jobId;
        this.secret = secret.clone();
        this.worldSize = worldSize;
        this.handshakeTimeout = handshakeTimeout;
        this.acceptor = new Thread(this::acceptLoop, "dtrain-rendezvous-accept");
        this.acceptor.setDaemon(true);
        this.handshakes = new ThreadPoolExecutor(0, MAX_HANDSHAKES, 30, TimeUnit.SECONDS, new SynchronousQueue<>(),
                daemon("dtrain-rendezvous-handshake"));
        this.handshakeDeadlines = Executors.newSingleThreadScheduledExecutor(daemon("dtrain-rendezvous-deadline"));
    }

    /** Binds {@code bind} (port 0: any free port) and starts serving the job's {@code worldSize} ranks. */
    public static RendezvousServer start(InetSocketAddress bind, String jobId, byte[] secret, int worldSize) throws IOException {
        return start(bind, jobId, secret, worldSize, HANDSHAKE_TIMEOUT);
    }

    static RendezvousServer start(InetSocketAddress bind, String jobId, byte[] secret, int worldSize, Duration handshakeTimeout)
            throws IOException {
        if (worldSize < 1) {
            throw new IllegalArgumentException("world size must be >= 1, got " + worldSize);
        }
        ServerSocket socket = new ServerSocket();
        socket.setReuseAddress(true);
        try {
            socket.bind(bind, 128);
        } catch (java.net.BindException e) {
            socket.close();
            if (String.valueOf(e.getMessage()).contains("in use")) {
                throw new RendezvousException("the rendezvous store cannot listen on port " + bind.getPort() + ": it is"
                        + " in use on this host (another dtrain job, or another program, may be running: ss -ltnp"
                        + " 'sport = :" + bind.getPort() + "' names it); choose another port: dtrain launch --rdzv HOST:PORT,"
                        + " or MASTER_PORT", e);
            }
            throw new IOException("rendezvous store cannot listen on " + bind + ": " + e.getMessage(), e);
        } catch (IOException e) {
            socket.close();
            throw new IOException("rendezvous store cannot listen on " + bind + ": " + e.getMessage()
                    + " (is MASTER_PORT in use by another job? choose a free port)", e);
        }
        RendezvousServer server = new RendezvousServer(socket, jobId, secret, worldSize, handshakeTimeout);
        server.acceptor.start();
        log.info("rendezvous store for job {} ({} ranks) listening on {}", jobId, worldSize, socket.getLocalSocketAddress());
        return server;
    }

    public int port() {
        return serverSocket.getLocalPort();
    }

    /** Connections refused so far (wrong job, secret, world size or rank; a rank already taken; overload). */
    public long refusedConnections() {
        return refused.get();
    }

    /** Connections closed because they did not complete the handshake in time. */
    public long timedOutHandshakes() {
        return timedOut.get();
    }

    private static ThreadFactory daemon(String name) {
        return r -> {
            Thread t = new Thread(r, name);
            t.setDaemon(true);
            return t;
        };
    }

    private void acceptLoop() {
        while (!closed) {
            Socket socket;
            try {
                socket = serverSocket.accept();
            } catch (IOException e) {
                if (!closed) {
                    log.warn("rendezvous accept failed: {}", e.toString());
                }
                continue;
            }
            connections.add(socket);
            try {
                handshakes.execute(() -> serve(socket));
            } catch (RejectedExecutionException e) {
                refused.incrementAndGet();
                overloadLog.warn("rendezvous store closed a connection from {}: {} handshakes already in progress",
                        socket.getRemoteSocketAddress(), MAX_HANDSHAKES);
                closeQuietly(socket);
            }
        }
    }

    /** On a handshake thread: authenticates, then hands an accepted connection to a thread of its own. */
    private void serve(Socket socket) {
        ScheduledFuture<?> deadline = handshakeDeadlines.schedule(() -> {
            timedOut.incrementAndGet();
            timeoutLog.warn("rendezvous store closed {}: no complete handshake within {} ms",
                    socket.getRemoteSocketAddress(), handshakeTimeout.toMillis());
            closeQuietly(socket);
        }, handshakeTimeout.toMillis(), TimeUnit.MILLISECONDS);
        Joined joined = null;
        try {
            socket.setTcpNoDelay(true);
            socket.setSoTimeout((int) handshakeTimeout.toMillis());
            DataInputStream in = new DataInputStream(new BufferedInputStream(socket.getInputStream()));
            DataOutputStream out = new DataOutputStream(new BufferedOutputStream(socket.getOutputStream()));
            joined = handshake(socket, in, out);
            if (joined != null && deadline.cancel(false)) {
                socket.setSoTimeout(0);
                Joined member = joined;
                if (!member.agent()) {
                    workerConnections.put(socket, member.round);
                }
                Thread handler = new Thread(() -> serveMember(socket, member, in, out),
                        "dtrain-rendezvous-rank-" + member.rank);
                handler.setDaemon(true);
                handler.start();
                return;
            }
        } catch (IOException | RuntimeException e) {
            if (!closed && !deadline.isDone()) {
                refused.incrementAndGet();
                refusedLog.warn("rendezvous store: handshake with {} failed: {}", socket.getRemoteSocketAddress(),
                        Untrusted.quote(e.toString(), 160));
            }
        }
        deadline.cancel(false);
        if (joined != null) {
            ranks.leave(joined.rank, joined.round); // accepted, but the deadline closed it first
        }
        connections.remove(socket);
        closeQuietly(socket);
    }

    /** An accepted connection: a worker's ({@code rank >= 0}) of restart round {@code round}, or an agent's. */
    private record Joined(int rank, int round, byte[] memberId) {
        boolean agent() {
            return rank < 0;
        }
    }

    /** One authenticated connection: requests until goodbye or until it drops. */
    private void serveMember(Socket socket, Joined member, DataInputStream in, DataOutputStream out) {
        boolean goodbye = false;
        try (socket) {
            if (!member.agent() && member.round != round()) {
                return; // newRound ran between the handshake and here
            }
            while (true) {
                byte op = in.readByte();
                if (op == Protocol.BYE) {
                    goodbye = true;
                    out.writeByte(Protocol.OK);
                    out.flush();
                    return;
                }
                store.handle(op, in, out);
                out.flush();
            }
        } catch (EOFException | SocketException e) {
            // connection dropped: handled below
        } catch (IOException | RuntimeException e) {
            if (!closed) {
                log.warn("rendezvous connection {} (rank {}) failed: {}", socket.getRemoteSocketAddress(), member.rank,
                        Untrusted.quote(e.toString(), 160));
            }
        } finally {
            connections.remove(socket);
            workerConnections.remove(socket);
            if (member.agent()) {
                if (!goodbye && !closed) {
                    log.warn("the launcher of node {} lost its rendezvous connection without saying goodbye", -1 - member.rank);
                    store.put(AGENT_PREFIX + "lost/" + (-1 - member.rank), "lost".getBytes(StandardCharsets.UTF_8));
                }
                return;
            }
            if (!ranks.leave(member.rank, member.round)) {
                return; // a worker of an earlier round, closed by newRound: nothing of the current round is affected
            }
            if (!goodbye && !closed) {
                String message = "rank " + member.rank + " lost its rendezvous connection without saying goodbye (process died or was killed)";
                log.warn(message);
                store.put(FAIL_PREFIX + member.rank, message.getBytes(StandardCharsets.UTF_8));
                store.put(LOST_PREFIX + member.rank, message.getBytes(StandardCharsets.UTF_8));
            }
        }
    }

    /**
     * Reads and checks the client's hello; returns the joined rank, or null after refusing it (logged, rate-limited,
     * with anything the client sent quoted through {@link Untrusted}).
     */
    private Joined handshake(Socket socket, DataInputStream in, DataOutputStream out) throws IOException {
        byte[] serverNonce = Protocol.nonce();
        out.writeInt(Protocol.MAGIC);
        out.writeInt(Protocol.VERSION);
        out.write(serverNonce);
        out.flush();
        int jobIdBytes = in.readUnsignedShort();
        if (jobIdBytes > Protocol.MAX_JOB_ID_BYTES) {
            refuse(socket, out, "it sent a job id of " + jobIdBytes + " bytes (not a dtrain worker of this version?)", null, null);
            return null;
        }
        String peerJobId = new String(in.readNBytes(jobIdBytes), StandardCharsets.UTF_8);
        int rank = in.readInt();
        int peerWorldSize = in.readInt();
        int peerRound = in.readInt();
        byte[] memberId = in.readNBytes(Protocol.MEMBER_ID_BYTES);
        byte[] clientNonce = in.readNBytes(Protocol.NONCE_BYTES);
        byte[] proof = in.readNBytes(Protocol.MAC_BYTES);
        if (proof.length != Protocol.MAC_BYTES) {
            throw new EOFException("handshake cut short");
        }
        String claim = "claiming rank " + rank + " of job " + Untrusted.quote(peerJobId);
        if (!peerJobId.equals(jobId)) {
            refuse(socket, out, claim + ": not this store's job '" + jobId + "'", null, null);
            return null;
        }
        if (!MessageDigest.isEqual(proof, Protocol.hmac(secret, "client", serverNonce, clientNonce, peerJobId, rank,
                peerWorldSize, peerRound, memberId))) {
            refuse(socket, out, claim + ": wrong job secret", null, null);
            return null;
        }
        // From here on the peer has proven the secret: it is one of the job's workers, and told why it is refused.
        if (peerWorldSize != worldSize) {
            refuse(socket, out, claim + ": its WORLD_SIZE is " + peerWorldSize + ", the job's is " + worldSize,
                    "WORLD_SIZE " + peerWorldSize + " differs from the job's " + worldSize + " (every worker needs the same WORLD_SIZE)",
                    rank >= 0 && rank < worldSize ? rank : null);
            return null;
        }
        boolean agent = rank < 0 && rank >= -worldSize && peerRound == Protocol.ANY_ROUND;
        if (!agent && (rank < 0 || rank >= worldSize)) {
            refuse(socket, out, claim + ": outside 0.." + (worldSize - 1),
                    "rank " + rank + " is outside 0.." + (worldSize - 1) + " (RANK, WORLD_SIZE)", null);
            return null;
        }
        String taken = agent ? null : ranks.join(rank, peerRound, memberId, String.valueOf(socket.getRemoteSocketAddress()));
        if (taken != null) {
            refuse(socket, out, claim + ": " + taken, taken, null);
            return null;
        }
        try {
            out.writeByte(1);
            out.write(Protocol.hmac(secret, "server", clientNonce, serverNonce, peerJobId, rank, peerWorldSize,
                    peerRound, memberId));
            out.flush();
        } catch (IOException e) {
            ranks.leave(rank, peerRound);
            throw e;
        }
        return new Joined(rank, peerRound, memberId);
    }

    /**
     * Starts restart round {@code next} (after every node's launcher stopped its workers): the ranks are free again,
     * the workers' keys are gone (the agents' stay), connections of earlier rounds are closed without being reported
     * as failures, and from now on only workers of round {@code next} may join.
     */
    public void newRound(int next) {
        ranks.newRound(next);
        store.retainOnly(AGENT_PREFIX);
        for (Map.Entry<Socket, Integer> e : workerConnections.entrySet()) {
            if (e.getValue() < next) {
                closeQuietly(e.getKey());
            }
        }
        log.info("rendezvous store of job {}: restart round {} begins", jobId, next);
    }

    /** The restart round whose workers may join. */
    public int round() {
        return ranks.round();
    }

    /** Logs (rate-limited) and answers a refusal; {@code toClient} null: the generic answer for a failed proof. */
    private void refuse(Socket socket, DataOutputStream out, String reason, String toClient, Integer refusedRank)
            throws IOException {
        refused.incrementAndGet();
        (toClient == null ? refusedLog : refusedWorkerLog).warn("rendezvous store refused {} {}", socket.getRemoteSocketAddress(), reason);
        if (toClient != null && refusedRank != null) {
            store.put(REFUSED_PREFIX + refusedRank, (socket.getInetAddress().getHostName() + ": " + toClient)
                    .getBytes(StandardCharsets.UTF_8));
        }
        out.writeByte(0);
        out.writeUTF(toClient != null ? "refused by the rendezvous store of job '" + jobId + "': " + toClient
                : "refused by the rendezvous store of job '" + jobId
                + "': wrong job id or secret (check DTRAIN_JOB_ID and DTRAIN_JOB_SECRET / DTRAIN_JOB_SECRET_FILE)");
        out.flush();
    }

    private static void closeQuietly(Socket socket) {
        try {
            socket.close();
        } catch (IOException ignored) {
            // closing anyway
        }
    }

    @Override
    public void close() {
        closed = true;
        handshakes.shutdownNow();
        handshakeDeadlines.shutdownNow();
        try {
            serverSocket.close();
        } catch (IOException ignored) {
            // closing anyway
        }
        for (Socket socket : connections) {
            try {
                socket.close();
            } catch (IOException ignored) {
                // closing anyway
            }
        }
        store.close();
    }
}
