package io.dtrain.parallel.rendezvous;

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
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The rendezvous store: a small TCP key/value store with blocking gets, like torch's TCPStore. Workers prove
 * they know the job secret with an HMAC challenge-response (the secret never crosses the wire); a worker with
 * another job id or a wrong secret is refused and logged.
 *
 * <p>When an authenticated worker's connection drops without a goodbye (its process died), the store sets
 * {@code fail/<rank>} so the other workers abort their collectives at once instead of waiting for a timeout.
 */
public final class RendezvousServer implements AutoCloseable {
    /** Keys under this prefix report failed ranks: {@code fail/<rank>} = message. */
    public static final String FAIL_PREFIX = "fail/";
    /** Keys under this prefix name ranks whose connection dropped without a goodbye: {@code lost/<rank>}. */
    public static final String LOST_PREFIX = "lost/";

    private static final Logger log = LoggerFactory.getLogger(RendezvousServer.class);

    private final ServerSocket serverSocket;
    private final String jobId;
    private final byte[] secret;
    private final Map<String, byte[]> store = new HashMap<>();
    private final Set<Socket> connections = ConcurrentHashMap.newKeySet();
    private final Thread acceptor;
    private volatile boolean closed;

    private RendezvousServer(ServerSocket serverSocket, String jobId, byte[] secret) {
        this.serverSocket = serverSocket;
        this.jobId = jobId;
        this.secret = secret.clone();
        this.acceptor = new Thread(this::acceptLoop, "dtrain-rendezvous-accept");
        this.acceptor.setDaemon(true);
    }

    /** Binds {@code bind} (port 0: any free port) and starts serving. */
    public static RendezvousServer start(InetSocketAddress bind, String jobId, byte[] secret) throws IOException {
        ServerSocket socket = new ServerSocket();
        socket.setReuseAddress(true);
        try {
            socket.bind(bind, 128);
        } catch (IOException e) {
            socket.close();
            throw new IOException("rendezvous store cannot listen on " + bind + ": " + e.getMessage()
                    + " (is MASTER_PORT in use by another job? choose a free port)", e);
        }
        RendezvousServer server = new RendezvousServer(socket, jobId, secret);
        server.acceptor.start();
        log.info("rendezvous store for job {} listening on {}", jobId, socket.getLocalSocketAddress());
        return server;
    }

    public int port() {
        return serverSocket.getLocalPort();
    }

    private void acceptLoop() {
        while (!closed) {
            try {
                Socket socket = serverSocket.accept();
                socket.setTcpNoDelay(true);
                connections.add(socket);
                Thread handler = new Thread(() -> serve(socket), "dtrain-rendezvous-" + socket.getRemoteSocketAddress());
                handler.setDaemon(true);
                handler.start();
            } catch (IOException e) {
                if (!closed) {
                    log.warn("rendezvous accept failed: {}", e.toString());
                }
            }
        }
    }

    private void serve(Socket socket) {
        int rank = -1;
        boolean goodbye = false;
        try (socket) {
            socket.setSoTimeout(30_000); // for the handshake only
            DataInputStream in = new DataInputStream(new BufferedInputStream(socket.getInputStream()));
            DataOutputStream out = new DataOutputStream(new BufferedOutputStream(socket.getOutputStream()));
            rank = handshake(socket, in, out);
            if (rank < 0) {
                return;
            }
            socket.setSoTimeout(0);
            while (true) {
                byte op = in.readByte();
                if (op == Protocol.BYE) {
                    goodbye = true;
                    out.writeByte(Protocol.OK);
                    out.flush();
                    return;
                }
                handle(op, in, out);
                out.flush();
            }
        } catch (EOFException | SocketException e) {
            // connection dropped: handled below
        } catch (IOException | RuntimeException e) {
            if (!closed) {
                log.warn("rendezvous connection {} (rank {}) failed: {}", socket.getRemoteSocketAddress(), rank, e.toString());
            }
        } finally {
            connections.remove(socket);
            if (rank >= 0 && !goodbye && !closed) {
                String message = "rank " + rank + " lost its rendezvous connection without saying goodbye (process died or was killed)";
                log.warn(message);
                put(FAIL_PREFIX + rank, message.getBytes(StandardCharsets.UTF_8));
                put(LOST_PREFIX + rank, message.getBytes(StandardCharsets.UTF_8));
            }
        }
    }

