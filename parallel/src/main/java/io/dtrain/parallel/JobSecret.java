package io.dtrain.parallel;

import io.dtrain.common.UserFacingException;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.SecureRandom;
import java.util.HexFormat;
import java.util.Map;

/**
 * The one reader of a configured job secret, for the workers ({@link WorldConfig}: the environment) and for
 * {@code dtrain launch} (its {@code --secret-file} first). In order: the file given by the caller's option, else
 * {@code DTRAIN_JOB_SECRET}, else the file {@code DTRAIN_JOB_SECRET_FILE} names; surrounding white space is not part of
 * the secret (a file usually ends with a newline). A file that cannot be read or holds nothing is one line naming the
 * file, where it was named (the option or the variable) and what to do. Where no secret is configured the callers
 * differ (one node: a random one; a Slurm job: {@code sched.UserSecret}; workers: an error), so that stays theirs.
 */
public final class JobSecret {
    private JobSecret() {
    }

    /**
     * The configured secret: the file {@code file} (named by {@code option}, e.g. "--secret-file") when not null, else
     * from the environment; null when none is configured.
     */
    public static byte[] configured(Path file, String option, Map<String, String> env) {
        if (file != null) {
            return read(file, option);
        }
        String value = env.get("DTRAIN_JOB_SECRET");
        if (value != null && !value.isBlank()) {
            return value.strip().getBytes(StandardCharsets.UTF_8);
        }
        String named = env.get("DTRAIN_JOB_SECRET_FILE");
        return named == null ? null : read(Path.of(named), "DTRAIN_JOB_SECRET_FILE");
    }

    /** A fresh random secret (64 hex digits) for a job on one node, which needs to agree with no one. */
    public static byte[] random() {
        byte[] random = new byte[32];
        new SecureRandom().nextBytes(random);
        return HexFormat.of().formatHex(random).getBytes(StandardCharsets.UTF_8);
    }

    private static byte[] read(Path file, String source) {
        String secret;
        try {
            secret = Files.readString(file, StandardCharsets.UTF_8).strip();
        } catch (IOException e) {
            throw new UserFacingException("cannot read the secret file " + file + " (" + source + "): " + e
                    + "; make it readable by this user, or name the file that holds the job's secret (the same on every"
                    + " node)", e);
        }
        if (secret.isEmpty()) {
            throw new UserFacingException("the secret file " + file + " (" + source + ") is empty; put a long random"
                    + " string in it, e.g. openssl rand -hex 32 > " + file);
        }
        return secret.getBytes(StandardCharsets.UTF_8);
    }
}
