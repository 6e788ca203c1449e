package io.dtrain.parallel.rendezvous;

import io.dtrain.parallel.log.Untrusted;
import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.ConnectException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.UnknownHostException;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Optional;

/** One authenticated connection to the rendezvous store. Thread-safe: requests are serialised. */
public final class RendezvousClient implements AutoCloseable {
    private static final int IO_TIMEOUT_MS = 30_000;
    /**
     * This process's identity towards the store: every connection a worker opens carries it, so the store can tell a
     * second connection of the same worker from another process claiming the same rank.
     */
    private static final byte[] PROCESS_MEMBER_ID = Protocol.nonce(Protocol.MEMBER_ID_BYTES);

    private final Socket socket;
    private final DataInputStream in;
    private final DataOutputStream out;
    private final String where;
    private boolean closed;

    private RendezvousClient(Socket socket, DataInputStream in, DataOutputStream out, String where) {
        this.socket = socket;
        this.in = in;
        this.out = out;
        this.where = where;
    }

    /**
     * Connects (retrying while the store is not up yet or its host name does not resolve yet, until
     * {@code connectTimeout}) and authenticates.
     *
     * @throws RendezvousAuthException if the store refuses the job id or secret, or cannot prove it knows the secret
     */
    public static RendezvousClient connect(String host, int port, String jobId, int rank, int worldSize, byte[] secret,
                                           Duration connectTimeout) {
        return connect(host, port, jobId, rank, worldSize, 0, secret, connectTimeout);
    }

    /** As a worker of restart round {@code round} (the launcher's DTRAIN_RESTART_COUNT; 0 without restarts). */
    public static RendezvousClient connect(String host, int port, String jobId, int rank, int worldSize, int round,
                                           byte[] secret, Duration connectTimeout) {
        return connect(host, port, new Hello(jobId, rank, worldSize, round, PROCESS_MEMBER_ID), secret, connectTimeout);
    }

    /**
     * As the launcher (agent) of node {@code nodeRank}: not a worker, so it holds no rank and outlives restart rounds;
     * it sees and sets every key.
     */
    public static RendezvousClient connectAgent(String host, int port, String jobId, int nodeRank, int worldSize,
                                                byte[] secret, Duration connectTimeout) {
        return connect(host, port, new Hello(jobId, -1 - nodeRank, worldSize, Protocol.ANY_ROUND,
                Protocol.nonce(Protocol.MEMBER_ID_BYTES)), secret, connectTimeout);
    }

    /** As {@link #connect(String, int, String, int, int, byte[], Duration)}, as the process {@code memberId}. */
    static RendezvousClient connect(String host, int port, String jobId, int rank, int worldSize, byte[] secret,
                                    Duration connectTimeout, byte[] memberId) {
        return connect(host, port, new Hello(jobId, rank, worldSize, 0, memberId), secret, connectTimeout);
    }

    /** First retry after this long; each next one waits twice as long, at most {@link #MAX_BACKOFF_MS}. */
    static final long FIRST_BACKOFF_MS = 100;
    static final long MAX_BACKOFF_MS = 5_000;

