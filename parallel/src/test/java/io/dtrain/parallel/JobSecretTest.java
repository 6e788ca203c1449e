package io.dtrain.parallel;

import io.dtrain.common.UserFacingException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The one reader of a configured job secret: its order, and its errors naming the file and where it was named. */
class JobSecretTest {
    private static String text(byte[] secret) {
        return new String(secret, StandardCharsets.UTF_8);
    }

    @Test
    void theOptionThenTheVariableThenTheVariablesFile(@TempDir Path tmp) throws Exception {
        Path option = Files.writeString(tmp.resolve("option"), "from-option\n");
        Path named = Files.writeString(tmp.resolve("named"), "  from-file\n");
        Map<String, String> env = Map.of("DTRAIN_JOB_SECRET", "from-env ", "DTRAIN_JOB_SECRET_FILE", named.toString());
        assertEquals("from-option", text(JobSecret.configured(option, "--secret-file", env)));
        assertEquals("from-env", text(JobSecret.configured(null, null, env)));
        assertEquals("from-file", text(JobSecret.configured(null, null, Map.of("DTRAIN_JOB_SECRET", " ",
                "DTRAIN_JOB_SECRET_FILE", named.toString()))));
        assertNull(JobSecret.configured(null, null, Map.of()));
        assertEquals(64, JobSecret.random().length);
    }

    @Test
    void aBadFileIsOneLineNamingItAndItsSource(@TempDir Path tmp) throws Exception {
        Path missing = tmp.resolve("missing");
        UserFacingException unreadable = assertThrows(UserFacingException.class, () -> JobSecret.configured(null, null,
                Map.of("DTRAIN_JOB_SECRET_FILE", missing.toString())));
        assertTrue(unreadable.getMessage().startsWith("cannot read the secret file " + missing
                + " (DTRAIN_JOB_SECRET_FILE): java.nio.file.NoSuchFileException"), unreadable.getMessage());
        assertTrue(unreadable.getMessage().contains("make it readable by this user, or name the file"), unreadable.getMessage());
        Path empty = Files.writeString(tmp.resolve("empty"), "\n");
        UserFacingException blank = assertThrows(UserFacingException.class, () -> JobSecret.configured(empty,
                "--secret-file", Map.of()));
        assertEquals("the secret file " + empty + " (--secret-file) is empty; put a long random string in it, e.g."
                + " openssl rand -hex 32 > " + empty, blank.getMessage());
        assertEquals(1, unreadable.getMessage().lines().count());
    }
}
