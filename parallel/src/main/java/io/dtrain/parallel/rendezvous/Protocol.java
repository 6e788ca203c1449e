package io.dtrain.parallel.rendezvous;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.SecureRandom;
import java.time.Instant;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * Wire protocol of the rendezvous store (Java Data streams, big-endian).
 *
 * <pre>
 * server: int MAGIC, int VERSION, byte[32] serverNonce
 * client: UTF jobId (at most MAX_JOB_ID_BYTES), int rank, int worldSize, int round, byte[16] memberId,
 *         byte[32] clientNonce, byte[32] HMAC(secret, "client" serverNonce clientNonce jobId rank worldSize round memberId)
 * server: byte 1, byte[32] HMAC(secret, "server" clientNonce serverNonce jobId rank worldSize round memberId)
 *                                                                     accepted (client checks it)
 *      or byte 0, UTF reason                                          refused, then closed
 * then requests: byte op, arguments; replies: byte status (OK, TIMEOUT, ERROR + UTF message), result
 * </pre>
 *
 * <p>A worker's rank is 0..worldSize-1 and its round the job's restart round ({@code DTRAIN_RESTART_COUNT}); a node's
 * launcher (its agent) joins as rank {@code -1 - nodeRank} with round {@link #ANY_ROUND}.
 */
final class Protocol {
    static final int MAGIC = 0x44545256; // "DTRV"
    static final int VERSION = 3;
    /** The round an agent (a node's launcher) joins with: agents outlive rounds. */
    static final int ANY_ROUND = -1;
    static final int NONCE_BYTES = 32;
    static final int MEMBER_ID_BYTES = 16;
    static final int MAC_BYTES = 32;
    /** Job ids are short names ([A-Za-z0-9._-]+); a longer one is refused before it is read. */
    static final int MAX_JOB_ID_BYTES = 256;
    /** Values a worker stores are ring channels and small counters; a larger one is refused. */
    static final int MAX_VALUE_BYTES = 1 << 20;

    static final byte SET = 1;      // UTF key, int n, byte[n] value          -> OK
    static final byte GET = 2;      // UTF key, long timeoutMs                -> OK int n byte[n] | TIMEOUT
    static final byte ADD = 3;      // UTF key, long delta                    -> OK long newValue
    static final byte PREFIX = 4;   // UTF prefix                             -> OK int count, (UTF key, int n, byte[n])*
    static final byte TIME = 5;     //                                        -> OK long epochNanos
    static final byte BYE = 6;      //                                        -> OK, then closed

    static final byte OK = 0;
    static final byte TIMEOUT = 1;
    static final byte ERROR = 2;

    private static final SecureRandom RANDOM = new SecureRandom();

    private Protocol() {
    }

    static byte[] nonce() {
        return nonce(NONCE_BYTES);
    }

    static byte[] nonce(int bytes) {
        byte[] nonce = new byte[bytes];
        RANDOM.nextBytes(nonce);
        return nonce;
    }

    /** What a worker proves: it knows the secret, for this job, rank, world size, restart round and process. */
    static byte[] hmac(byte[] secret, String role, byte[] firstNonce, byte[] secondNonce, String jobId, int rank,
                       int worldSize, int round, byte[] memberId) {
        try {
            Mac mac = Mac.getInstance("HmacSHA256");
            // An empty secret (single-process worlds) still needs a valid key.
            mac.init(new SecretKeySpec(secret.length == 0 ? new byte[1] : secret, "HmacSHA256"));
            mac.update(role.getBytes(StandardCharsets.UTF_8));
            mac.update(firstNonce);
            mac.update(secondNonce);
            mac.update(jobId.getBytes(StandardCharsets.UTF_8));
            mac.update(ByteBuffer.allocate(12).putInt(rank).putInt(worldSize).putInt(round).array());
            mac.update(memberId);
            return mac.doFinal();
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("HmacSHA256 unavailable", e);
        }
    }

    static long epochNanos() {
        Instant now = Instant.now();
        return now.getEpochSecond() * 1_000_000_000L + now.getNano();
    }
}
