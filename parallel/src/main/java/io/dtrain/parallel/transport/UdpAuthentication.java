package io.dtrain.parallel.transport;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.SecureRandom;
import java.util.HexFormat;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * Keys of the authenticated udp transport: only the job's workers can put a frame into its udp streams.
 *
 * <p>The <em>job key</em> is derived from the job secret and id (the secret itself never leaves the worker). The media
 * driver finds it in a private file its clients leave ({@link UdpKeys}), never on a command line, in a channel URI
 * or in a log. Each udp link (the receiving rank picks it) carries a fresh random salt in its channel URI
 * ({@code dtrain-auth=SALT.KEYID}, public values: the key id only tells the driver which key the link expects); every
 * stream of that link, and each direction of it, gets its own key {@code HMAC(jobKey, salt | session | stream |
 * direction)}. So a frame cannot be moved to another stream, direction, link, run or job, and a frame of an earlier
 * run of the same job fails too: its link had another salt. What a datagram carries and how it is checked is
 * {@link DatagramAuthenticator}.
 */
public final class UdpAuthentication {
    /** The channel URI parameter that asks the driver for an authenticated endpoint. */
    public static final String CHANNEL_PARAM = "dtrain-auth";
    /** Type of the driver's counters of dropped datagrams, one per authenticated endpoint (AeronStat shows them). */
    public static final int DROPPED_COUNTER_TYPE_ID = 1_918;
    static final int JOB_KEY_BYTES = 32;
    static final int SALT_BYTES = 16;
    private static final SecureRandom RANDOM = new SecureRandom();

    private UdpAuthentication() {
    }

    /** The job key: HMAC-SHA256(secret, "dtrain udp job key v1" | job id). */
    public static byte[] jobKey(byte[] secret, String jobId) {
        return hmac(secret.length == 0 ? new byte[1] : secret, "dtrain udp job key v1".getBytes(StandardCharsets.UTF_8),
                jobId.getBytes(StandardCharsets.UTF_8));
    }

    /** A public name of a job key (16 hex digits), so a driver can tell that a link expects another job's key. */
    public static String keyId(byte[] jobKey) {
        return HexFormat.of().formatHex(hmac(jobKey, "key id".getBytes(StandardCharsets.UTF_8)), 0, 8);
    }

    /** The {@link #CHANNEL_PARAM} value of a new link: a fresh salt and the key id. */
    public static String newLinkParam(byte[] jobKey) {
        byte[] salt = new byte[SALT_BYTES];
        RANDOM.nextBytes(salt);
        return HexFormat.of().formatHex(salt) + "." + keyId(jobKey);
    }

    /** The key of one stream and direction of the link with {@code salt}: 16 bytes for AES-128-GCM. */
    static byte[] streamKey(byte[] jobKey, byte[] salt, int sessionId, int streamId, byte direction) {
        byte[] ids = ByteBuffer.allocate(9).putInt(sessionId).putInt(streamId).put(direction).array();
        byte[] key = hmac(jobKey, "stream".getBytes(StandardCharsets.UTF_8), salt, ids);
        return java.util.Arrays.copyOf(key, 16);
    }

    /** The job key as {@link UdpKeys} stores it (hex). */
    public static String encode(byte[] jobKey) {
        return HexFormat.of().formatHex(jobKey);
    }

    static byte[] decode(String hex) {
        byte[] key = HexFormat.of().parseHex(hex.strip());
        if (key.length != JOB_KEY_BYTES) {
            throw new IllegalArgumentException("a udp job key has " + JOB_KEY_BYTES + " bytes, got " + key.length);
        }
        return key;
    }

    private static byte[] hmac(byte[] key, byte[]... parts) {
        try {
            Mac mac = Mac.getInstance("HmacSHA256");
            mac.init(new SecretKeySpec(key, "HmacSHA256"));
            for (byte[] part : parts) {
                mac.update(part);
            }
            return mac.doFinal();
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("HmacSHA256 unavailable", e);
        }
    }
}