    /** Returns the authenticated rank, or -1 after refusing the peer. */
    private int handshake(Socket socket, DataInputStream in, DataOutputStream out) throws IOException {
        byte[] serverNonce = Protocol.nonce();
        out.writeInt(Protocol.MAGIC);
        out.writeInt(Protocol.VERSION);
        out.write(serverNonce);
        out.flush();
        String peerJobId = in.readUTF();
        int rank = in.readInt();
        byte[] clientNonce = in.readNBytes(Protocol.NONCE_BYTES);
        byte[] proof = in.readNBytes(32);
        String reason = null;
        if (!peerJobId.equals(jobId)) {
            reason = "job id '" + peerJobId + "' is not this store's job '" + jobId + "'";
        } else if (!MessageDigest.isEqual(proof, Protocol.hmac(secret, "client", serverNonce, clientNonce, peerJobId, rank))) {
            reason = "wrong job secret";
        }
        if (reason != null) {
            log.warn("rendezvous store refused {} claiming rank {}: {}", socket.getRemoteSocketAddress(), rank, reason);
            out.writeByte(0);
            out.writeUTF("refused by the rendezvous store of job '" + jobId
                    + "': wrong job id or secret (check DTRAIN_JOB_ID and DTRAIN_JOB_SECRET / DTRAIN_JOB_SECRET_FILE)");
            out.flush();
            return -1;
        }
        out.writeByte(1);
        out.write(Protocol.hmac(secret, "server", clientNonce, serverNonce, peerJobId, rank));
        out.flush();
        return rank;
    }

    private void handle(byte op, DataInputStream in, DataOutputStream out) throws IOException {
        switch (op) {
            case Protocol.SET -> {
                String key = in.readUTF();
                byte[] value = in.readNBytes(in.readInt());
                put(key, value);
                out.writeByte(Protocol.OK);
            }
            case Protocol.GET -> {
                String key = in.readUTF();
                long timeoutMs = in.readLong();
                byte[] value = await(key, timeoutMs);
                if (value == null) {
                    out.writeByte(Protocol.TIMEOUT);
                } else {
                    out.writeByte(Protocol.OK);
                    out.writeInt(value.length);
                    out.write(value);
                }
            }
            case Protocol.ADD -> {
                String key = in.readUTF();
                long delta = in.readLong();
                long result;
                synchronized (store) {
                    byte[] old = store.get(key);
                    long current = old == null ? 0 : Long.parseLong(new String(old, StandardCharsets.UTF_8));
                    result = current + delta;
                    store.put(key, Long.toString(result).getBytes(StandardCharsets.UTF_8));
                    store.notifyAll();
                }
                out.writeByte(Protocol.OK);
                out.writeLong(result);
            }
            case Protocol.PREFIX -> {
                String prefix = in.readUTF();
                List<Map.Entry<String, byte[]>> matches = new ArrayList<>();
                synchronized (store) {
                    for (Map.Entry<String, byte[]> e : store.entrySet()) {
                        if (e.getKey().startsWith(prefix)) {
                            matches.add(Map.entry(e.getKey(), e.getValue()));
                        }
                    }
                }
                out.writeByte(Protocol.OK);
                out.writeInt(matches.size());
                for (Map.Entry<String, byte[]> e : matches) {
                    out.writeUTF(e.getKey());
                    out.writeInt(e.getValue().length);
                    out.write(e.getValue());
                }
            }
            case Protocol.TIME -> {
                out.writeByte(Protocol.OK);
                out.writeLong(Protocol.epochNanos());
            }
            default -> {
                out.writeByte(Protocol.ERROR);
                out.writeUTF("unknown rendezvous op " + op);
            }
        }
    }

    private void put(String key, byte[] value) {
        synchronized (store) {
            store.put(key, value);
            store.notifyAll();
        }
    }

    private byte[] await(String key, long timeoutMs) {
        long deadline = System.nanoTime() + timeoutMs * 1_000_000L;
        synchronized (store) {
            while (true) {
                byte[] value = store.get(key);
                if (value != null || closed) {
                    return value;
                }
                long leftMs = (deadline - System.nanoTime()) / 1_000_000L;
                if (leftMs <= 0) {
                    return null;
                }
                try {
                    store.wait(leftMs);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    return null;
                }
            }
        }
    }

    @Override
    public void close() {
        closed = true;
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
        synchronized (store) {
            store.notifyAll();
        }
    }
}
