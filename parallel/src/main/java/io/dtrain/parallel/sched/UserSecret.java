package io.dtrain.parallel.sched;

import io.dtrain.common.UserFacingException;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermission;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.GeneralSecurityException;
import java.security.SecureRandom;
import java.util.HexFormat;
import java.util.Map;
import java.util.Set;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * A job secret that needs no user action under a scheduler: HMAC-SHA256(key = the user's own secret, message = the
 * job id). The user's secret is 32 random bytes in {@code ~/.dtrain/secret} (mode 0600), created on first use;
 * clusters share home directories between nodes, so every task of a job derives the same secret, other users cannot
 * read it, and knowing a job id (public in {@code squeue}) gives nothing. {@code DTRAIN_SECRET_DIR} moves the file.
 */
public final class UserSecret {
    private static final Set<PosixFilePermission> OWNER_ONLY = PosixFilePermissions.fromString("rw-------");

    private UserSecret() {
    }

    public static Path file(Map<String, String> env) {
        String dir = env.get("DTRAIN_SECRET_DIR");
        return (dir != null && !dir.isBlank() ? Path.of(dir) : Path.of(System.getProperty("user.home"), ".dtrain"))
                .resolve("secret");
    }

    /** The job's secret derived from the user's secret (created if missing). */
    public static byte[] forJob(Map<String, String> env, String jobId) {
        byte[] key = readOrCreate(file(env));
        try {
            Mac mac = Mac.getInstance("HmacSHA256");
            mac.init(new SecretKeySpec(key, "HmacSHA256"));
            byte[] derived = mac.doFinal(("dtrain-job-secret|" + jobId).getBytes(StandardCharsets.UTF_8));
            return HexFormat.of().formatHex(derived).getBytes(StandardCharsets.UTF_8);
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("HmacSHA256 is part of every JDK", e);
        }
    }

    /**
     * Reads the file, or creates it atomically: tasks starting together on several nodes race, so the random key is
     * written to a private temporary file and linked into place; the loser of the race reads the winner's key.
     */
    static byte[] readOrCreate(Path file) {
        try {
            if (!Files.exists(file)) {
                Files.createDirectories(file.getParent(), PosixFilePermissions.asFileAttribute(
                        PosixFilePermissions.fromString("rwx------")));
                Path temp = Files.createTempFile(file.getParent(), ".secret-", ".tmp",
                        PosixFilePermissions.asFileAttribute(OWNER_ONLY));
                try {
                    byte[] random = new byte[32];
                    new SecureRandom().nextBytes(random);
                    Files.writeString(temp, HexFormat.of().formatHex(random) + "\n", StandardCharsets.UTF_8);
                    try {
                        Files.createLink(file, temp);
                    } catch (FileAlreadyExistsException raced) {
                        // another task created it first: use theirs
                    }
                } finally {
                    Files.deleteIfExists(temp);
                }
            }
            Set<PosixFilePermission> mode = Files.getPosixFilePermissions(file);
            if (!OWNER_ONLY.containsAll(mode)) {
                throw new UserFacingException("the secret file " + file + " can be read by others (mode "
                        + PosixFilePermissions.toString(mode) + "): chmod 600 " + file);
            }
            String hex = Files.readString(file, StandardCharsets.UTF_8).strip();
            if (hex.length() < 32) {
                throw new UserFacingException("the secret file " + file + " holds fewer than 32 characters: delete it"
                        + " (dtrain creates a new one) or put a long random string in it (openssl rand -hex 32)");
            }
            return hex.getBytes(StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UserFacingException("cannot read or create the secret file " + file + " (" + e.getMessage()
                    + "); set DTRAIN_JOB_SECRET_FILE to a file with the same secret on every node, or DTRAIN_SECRET_DIR", e);
        }
    }
}
