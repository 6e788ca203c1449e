package io.dtrain.parallel.transport;

import io.aeron.protocol.HeaderFlyweight;
import io.dtrain.parallel.log.RateLimitedLog;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.InvalidAlgorithmParameterException;
import java.security.SecureRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import javax.crypto.Cipher;
import javax.crypto.spec.GCMParameterSpec;
import javax.crypto.spec.SecretKeySpec;
import org.agrona.collections.Long2ObjectHashMap;
import org.agrona.concurrent.UnsafeBuffer;
import org.agrona.concurrent.status.AtomicCounter;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Seals and checks the datagrams of one authenticated Aeron udp endpoint (see {@link UdpAuthentication} for the keys).
 *
 * <p>A sealed datagram is the Aeron datagram as it was, then a 28-byte trailer: a 12-byte nonce (4 random bytes per
 * sender, an 8-byte counter: never repeated under a key) and a 16-byte tag. The tag is AES-128-GCM's over the whole
 * datagram (every frame header in it: session, stream, term id and offset, that is the stream's sequence number, and
 * every payload byte) under the stream's key, chosen by measurement: GCM runs on the JDK's AES-NI/CLMUL (AVX-512 where
 * present) intrinsics, 4-8 GB/s on 64 KiB datagrams where HMAC-SHA256 and AES-GMAC over associated data ran at ~2
 * and ChaCha20-Poly1305 at 0.6 (benchmarks/RESULTS.md). The datagram is encrypted into a scratch buffer only to
 * get the tag; the plaintext is what goes on the wire (integrity, not secrecy).
 *
 * <p>A datagram is dropped before Aeron sees it when it is too short, of a frame type dtrain does not send, its tag
 * does not match, or its counter was seen before or is more than {@link #WINDOW} behind the newest (a replay; Aeron's
 * own retransmissions are new datagrams with new counters). Each drop is counted on the endpoint's counter (visible to
 * every client of the driver) and logged, at most one line per 10 s. Since a forged datagram never reaches Aeron's
 * term buffers, the real one still arrives: an attack costs bandwidth, never a wrong gradient or a lost frame.
 */
final class DatagramAuthenticator {
    static final int NONCE_BYTES = 12;
    static final int TAG_BYTES = 16;
    static final int TRAILER_BYTES = NONCE_BYTES + TAG_BYTES;
    static final byte DATA = 'D';
    static final byte CONTROL = 'C';
    /** Counters a datagram may be behind the newest seen and still be accepted once (reordering on the network). */
    static final int WINDOW = 4096;
    private static final int MAX_DATAGRAM = 65_536;

    private static final Logger log = LoggerFactory.getLogger(DatagramAuthenticator.class);
    private static final RateLimitedLog dropLog = new RateLimitedLog(log, 10, TimeUnit.SECONDS);
    private static final SecureRandom RANDOM = new SecureRandom();
    /** Tests only: a directory where the first sealed data datagrams are written (to replay them at a job). */
    private static final Path CAPTURE = System.getProperty("dtrain.test.captureDatagrams") == null ? null
            : Path.of(System.getProperty("dtrain.test.captureDatagrams"));
    private static final AtomicInteger captured = new AtomicInteger();

    private final byte[] jobKey;
    private final byte[] salt;
    private final byte sendDirection;
    private final byte receiveDirection;
    private final AtomicCounter dropped;
    private final String where;
    /** Tests: whether this endpoint's sealed data datagrams are written to {@link #CAPTURE} (never the warm-up's). */
    private final boolean captures;
    private final Long2ObjectHashMap<Stream> streams = new Long2ObjectHashMap<>();
    private final ByteBuffer sealed = ByteBuffer.allocateDirect(MAX_DATAGRAM + TRAILER_BYTES).order(ByteOrder.LITTLE_ENDIAN);
    private final ByteBuffer sink = ByteBuffer.allocateDirect(MAX_DATAGRAM + TAG_BYTES);
    private final ByteBuffer trailerBuffer = ByteBuffer.allocateDirect(TRAILER_BYTES);
    private final byte[] nonce = new byte[NONCE_BYTES];
    private final byte[] tag = new byte[TAG_BYTES];

    /**
     * @param sendDirection    {@link #DATA} for a publication's endpoint (it receives {@link #CONTROL}), and vice versa
     * @param dropped          counts dropped datagrams (allocated by the endpoint on the conductor thread)
     */
    DatagramAuthenticator(byte[] jobKey, byte[] salt, byte sendDirection, AtomicCounter dropped, String where) {
        this(jobKey, salt, sendDirection, dropped, where, CAPTURE != null);
    }

