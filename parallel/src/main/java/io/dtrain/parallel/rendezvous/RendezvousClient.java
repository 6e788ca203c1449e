package io.dtrain.parallel.rendezvous;

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
    public static RendezvousClient connect(String host, int port, String jobId, int rank, byte[] secret, Duration connectTimeout) {
        String where = host + ":" + port;
        long deadline = System.nanoTime() + connectTimeout.toNanos();
        IOException last = null;
        while (System.nanoTime() < deadline) {
            Socket socket = new Socket();
            try {
                socket.setTcpNoDelay(true);
                socket.connect(new InetSocketAddress(host, port), (int) Math.max(1000, Math.min(10_000, connectTimeout.toMillis())));
                socket.setSoTimeout(IO_TIMEOUT_MS);
                DataInputStream in = new DataInputStream(new BufferedInputStream(socket.getInputStream()));
                DataOutputStream out = new DataOutputStream(new BufferedOutputStream(socket.getOutputStream()));
                authenticate(in, out, jobId, rank, secret, where);
                return new RendezvousClient(socket, in, out, where);
            } catch (ConnectException | UnknownHostException e) {
                // not up yet; a name may not resolve yet either (a Kubernetes pod's DNS record appears once it runs)
                last = e;
                closeQuietly(socket);
                sleep(100);
            } catch (IOException e) {
                closeQuietly(socket);
                throw new UncheckedIOException("rendezvous with " + where + " failed: " + e, e);
            } catch (RuntimeException e) {
                closeQuietly(socket);
                throw e;
            }
        }
        throw new RendezvousTimeoutException("no rendezvous store at " + where + " after " + connectTimeout.toSeconds()
                + " s (" + last + "); check MASTER_ADDR/MASTER_PORT and that rank 0 (or the launcher) is running");
    }

    private static void authenticate(DataInputStream in, DataOutputStream out, String jobId, int rank, byte[] secret, String where)
            throws IOException {
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
        out.write(clientNonce);
        out.write(Protocol.hmac(secret, "client", serverNonce, clientNonce, jobId, rank));
        out.flush();
        if (in.readByte() != 1) {
            throw new RendezvousAuthException("rank " + rank + " of job '" + jobId + "' at " + where + ": " + in.readUTF());
        }
        byte[] serverProof = in.readNBytes(32);
        if (!MessageDigest.isEqual(serverProof, Protocol.hmac(secret, "server", clientNonce, serverNonce, jobId, rank))) {
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