    /**
     * Connects, retrying with exponential backoff while nothing listens (the store not up yet, a host not reachable)
     * until {@code connectTimeout}, then authenticates.
     */
    private static RendezvousClient connect(String host, int port, Hello hello, byte[] secret, Duration connectTimeout) {
        String where = host + ":" + port;
        long start = System.nanoTime();
        long deadline = start + connectTimeout.toNanos();
        IOException last = null;
        int attempts = 0;
        long backoffMs = FIRST_BACKOFF_MS;
        while (attempts == 0 || System.nanoTime() < deadline) {
            Socket socket = new Socket();
            attempts++;
            try {
                socket.setTcpNoDelay(true);
                InetSocketAddress address = new InetSocketAddress(host, port);
                if (address.isUnresolved()) {
                    throw new UnknownHostException(host);   // retried: a pod's DNS name appears once the pod runs
                }
                long leftMs = Math.max(1, (deadline - System.nanoTime()) / 1_000_000L);
                socket.connect(address, (int) Math.max(1000, Math.min(10_000, leftMs)));
                socket.setSoTimeout(IO_TIMEOUT_MS);
                DataInputStream in = new DataInputStream(new BufferedInputStream(socket.getInputStream()));
                DataOutputStream out = new DataOutputStream(new BufferedOutputStream(socket.getOutputStream()));
                authenticate(in, out, hello, secret, where);
                return new RendezvousClient(socket, in, out, where);
            } catch (ConnectException | UnknownHostException | java.net.SocketTimeoutException
                     | java.net.NoRouteToHostException e) {
                // not up yet; a name may not resolve yet either (a Kubernetes pod's DNS record appears once it runs)
                last = e;
                closeQuietly(socket);
                long leftMs = (deadline - System.nanoTime()) / 1_000_000L;
                if (leftMs <= 0) {
                    break;
                }
                sleep(Math.min(backoffMs, leftMs));
                backoffMs = Math.min(MAX_BACKOFF_MS, backoffMs * 2);
            } catch (IOException e) {
                closeQuietly(socket);
                throw new UncheckedIOException("rendezvous with " + where + " failed: " + e, e);
            } catch (RuntimeException e) {
                closeQuietly(socket);
                throw e;
            }
        }
        if (last instanceof UnknownHostException) {
            throw new RendezvousTimeoutException(String.format(java.util.Locale.ROOT, "no rendezvous store at %s after"
                    + " %.0f s: the host name '%s' (MASTER_ADDR, dtrain launch --rdzv) did not resolve from this host in"
                    + " %d attempts: check its spelling, or give node 0's IP address", where,
                    (System.nanoTime() - start) / 1e9, host, attempts));
        }
        throw new RendezvousTimeoutException(String.format(java.util.Locale.ROOT, "no rendezvous store at %s: %d"
                        + " connection attempts over %.1f s (backoff %d ms doubling to %d s; DTRAIN_RENDEZVOUS_TIMEOUT %d s),"
                        + " the last one: %s; check that %s is node 0's address and %d its port (MASTER_ADDR/MASTER_PORT,"
                        + " dtrain launch --rdzv), that node 0's launcher (or rank 0) is running, and that no firewall"
                        + " blocks the port", where, attempts, (System.nanoTime() - start) / 1e9, FIRST_BACKOFF_MS,
                MAX_BACKOFF_MS / 1000, connectTimeout.toSeconds(), last == null ? "none" : last.getMessage(), host, port));
    }

    /** Who this worker (or agent) says it is in the handshake. */
    private record Hello(String jobId, int rank, int worldSize, int round, byte[] memberId) {
    }

    private static void authenticate(DataInputStream in, DataOutputStream out, Hello hello, byte[] secret, String where)
            throws IOException {
        String jobId = hello.jobId();
        int rank = hello.rank();
        if (in.readInt() != Protocol.MAGIC) {
            throw new IOException(where + " is not a dtrain rendezvous store");
        }
        int version = in.readInt();
        if (version != Protocol.VERSION) {
            throw new IOException("rendezvous store at " + where + " speaks version " + version + ", this worker " + Protocol.VERSION);
        }
        byte[] serverNonce = in.readNBytes(Protocol.NONCE_BYTES);
        byte[] clientNonce = Protocol.nonce();
        out.writeUTF(jobId);
        out.writeInt(rank);
        out.writeInt(hello.worldSize());
        out.writeInt(hello.round());
        out.write(hello.memberId());
        out.write(clientNonce);
        out.write(Protocol.hmac(secret, "client", serverNonce, clientNonce, jobId, rank, hello.worldSize(), hello.round(),
                hello.memberId()));
        out.flush();
        if (in.readByte() != 1) {
            // Not yet proven to be the job's store: its reason is shown escaped and cut.
            throw new RendezvousAuthException("rank " + rank + " of job '" + jobId + "' at " + where + ": "
                    + Untrusted.escape(in.readUTF(), 600));
        }
        byte[] serverProof = in.readNBytes(Protocol.MAC_BYTES);
        if (!MessageDigest.isEqual(serverProof, Protocol.hmac(secret, "server", clientNonce, serverNonce, jobId, rank,
                hello.worldSize(), hello.round(), hello.memberId()))) {
            throw new RendezvousAuthException("the rendezvous store at " + where + " does not know job '" + jobId
                    + "''s secret: refusing to join it (another job on the same MASTER_PORT?)");
        }
    }

    public synchronized void set(String key, byte[] value) {
        try {
            out.writeByte(Protocol.SET);
            out.writeUTF(key);
            out.writeInt(value.length);
            out.write(value);
            out.flush();
            expectOk();
        } catch (IOException e) {
            throw failed("set " + key, e);
        }
    }

    public void set(String key, String value) {
        set(key, value.getBytes(StandardCharsets.UTF_8));
    }