    /** One that is only exercised (the driver's warm-up): nothing captured. */
    static DatagramAuthenticator forWarmUp(byte[] jobKey, byte[] salt, byte sendDirection, AtomicCounter dropped) {
        return new DatagramAuthenticator(jobKey, salt, sendDirection, dropped, "warm-up", false);
    }

    private DatagramAuthenticator(byte[] jobKey, byte[] salt, byte sendDirection, AtomicCounter dropped, String where,
                                  boolean captures) {
        this.captures = captures;
        this.jobKey = jobKey;
        this.salt = salt;
        this.sendDirection = sendDirection;
        this.receiveDirection = sendDirection == DATA ? CONTROL : DATA;
        this.dropped = dropped;
        this.where = where;
    }

    /** Keys and counters of one stream (session, stream id) of this endpoint, both directions. */
    private final class Stream {
        final SecretKeySpec sendKey;
        final SecretKeySpec receiveKey;
        final Cipher sendCipher;
        final Cipher receiveCipher;
        final int instance = RANDOM.nextInt();
        long nextCounter;
        boolean seen;
        int peerInstance;
        long newest = -1;
        final long[] window = new long[WINDOW / 64];

        Stream(int sessionId, int streamId) {
            sendKey = new SecretKeySpec(UdpAuthentication.streamKey(jobKey, salt, sessionId, streamId, sendDirection), "AES");
            receiveKey = new SecretKeySpec(UdpAuthentication.streamKey(jobKey, salt, sessionId, streamId, receiveDirection), "AES");
            try {
                sendCipher = Cipher.getInstance("AES/GCM/NoPadding");
                receiveCipher = Cipher.getInstance("AES/GCM/NoPadding");
            } catch (GeneralSecurityException e) {
                throw new IllegalStateException("AES/GCM unavailable", e);
            }
        }

        boolean replayed(int instance, long counter) {
            if (!seen) {
                return false;
            }
            if (instance != peerInstance || counter < 0 || newest - counter >= WINDOW) {
                return true;
            }
            return counter <= newest && (window[bit(counter) >>> 6] & (1L << bit(counter))) != 0;
        }

        void accept(int instance, long counter) {
            if (!seen) {
                seen = true;
                peerInstance = instance;
            }
            if (counter > newest) {
                if (counter - newest >= WINDOW) {
                    java.util.Arrays.fill(window, 0);
                } else {
                    for (long c = newest + 1; c < counter; c++) {
                        window[bit(c) >>> 6] &= ~(1L << bit(c));
                    }
                }
                newest = counter;
            }
            window[bit(counter) >>> 6] |= 1L << bit(counter);
        }

        private int bit(long counter) {
            return (int) (counter & (WINDOW - 1));
        }
    }

    private Stream stream(int sessionId, int streamId) {
        long key = ((long) sessionId << 32) | (streamId & 0xFFFF_FFFFL);
        Stream stream = streams.get(key);
        if (stream == null) {
            stream = new Stream(sessionId, streamId);
            streams.put(key, stream);
        }
        return stream;
    }

    /**
     * The datagram {@code [position, limit)} of {@code datagram} with its trailer, in a scratch buffer ready to send
     * (valid until the next call). {@code datagram}'s position moves to its limit, as a send would.
     */
    ByteBuffer seal(ByteBuffer datagram) {
        ByteBuffer trailer = trailer(datagram);
        sealed.clear();
        sealed.put(datagram);
        sealed.put(trailer);
        sealed.flip();
        return sealed;
    }

    /**
     * The trailer of the datagram {@code [position, limit)} of {@code datagram} (left as it is), in a scratch buffer
     * ready to send right after it, e.g. by a gathering write (valid until the next call): no copy of the datagram.
     */
    ByteBuffer trailer(ByteBuffer datagram) {
        int length = datagram.remaining();
        int at = datagram.position();
        ByteBuffer view = datagram.duplicate().order(ByteOrder.LITTLE_ENDIAN);
        int type = view.getShort(at + HeaderFlyweight.TYPE_FIELD_OFFSET) & 0xFFFF;
        int idsAt = at + idsOffset(type);
        Stream stream = stream(view.getInt(idsAt), view.getInt(idsAt + 4));
        long counter = stream.nextCounter++;
        ByteBuffer.wrap(nonce).putInt(stream.instance).putLong(counter);
        view.limit(at + length).position(at);
        computeTag(stream.sendCipher, stream.sendKey, view.slice(), length);
        trailerBuffer.clear();
        trailerBuffer.put(nonce).put(tag).flip();
        if (captures && type == HeaderFlyweight.HDR_TYPE_DATA && length > 256) {
            capture(view.slice(), trailerBuffer.duplicate());
        }
        return trailerBuffer;
    }

