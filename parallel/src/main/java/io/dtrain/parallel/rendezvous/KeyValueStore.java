package io.dtrain.parallel.rendezvous;

import io.dtrain.parallel.log.Untrusted;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The rendezvous store's keys and values, and the requests an authenticated connection makes on them (set, blocking
 * get, add, prefix scan, time). One lock, the map's, on which blocking gets wait; who may send requests is the
 * {@link RendezvousServer}'s business.
 */
final class KeyValueStore {
    private final Map<String, byte[]> map = new HashMap<>();
    private boolean closed;

    void put(String key, byte[] value) {
        synchronized (map) {
            map.put(key, value);
            map.notifyAll();
        }
    }

    /** Forgets every key except those starting with {@code kept} (a new restart round keeps the agents' keys). */
    void retainOnly(String kept) {
        synchronized (map) {
            map.keySet().removeIf(key -> !key.startsWith(kept));
            map.notifyAll();
        }
    }

    /** Wakes every blocking get; they answer at once from now on (with the value, or none). */
    void close() {
        synchronized (map) {
            closed = true;
            map.notifyAll();
        }
    }

    /** Serves one request {@code op} (its arguments from {@code in}, the answer to {@code out}, not flushed). */
    void handle(byte op, DataInputStream in, DataOutputStream out) throws IOException {
        switch (op) {
            case Protocol.SET -> {
                String key = in.readUTF();
                int length = in.readInt();
                if (length < 0 || length > Protocol.MAX_VALUE_BYTES) {
                    throw new IOException("a value of " + length + " bytes for key " + Untrusted.quote(key)
                            + " (at most " + Protocol.MAX_VALUE_BYTES + ")");
                }
                put(key, in.readNBytes(length));
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
                synchronized (map) { // parseCounter's IOException ends this connection
                    byte[] old = map.get(key);
                    long current = old == null ? 0 : parseCounter(key, old);
                    result = current + delta;
                    map.put(key, Long.toString(result).getBytes(StandardCharsets.UTF_8));
                    map.notifyAll();
                }
                out.writeByte(Protocol.OK);
                out.writeLong(result);
            }
            case Protocol.PREFIX -> {
                String prefix = in.readUTF();
                List<Map.Entry<String, byte[]>> matches = new ArrayList<>();
                synchronized (map) {
                    for (Map.Entry<String, byte[]> e : map.entrySet()) {
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

    private static long parseCounter(String key, byte[] value) throws IOException {
        String text = new String(value, StandardCharsets.UTF_8);
        try {
            return Long.parseLong(text);
        } catch (NumberFormatException e) {
            throw new IOException("key " + Untrusted.quote(key) + " holds " + Untrusted.quote(text) + ", not a counter");
        }
    }

    private byte[] await(String key, long timeoutMs) {
        long deadline = System.nanoTime() + timeoutMs * 1_000_000L;
        synchronized (map) {
            while (true) {
                byte[] value = map.get(key);
                if (value != null || closed) {
                    return value;
                }
                long leftMs = (deadline - System.nanoTime()) / 1_000_000L;
                if (leftMs <= 0) {
                    return null;
                }
                try {
                    map.wait(leftMs);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    return null;
                }
            }
        }
    }
}