    /** Blocks until {@code key} is set, at most {@code timeout}. */
    public synchronized byte[] get(String key, Duration timeout) {
        Optional<byte[]> value = get(key, timeout.toMillis());
        return value.orElseThrow(() -> new RendezvousTimeoutException("rendezvous key '" + key + "' not set within "
                + timeout.toMillis() + " ms"));
    }

    public String getString(String key, Duration timeout) {
        return new String(get(key, timeout), StandardCharsets.UTF_8);
    }

    /** The value if set now. */
    public Optional<byte[]> tryGet(String key) {
        return get(key, 0);
    }

    private synchronized Optional<byte[]> get(String key, long timeoutMs) {
        try {
            socket.setSoTimeout((int) Math.min(Integer.MAX_VALUE, timeoutMs + IO_TIMEOUT_MS));
            out.writeByte(Protocol.GET);
            out.writeUTF(key);
            out.writeLong(timeoutMs);
            out.flush();
            byte status = in.readByte();
            socket.setSoTimeout(IO_TIMEOUT_MS);
            if (status == Protocol.TIMEOUT) {
                return Optional.empty();
            }
            checkOk(status);
            return Optional.of(in.readNBytes(in.readInt()));
        } catch (IOException e) {
            throw failed("get " + key, e);
        }
    }

    /** Atomically adds {@code delta} to the counter {@code key} (absent = 0) and returns the new value. */
    public synchronized long add(String key, long delta) {
        try {
            out.writeByte(Protocol.ADD);
            out.writeUTF(key);
            out.writeLong(delta);
            out.flush();
            expectOk();
            return in.readLong();
        } catch (IOException e) {
            throw failed("add " + key, e);
        }
    }

    /** All entries whose key starts with {@code prefix}. */
    public synchronized Map<String, byte[]> getPrefix(String prefix) {
        try {
            out.writeByte(Protocol.PREFIX);
            out.writeUTF(prefix);
            out.flush();
            expectOk();
            int count = in.readInt();
            Map<String, byte[]> result = new LinkedHashMap<>();
            for (int i = 0; i < count; i++) {
                String key = in.readUTF();
                result.put(key, in.readNBytes(in.readInt()));
            }
            return result;
        } catch (IOException e) {
            throw failed("prefix " + prefix, e);
        }
    }

    /**
     * The store's clock minus this process's clock (wall clock, ns), NTP-style: the sample with the smallest
     * round trip wins, its error is at most half that round trip.
     */
    public synchronized long measureClockOffsetNanos(int samples) {
        long bestRtt = Long.MAX_VALUE;
        long bestOffset = 0;
        try {
            for (int i = 0; i < samples; i++) {
                long t0 = Protocol.epochNanos();
                out.writeByte(Protocol.TIME);
                out.flush();
                expectOk();
                long server = in.readLong();
                long t1 = Protocol.epochNanos();
                if (t1 - t0 < bestRtt) {
                    bestRtt = t1 - t0;
                    bestOffset = server - (t0 + (t1 - t0) / 2);
                }
            }
            return bestOffset;
        } catch (IOException e) {
            throw failed("time", e);
        }
    }

    /** The local address this host uses to reach the store: the address peers on other hosts can reach. */
    public InetAddress localAddress() {
        return socket.getLocalAddress();
    }

    public String where() {
        return where;
    }

    /** Says goodbye (so the store does not report this rank as dead) and closes. */
    @Override
    public synchronized void close() {
        if (closed) {
            return;
        }
        closed = true;
        try {
            socket.setSoTimeout(2000);
            out.writeByte(Protocol.BYE);
            out.flush();
            in.readByte();
        } catch (IOException ignored) {
            // the store may be gone already
        } finally {
            closeQuietly(socket);
        }
    }

    private void expectOk() throws IOException {
        checkOk(in.readByte());
    }

    private void checkOk(byte status) throws IOException {
        if (status == Protocol.ERROR) {
            throw new IOException(in.readUTF());
        }
        if (status != Protocol.OK) {
            throw new IOException("unexpected rendezvous status " + status);
        }
    }

    private UncheckedIOException failed(String what, IOException e) {
        return new UncheckedIOException("rendezvous store " + where + " " + what + " failed: " + e.getMessage()
                + " (the store's host, rank 0 or the launcher, may have died)", e);
    }

    private static void closeQuietly(Socket socket) {
        try {
            socket.close();
        } catch (IOException ignored) {
            // nothing to do
        }
    }

    private static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new RendezvousTimeoutException("interrupted while connecting to the rendezvous store");
        }
    }
}
