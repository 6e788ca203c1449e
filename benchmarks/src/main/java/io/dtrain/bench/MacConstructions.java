package io.dtrain.bench;

import java.nio.ByteBuffer;
import java.security.GeneralSecurityException;
import java.security.SecureRandom;
import java.util.Locale;
import javax.crypto.Cipher;
import javax.crypto.Mac;
import javax.crypto.spec.GCMParameterSpec;
import javax.crypto.spec.IvParameterSpec;
import javax.crypto.spec.SecretKeySpec;

/**
 * What authenticating one udp datagram costs with each MAC construction the JDK offers, on direct buffers as the
 * media driver has them: HMAC-SHA256, AES-GMAC (GCM over associated data only), AES-128-GCM's tag of the datagram
 * encrypted into a scratch buffer (what {@code DatagramAuthenticator} does) and ChaCha20-Poly1305 over associated
 * data. Prints GB/s and us per datagram for 64 B, 1472 B (an Ethernet datagram), 8 KiB (dtrain's mtu between hosts)
 * and 64 KiB (on loopback), best of 5 passes. {@code java -cp benchmarks/target/classes io.dtrain.bench.MacConstructions}
 */
public final class MacConstructions {
    private MacConstructions() {
    }

    public static void main(String[] args) throws GeneralSecurityException {
        byte[] key = new byte[32];
        new SecureRandom().nextBytes(key);
        System.out.printf(Locale.ROOT, "%8s %22s %22s %22s %22s%n", "bytes", "HMAC-SHA256", "AES-GMAC (AAD)",
                "AES-GCM tag (dtrain)", "ChaCha20-Poly1305");
        for (int size : new int[] {64, 1472, 8192, 65472}) {
            ByteBuffer data = ByteBuffer.allocateDirect(size);
            ByteBuffer sink = ByteBuffer.allocateDirect(size + 16);
            byte[] tag = new byte[32];
            Mac hmac = Mac.getInstance("HmacSHA256");
            hmac.init(new SecretKeySpec(key, "HmacSHA256"));
            Cipher gcm = Cipher.getInstance("AES/GCM/NoPadding");
            SecretKeySpec aes = new SecretKeySpec(key, 0, 16, "AES");
            Cipher chacha = Cipher.getInstance("ChaCha20-Poly1305");
            SecretKeySpec chachaKey = new SecretKeySpec(key, "ChaCha20");
            long[] counter = {0};
            double[] best = new double[4];
            for (int pass = 0; pass < 5; pass++) {
                long n = Math.max(2000, 200_000_000L / size);
                long t0 = System.nanoTime();
                for (long i = 0; i < n; i++) {
                    data.clear();
                    hmac.update(data);
                    hmac.doFinal(tag, 0);
                }
                long t1 = System.nanoTime();
                for (long i = 0; i < n; i++) {
                    data.clear();
                    gcm.init(Cipher.ENCRYPT_MODE, aes, new GCMParameterSpec(128, nonce(++counter[0])));
                    gcm.updateAAD(data);
                    gcm.doFinal(tag, 0);
                }
                long t2 = System.nanoTime();
                for (long i = 0; i < n; i++) {
                    data.clear();
                    sink.clear();
                    gcm.init(Cipher.ENCRYPT_MODE, aes, new GCMParameterSpec(128, nonce(++counter[0])));
                    gcm.doFinal(data, sink);
                }
                long t3 = System.nanoTime();
                for (long i = 0; i < n; i++) {
                    data.clear();
                    chacha.init(Cipher.ENCRYPT_MODE, chachaKey, new IvParameterSpec(nonce(++counter[0])));
                    chacha.updateAAD(data);
                    chacha.doFinal(tag, 0);
                }
                long t4 = System.nanoTime();
                long[] times = {t1 - t0, t2 - t1, t3 - t2, t4 - t3};
                for (int c = 0; c < 4; c++) {
                    best[c] = Math.max(best[c], (double) n * size / times[c]);
                }
            }
            System.out.printf(Locale.ROOT, "%8d", size);
            for (double gbPerS : best) {
                System.out.printf(Locale.ROOT, " %8.2f GB/s %6.2f us", gbPerS, size / gbPerS / 1e3);
            }
            System.out.println();
        }
    }

    private static byte[] nonce(long counter) {
        return ByteBuffer.allocate(12).putLong(4, counter).array();
    }
}
