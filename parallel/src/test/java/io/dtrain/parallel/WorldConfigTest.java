package io.dtrain.parallel;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.dtrain.common.UserFacingException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class WorldConfigTest {
    @Test
    void readsTorchrunVariables() {
        WorldConfig c = WorldConfig.fromEnvironment(Map.of("RANK", "3", "WORLD_SIZE", "4", "LOCAL_RANK", "1",
                "MASTER_ADDR", "10.0.0.1", "MASTER_PORT", "29400", "DTRAIN_JOB_SECRET", "x", "DTRAIN_COLLECTIVE_TIMEOUT", "2.5s",
                "DTRAIN_TRANSPORT", "udp"));
        assertEquals(3, c.rank());
        assertEquals(4, c.worldSize());
        assertEquals(1, c.localRank());
        assertEquals("10.0.0.1", c.masterAddr());
        assertEquals(29400, c.masterPort());
        assertEquals(Duration.ofMillis(2500), c.timeout());
        assertEquals(WorldConfig.Transport.UDP, c.transport());
        assertEquals("dtrain-29400", c.jobId());
        assertTrue(c.hostStore());
        assertTrue(c.resolvedAeronDir().toString().contains("dtrain-"), c.resolvedAeronDir().toString());
        assertFalse(c.toString().contains("=x,"), "secret must not be printed: " + c);
    }

    @Test
    void sharedMemoryLinksLiveInAPrivateDirectoryOfTheJobThatGoesWhenEmpty(@TempDir Path tmp) throws Exception {
        Path jobDir = tmp.resolve("dtrain-job");
        WorldConfig c = WorldConfig.fromEnvironment(Map.of("WORLD_SIZE", "2", "DTRAIN_JOB_SECRET", "x",
                "DTRAIN_AERON_DIR", jobDir.resolve("aeron").toString()));
        assertEquals(WorldConfig.Transport.AUTO, c.transport());
        Path shm = c.shmDirectory();
        assertEquals(jobDir.resolve("shm"), shm);
        assertEquals("rwx------", java.nio.file.attribute.PosixFilePermissions.toString(Files.getPosixFilePermissions(shm)));
        assertEquals("rwx------", java.nio.file.attribute.PosixFilePermissions.toString(Files.getPosixFilePermissions(jobDir)));
        Files.writeString(shm.resolve("busy"), "");
        c.removeShmDirectoryIfEmpty(false);
        assertTrue(Files.exists(shm), "kept while not empty");
        Files.delete(shm.resolve("busy"));
        c.removeShmDirectoryIfEmpty(false);
        assertFalse(Files.exists(shm));
        assertTrue(Files.exists(jobDir), "the started driver removes its job directory itself");
        // a job whose workers used no driver (every link shared memory): the last to leave removes the job directory
        c.shmDirectory();
        c.removeShmDirectoryIfEmpty(true);
        assertFalse(Files.exists(jobDir));
    }

    @Test
    void defaultsToASingleProcess() {
        WorldConfig c = WorldConfig.fromEnvironment(Map.of());
        assertEquals(0, c.rank());
        assertEquals(1, c.worldSize());
        assertEquals(WorldConfig.DEFAULT_TIMEOUT, c.timeout());
    }

    @Test
    void readsTheSecretFromAFile(@TempDir Path dir) throws Exception {
        Path file = dir.resolve("secret");
        Files.writeString(file, "from-file\n");
        WorldConfig c = WorldConfig.fromEnvironment(Map.of("WORLD_SIZE", "2", "DTRAIN_JOB_SECRET_FILE", file.toString()));
        assertEquals("from-file", new String(c.secret()));
    }

    @Test
    void badValuesNameTheVariable() {
        Map<String, String> env = new HashMap<>(Map.of("WORLD_SIZE", "2", "DTRAIN_JOB_SECRET", "x"));
        env.put("RANK", "two");
        assertTrue(assertThrows(UserFacingException.class, () -> WorldConfig.fromEnvironment(env)).getMessage().contains("RANK"));
        env.put("RANK", "2");
        assertTrue(assertThrows(UserFacingException.class, () -> WorldConfig.fromEnvironment(env)).getMessage().contains("outside"));
        env.put("RANK", "1");
        env.put("DTRAIN_COLLECTIVE_TIMEOUT", "soon");
        assertTrue(assertThrows(UserFacingException.class, () -> WorldConfig.fromEnvironment(env)).getMessage().contains("DTRAIN_COLLECTIVE_TIMEOUT"));
        env.remove("DTRAIN_COLLECTIVE_TIMEOUT");
        env.put("DTRAIN_TRANSPORT", "tcp");
        assertTrue(assertThrows(UserFacingException.class, () -> WorldConfig.fromEnvironment(env)).getMessage().contains("DTRAIN_TRANSPORT"));
        env.remove("DTRAIN_TRANSPORT");
        env.remove("DTRAIN_JOB_SECRET");
        assertTrue(assertThrows(UserFacingException.class, () -> WorldConfig.fromEnvironment(env)).getMessage().contains("DTRAIN_JOB_SECRET"));
        env.put("DTRAIN_JOB_SECRET_FILE", "/nonexistent/secret");
        assertTrue(assertThrows(UserFacingException.class, () -> WorldConfig.fromEnvironment(env)).getMessage().contains("/nonexistent/secret"));
    }

    @Test
    void frameSizeAndThrottleAreByteSizesWithTheCommonUnits() {
        WorldConfig defaults = WorldConfig.fromEnvironment(Map.of());
        assertEquals(WorldConfig.DEFAULT_FRAME_PAYLOAD_BYTES, defaults.maxFramePayloadBytes());
        assertEquals(0, defaults.throttleBytesPerSecond());

        WorldConfig c = WorldConfig.fromEnvironment(Map.of("DTRAIN_FRAME_PAYLOAD_BYTES", "32KiB",
                "DTRAIN_TRANSPORT_THROTTLE", "2MB"));
        assertEquals(32 * 1024, c.maxFramePayloadBytes());
        assertEquals(2_000_000, c.throttleBytesPerSecond(), "MB is decimal, as everywhere in dtrain");
        assertEquals(200_000, WorldConfig.fromEnvironment(Map.of("DTRAIN_TRANSPORT_THROTTLE", "200000")).throttleBytesPerSecond());
        assertEquals(4096, WorldConfig.fromEnvironment(Map.of("DTRAIN_CHUNK_BYTES", "4096")).maxFramePayloadBytes(),
                "the old name of the frame payload variable is still read");
        assertEquals(1000, WorldConfig.fromEnvironment(Map.of("DTRAIN_CHUNK_BYTES", "4096",
                "DTRAIN_FRAME_PAYLOAD_BYTES", "1000")).maxFramePayloadBytes(), "the new name wins");

        UserFacingException fast = assertThrows(UserFacingException.class,
                () -> WorldConfig.fromEnvironment(Map.of("DTRAIN_TRANSPORT_THROTTLE", "fast")));
        assertTrue(fast.getMessage().startsWith("DTRAIN_TRANSPORT_THROTTLE: 'fast' is not a byte size"), fast.getMessage());
        UserFacingException tiny = assertThrows(UserFacingException.class,
                () -> WorldConfig.fromEnvironment(Map.of("DTRAIN_FRAME_PAYLOAD_BYTES", "32")));
        assertTrue(tiny.getMessage().contains("at least 64 bytes"), tiny.getMessage());
    }
}