    /**
     * Null if the datagram of {@code length} bytes (trailer included) in {@code buffer} is authentic and new, else why
     * not, after counting and logging the drop.
     */
    String verify(UnsafeBuffer buffer, int length, InetSocketAddress from) {
        String reason = check(buffer, length);
        if (reason != null) {
            long total = dropped.incrementOrdered() + 1;
            dropLog.warn("dropped a udp datagram of {} bytes from {} at {}: {} ({} dropped here so far)", length, from,
                    where, reason, total);
        }
        return reason;
    }

    private String check(UnsafeBuffer buffer, int length) {
        int frames = length - TRAILER_BYTES;
        if (frames < HeaderFlyweight.MIN_HEADER_LENGTH) {
            return "too short to carry a frame and its authentication";
        }
        int type = buffer.getShort(HeaderFlyweight.TYPE_FIELD_OFFSET, ByteOrder.LITTLE_ENDIAN) & 0xFFFF;
        if (!expected(type)) {
            return "frame type " + type + " is not one this endpoint receives";
        }
        int idsAt = idsOffset(type);
        if (frames < idsAt + 8) {
            return "too short for its frame type";
        }
        Stream stream = stream(buffer.getInt(idsAt, ByteOrder.LITTLE_ENDIAN), buffer.getInt(idsAt + 4, ByteOrder.LITTLE_ENDIAN));
        int instance = buffer.getInt(frames, ByteOrder.BIG_ENDIAN);
        long counter = buffer.getLong(frames + 4, ByteOrder.BIG_ENDIAN);
        if (stream.replayed(instance, counter)) {
            return "replayed (its counter was seen before, is too old or from another sender)";
        }
        buffer.getBytes(frames, nonce);
        ByteBuffer in = buffer.byteBuffer().duplicate();
        in.limit(frames).position(0);
        try {
            computeTag(stream.receiveCipher, stream.receiveKey, in, frames);
        } catch (IllegalStateException reused) {
            return "replayed (the same nonce twice in a row)";
        }
        int difference = 0;
        for (int i = 0; i < TAG_BYTES; i++) {
            difference |= tag[i] ^ buffer.getByte(frames + NONCE_BYTES + i);
        }
        if (difference != 0) {
            return "authentication tag does not match (not sent by this job's workers for this stream, or altered)";
        }
        stream.accept(instance, counter);
        return null;
    }

    /** GCM's tag of {@code data[0, length)} under {@code key} and {@link #nonce}, into {@link #tag}. */
    private void computeTag(Cipher cipher, SecretKeySpec key, ByteBuffer data, int length) {
        try {
            cipher.init(Cipher.ENCRYPT_MODE, key, new GCMParameterSpec(TAG_BYTES * 8, nonce));
            ByteBuffer input = data.duplicate();
            input.limit(length).position(0);
            sink.clear();
            cipher.doFinal(input, sink);
            sink.get(length, tag);
        } catch (InvalidAlgorithmParameterException reused) {
            throw new IllegalStateException("nonce reused", reused);
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("AES/GCM failed", e);
        }
    }

    /** The offset of the session id (the stream id follows) in a frame of {@code type}. */
    private static int idsOffset(int type) {
        return switch (type) {
            case HeaderFlyweight.HDR_TYPE_PAD, HeaderFlyweight.HDR_TYPE_DATA, HeaderFlyweight.HDR_TYPE_SETUP -> 12;
            default -> 8;
        };
    }

    /** The frame types this endpoint's peer sends: data, padding and setup to subscriptions, the rest back. */
    private boolean expected(int type) {
        return receiveDirection == DATA
                ? type == HeaderFlyweight.HDR_TYPE_DATA || type == HeaderFlyweight.HDR_TYPE_PAD
                || type == HeaderFlyweight.HDR_TYPE_SETUP || type == HeaderFlyweight.HDR_TYPE_RTTM
                : type == HeaderFlyweight.HDR_TYPE_SM || type == HeaderFlyweight.HDR_TYPE_NAK
                || type == HeaderFlyweight.HDR_TYPE_RTTM || type == HeaderFlyweight.HDR_TYPE_ERR
                || type == HeaderFlyweight.HDR_TYPE_RSP_SETUP;
    }

    /** Frees the drop counter (on the conductor thread, with the endpoint's other indicators). */
    void close() {
        dropped.close();
    }

    private static void capture(ByteBuffer datagram, ByteBuffer trailer) {
        int n = captured.getAndIncrement();
        if (n >= 200) {
            return;
        }
        byte[] bytes = new byte[datagram.remaining() + trailer.remaining()];
        datagram.get(bytes, 0, datagram.remaining());
        trailer.get(bytes, bytes.length - TRAILER_BYTES, TRAILER_BYTES);
        try {
            Files.write(CAPTURE.resolve(String.format("datagram-%d-%03d.bin", ProcessHandle.current().pid(), n)), bytes);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
