package io.dtrain.parallel;

import io.dtrain.common.ByteSizes;
import io.dtrain.common.UserFacingException;
import io.dtrain.parallel.sched.SlurmEnvironment;
import io.dtrain.parallel.sched.UserSecret;
import java.io.IOException;
import java.net.InetAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import org.slf4j.LoggerFactory;

/**
 * Everything a worker needs to join a job. {@link #fromEnvironment(Map)} reads torchrun's variables
 * ({@code RANK}, {@code WORLD_SIZE}, {@code LOCAL_RANK}, {@code MASTER_ADDR}, {@code MASTER_PORT}) plus dtrain's
 * own ({@code DTRAIN_*}, listed in the module README). A bad value is a {@link UserFacingException} naming the variable.
 *
 * @param rank               this worker's rank in the world, 0..worldSize-1
 * @param worldSize          number of workers in the job
 * @param localRank          rank among the workers of this host
 * @param masterAddr         host of the rendezvous store
 * @param masterPort         TCP port of the rendezvous store
 * @param jobId              the job's id; workers of another job are refused
 * @param secret             the job secret (never sent: proven with HMAC challenge-response)
 * @param timeout            a collective with no progress for this long fails on every rank
 * @param rendezvousTimeout  how long joining may take (all workers must connect within it)
 * @param transport          AUTO / SHM (ring links within a host through shared-memory files, Aeron udp between
 *                           hosts), IPC (Aeron ipc within a host) or UDP (Aeron udp even within a host)
 * @param nodeId             identifies the host (workers with equal nodeId share a media driver and memory)
 * @param aeronDir           the media driver directory; null: a job-specific directory under /dev/shm
 * @param externalDriver     true: a driver is already running in {@code aeronDir}, never start one
 * @param advertiseAddress   address peers send UDP to; null: the address this host uses to reach the store
 * @param hostStore          true: rank 0 runs the rendezvous store (no launcher on node 0 hosts it)
 * @param maxFramePayloadBytes largest payload of one ring frame (capped by the link's MTU)
 * @param throttleBytesPerSecond benchmarks and tests: cap what each ring sends per collective at this rate (0 = off)
 * @param logDir             where a failure's thread dump is written; null: {@code $TMPDIR/dtrain-USER-JOBID}
 *                           ({@code dtrain train} sets its run's {@code logs/})
 * @param insecureTransport  true: udp frames without authentication (a trusted network; DTRAIN_INSECURE_TRANSPORT)
 * @param restartRound       how often the launcher restarted the job (DTRAIN_RESTART_COUNT): the rendezvous round
 *                           this worker belongs to; a worker of another round is refused
 * @param shmAllReduceMaxBytes AllReduce (and Barrier) of at most this many bytes in a group whose members all share
 *                           this host's memory go through the shared-memory exchange, larger ones around the ring
 *                           (0: always the ring; DTRAIN_SHM_ALLREDUCE_MAX_BYTES)
 */
public record WorldConfig(int rank, int worldSize, int localRank, String masterAddr, int masterPort,
                             String jobId, byte[] secret, Duration timeout, Duration rendezvousTimeout,
                             Transport transport, String nodeId, Path aeronDir, boolean externalDriver,
                             String advertiseAddress, boolean hostStore, int maxFramePayloadBytes,
                             long throttleBytesPerSecond, Path logDir, boolean insecureTransport,
                             int restartRound, long shmAllReduceMaxBytes) {

    /** How a ring link between two workers goes; see the transport parameter. Pipeline links use Aeron always. */
    public enum Transport { AUTO, SHM, IPC, UDP }

    public static final Duration DEFAULT_TIMEOUT = Duration.ofSeconds(60);
    public static final int DEFAULT_FRAME_PAYLOAD_BYTES = 64 * 1024;
    /**
     * See {@code shmAllReduceMaxBytes}: 64 MiB, up to where the exchange beat the ring on the 2-core test host (1-16 MiB:
     * 1.3-2.7x; 64 MiB: ahead or even; 256 MiB: even or behind; benchmarks/RESULTS.md).
     */
    public static final long DEFAULT_SHM_ALLREDUCE_MAX_BYTES = 64L << 20;
    /** The old name of DTRAIN_FRAME_PAYLOAD_BYTES, still read (with a deprecation warning) when the new one is unset. */
    static final String DEPRECATED_FRAME_PAYLOAD_VARIABLE = "DTRAIN_CHUNK_BYTES";

    public WorldConfig {
        if (worldSize < 1) {
            throw new UserFacingException("world size must be >= 1, got " + worldSize + " (WORLD_SIZE)");
        }
        if (rank < 0 || rank >= worldSize) {
            throw new UserFacingException("rank " + rank + " is outside 0.." + (worldSize - 1) + " (RANK, WORLD_SIZE)");
        }
        if (masterPort < 0 || masterPort > 65535) {
            throw new UserFacingException("master port " + masterPort + " is not a TCP port (MASTER_PORT)");
        }
        if (jobId == null || jobId.isBlank() || !jobId.matches("[A-Za-z0-9._-]+")) {
            throw new UserFacingException("job id '" + jobId + "' must be non-empty letters, digits, '.', '_' or '-' (DTRAIN_JOB_ID)");
        }
        if (worldSize > 1 && (secret == null || secret.length == 0)) {
            throw new UserFacingException("no job secret: set DTRAIN_JOB_SECRET or DTRAIN_JOB_SECRET_FILE"
                    + " (the dtrain launcher sets it; every worker of the job needs the same one)");
        }
        if (timeout.isNegative() || timeout.isZero()) {
            throw new UserFacingException("collective timeout must be positive, got " + timeout + " (DTRAIN_COLLECTIVE_TIMEOUT)");
        }
        if (maxFramePayloadBytes < 64) {
            throw new UserFacingException("the frame payload must be at least 64 bytes, got " + maxFramePayloadBytes
                    + " (DTRAIN_FRAME_PAYLOAD_BYTES)");
        }
        if (restartRound < 0) {
            throw new UserFacingException("the restart round must be >= 0, got " + restartRound + " (DTRAIN_RESTART_COUNT)");
        }
        if (throttleBytesPerSecond < 0) {
            throw new UserFacingException("the transport throttle must be >= 0 bytes/s (0 = off), got "
                    + throttleBytesPerSecond + " (DTRAIN_TRANSPORT_THROTTLE)");
        }
    }

    /** A single-process world (no network). */
    public static WorldConfig single() {
        return new WorldConfig(0, 1, 0, "127.0.0.1", 0, "local", new byte[0], DEFAULT_TIMEOUT,
                Duration.ofMinutes(5), Transport.AUTO, hostName(), null, false, null, true, DEFAULT_FRAME_PAYLOAD_BYTES, 0, null,
                false, 0, DEFAULT_SHM_ALLREDUCE_MAX_BYTES);
    }

    /** Reads the configuration from environment variables, e.g. {@code System.getenv()}. */
    public static WorldConfig fromEnvironment(Map<String, String> environment) {
        Map<String, String> env = SlurmEnvironment.asTorchrunVariables(environment);
        int worldSize = intVar(env, "WORLD_SIZE", 1);
        int rank = intVar(env, "RANK", 0);
        int localRank = intVar(env, "LOCAL_RANK", rank);
        String masterAddr = env.getOrDefault("MASTER_ADDR", "127.0.0.1");
        int masterPort = intVar(env, "MASTER_PORT", 29500);
        if (Boolean.parseBoolean(env.getOrDefault("TORCHELASTIC_USE_AGENT_STORE", "false"))) {
            masterPort++;   // torchrun's static rendezvous: its agent's own store listens on MASTER_PORT
        }
        String jobId = env.getOrDefault("DTRAIN_JOB_ID", env.getOrDefault("TORCHELASTIC_RUN_ID", "dtrain-" + masterPort));
        boolean trusted = booleanVar(env, "DTRAIN_TRUSTED_NETWORK");
        byte[] secret = secret(env, jobId, worldSize, trusted);
        Duration timeout = durationVar(env, "DTRAIN_COLLECTIVE_TIMEOUT", DEFAULT_TIMEOUT);
        Duration rendezvousTimeout = durationVar(env, "DTRAIN_RENDEZVOUS_TIMEOUT", Duration.ofMinutes(5));
        Transport transport;
        String transportName = env.getOrDefault("DTRAIN_TRANSPORT", "auto");
        try {
            transport = Transport.valueOf(transportName.trim().toUpperCase(java.util.Locale.ROOT));
        } catch (IllegalArgumentException e) {
            throw new UserFacingException("DTRAIN_TRANSPORT='" + transportName + "' must be auto, shm, ipc or udp");
        }
        String nodeId = env.getOrDefault("DTRAIN_NODE_ID", hostName());
        String aeronDir = env.get("DTRAIN_AERON_DIR");
        boolean external = Boolean.parseBoolean(env.getOrDefault("DTRAIN_AERON_EXTERNAL_DRIVER", "false"));
        if (external && aeronDir == null) {
            throw new UserFacingException("DTRAIN_AERON_EXTERNAL_DRIVER=true needs DTRAIN_AERON_DIR (the external driver's directory)");
        }
        String store = env.getOrDefault("DTRAIN_STORE", "rank0");
        if (!store.equals("rank0") && !store.equals("external")) {
            throw new UserFacingException("DTRAIN_STORE='" + store + "' must be rank0 (rank 0 hosts the rendezvous store)"
                    + " or external (the launcher on node 0 hosts it)");
        }
        long framePayload = framePayloadVar(env);
        long throttle = sizeVar(env, "DTRAIN_TRANSPORT_THROTTLE", 0);
        boolean insecure = trusted || booleanVar(env, "DTRAIN_INSECURE_TRANSPORT");
        return new WorldConfig(rank, worldSize, localRank, masterAddr, masterPort, jobId, secret, timeout,
                rendezvousTimeout, transport, nodeId, aeronDir == null ? null : Path.of(aeronDir), external,
                env.get("DTRAIN_ADVERTISE_ADDR"), store.equals("rank0"), (int) Math.min(Integer.MAX_VALUE, framePayload),
                throttle, null, insecure, intVar(env, "DTRAIN_RESTART_COUNT", 0),
                sizeVar(env, "DTRAIN_SHM_ALLREDUCE_MAX_BYTES", DEFAULT_SHM_ALLREDUCE_MAX_BYTES));
    }

    public WorldConfig withTimeout(Duration newTimeout) {
        return new WorldConfig(rank, worldSize, localRank, masterAddr, masterPort, jobId, secret, newTimeout,
                rendezvousTimeout, transport, nodeId, aeronDir, externalDriver, advertiseAddress, hostStore,
                maxFramePayloadBytes, throttleBytesPerSecond, logDir, insecureTransport, restartRound,
                shmAllReduceMaxBytes);
    }

    public WorldConfig withRendezvousTimeout(Duration newTimeout) {
        return new WorldConfig(rank, worldSize, localRank, masterAddr, masterPort, jobId, secret, timeout,
                newTimeout, transport, nodeId, aeronDir, externalDriver, advertiseAddress, hostStore,
                maxFramePayloadBytes, throttleBytesPerSecond, logDir, insecureTransport, restartRound,
                shmAllReduceMaxBytes);
    }

    /** The same with failures' thread dumps written under {@code dir} (e.g. a run's logs directory). */
    public WorldConfig withLogDir(Path dir) {
        return new WorldConfig(rank, worldSize, localRank, masterAddr, masterPort, jobId, secret, timeout,
                rendezvousTimeout, transport, nodeId, aeronDir, externalDriver, advertiseAddress, hostStore,
                maxFramePayloadBytes, throttleBytesPerSecond, dir, insecureTransport, restartRound,
                shmAllReduceMaxBytes);
    }

    /** Where a failure's thread dump goes: {@link #logDir}, or a job-specific directory under the temporary directory. */
    public Path resolvedLogDir() {
        return logDir != null ? logDir
                : Path.of(System.getProperty("java.io.tmpdir"), "dtrain-" + System.getProperty("user.name") + "-" + jobId);
    }

    /**
     * The settings every rank of a job must share, by environment variable, resolved (an unset variable as its
     * default): the exchange's threshold and the throttle (which turns the exchange off) decide whether a collective
     * goes through the shared-memory exchange or around the ring, so a rank that differs would wait in another
     * algorithm than its peers. {@link ProcessGroup#init} checks them. (The frame size may differ: a group uses its
     * members' smallest.)
     */
    public java.util.Map<String, String> settingsEqualOnAllRanks() {
        return java.util.Map.of("DTRAIN_SHM_ALLREDUCE_MAX_BYTES", Long.toString(shmAllReduceMaxBytes),
                "DTRAIN_TRANSPORT_THROTTLE", Long.toString(throttleBytesPerSecond));
    }

    /**
     * The key the host's media driver authenticates this job's udp frames with (derived from the secret and job id;
     * see {@code transport.UdpAuthentication}); null with {@link #insecureTransport}.
     */
    public byte[] udpJobKey() {
        return insecureTransport ? null : io.dtrain.parallel.transport.UdpAuthentication.jobKey(secret, jobId);
    }

    /** The driver directory: the configured one, or /dev/shm/dtrain-USER-JOBID/aeron (tmpdir without /dev/shm). */
    public Path resolvedAeronDir() {
        if (aeronDir != null) {
            return aeronDir;
        }
        return defaultJobDirectory().resolve("aeron");
    }

    private Path defaultJobDirectory() {
        Path base = Files.isDirectory(Path.of("/dev/shm")) ? Path.of("/dev/shm") : Path.of(System.getProperty("java.io.tmpdir"));
        return base.resolve("dtrain-" + System.getProperty("user.name") + "-" + jobId);
    }

    /**
     * Where same-host links map their files (unlinked as soon as both ends have them): {@code shm} in the job's
     * directory (the driver directory's parent, or a job-specific one next to an external driver); both must be
     * this user's, mode 0700, not links ({@code transport.PrivateDirectory}), else the worker refuses to start.
     */
    public Path shmDirectory() {
        Path jobDir = shmJobDirectory();
        io.dtrain.parallel.transport.PrivateDirectory.ensure(jobDir);
        return io.dtrain.parallel.transport.PrivateDirectory.ensure(jobDir.resolve("shm"));
    }

    private Path shmJobDirectory() {
        return externalDriver ? defaultJobDirectory() : resolvedAeronDir().toAbsolutePath().getParent();
    }

    /**
     * Best effort when a worker leaves: removes the shm directory once empty, and the job directory once empty when
     * it was made next to an external driver or this worker used no driver ({@code noDriverHere}); a started driver
     * removes its own job directory when it exits.
     */
    void removeShmDirectoryIfEmpty(boolean noDriverHere) {
        Path jobDir = shmJobDirectory();
        try {
            Files.deleteIfExists(jobDir.resolve("shm"));
            if (externalDriver || noDriverHere) {
                Files.deleteIfExists(jobDir);
            }
        } catch (IOException notEmpty) {
            // another worker of this host still has links, or files of its own there
        }
    }

    static String hostName() {
        try {
            return InetAddress.getLocalHost().getHostName();
        } catch (IOException e) {
            return "localhost";
        }
    }

    /**
     * The configured secret ({@link JobSecret}: DTRAIN_JOB_SECRET, else the file DTRAIN_JOB_SECRET_FILE names), else
     * (in a Slurm job) one derived from the user's own secret ({@link UserSecret}), else (DTRAIN_TRUSTED_NETWORK) a
     * well-known one: no authentication at all.
     */
    private static byte[] secret(Map<String, String> env, String jobId, int worldSize, boolean trusted) {
        byte[] configured = JobSecret.configured(null, null, env);
        if (configured != null) {
            return configured;
        }
        if (worldSize == 1) {
            return new byte[0];
        }
        if (SlurmEnvironment.inJobStep(env)) {
            return UserSecret.forJob(env, jobId);
        }
        if (trusted) {
            return ("trusted-network|" + jobId).getBytes(StandardCharsets.UTF_8);
        }
        String who = env.containsKey("TORCHELASTIC_RUN_ID") ? "this worker was started by torchrun, which sets no job secret"
                : "no job secret";
        throw new UserFacingException(who + ": set DTRAIN_JOB_SECRET (or DTRAIN_JOB_SECRET_FILE) to the same value on"
                + " every node, or DTRAIN_TRUSTED_NETWORK=true if only this job's machines can reach "
                + env.getOrDefault("MASTER_ADDR", "127.0.0.1") + ":" + env.getOrDefault("MASTER_PORT", "29500")
                + " (then neither the rendezvous nor the udp data is authenticated); dtrain launch sets a secret itself");
    }

    private static boolean booleanVar(Map<String, String> env, String name) {
        String value = env.getOrDefault(name, "false").trim().toLowerCase(java.util.Locale.ROOT);
        if (!value.equals("true") && !value.equals("false") && !value.isEmpty()) {
            throw new UserFacingException("environment variable " + name + "='" + env.get(name) + "' must be true or false");
        }
        return value.equals("true");
    }

    private static int intVar(Map<String, String> env, String name, int defaultValue) {
        String value = env.get(name);
        if (value == null || value.isBlank()) {
            return defaultValue;
        }
        try {
            return Integer.parseInt(value.trim());
        } catch (NumberFormatException e) {
            throw new UserFacingException("environment variable " + name + "='" + value + "' is not an integer");
        }
    }

    /** A byte size or rate as {@link ByteSizes#parse} reads it: "65536", "64KiB", "2MB". */
    private static long sizeVar(Map<String, String> env, String name, long defaultValue) {
        String value = env.get(name);
        return value == null || value.isBlank() ? defaultValue : ByteSizes.parse(value, name);
    }

    private static long framePayloadVar(Map<String, String> env) {
        String name = "DTRAIN_FRAME_PAYLOAD_BYTES";
        String value = env.get(name);
        String old = env.get(DEPRECATED_FRAME_PAYLOAD_VARIABLE);
        if ((value == null || value.isBlank()) && old != null && !old.isBlank()) {
            LoggerFactory.getLogger(WorldConfig.class).warn("{} is deprecated: it is now called {} (the largest payload"
                    + " of one ring frame)", DEPRECATED_FRAME_PAYLOAD_VARIABLE, name);
            name = DEPRECATED_FRAME_PAYLOAD_VARIABLE;
        }
        return sizeVar(env, name, DEFAULT_FRAME_PAYLOAD_BYTES);
    }

    /** "60", "60s", "500ms" or "2m". */
    static Duration durationVar(Map<String, String> env, String name, Duration defaultValue) {
        String value = env.get(name);
        if (value == null || value.isBlank()) {
            return defaultValue;
        }
        String v = value.trim().toLowerCase(java.util.Locale.ROOT);
        try {
            if (v.endsWith("ms")) {
                return Duration.ofMillis(Long.parseLong(v.substring(0, v.length() - 2)));
            }
            if (v.endsWith("s")) {
                return Duration.ofMillis(Math.round(Double.parseDouble(v.substring(0, v.length() - 1)) * 1000));
            }
            if (v.endsWith("m")) {
                return Duration.ofSeconds(Long.parseLong(v.substring(0, v.length() - 1)) * 60);
            }
            return Duration.ofMillis(Math.round(Double.parseDouble(v) * 1000));
        } catch (NumberFormatException e) {
            throw new UserFacingException("environment variable " + name + "='" + value
                    + "' is not a duration (e.g. 60, 60s, 500ms, 2m)");
        }
    }

    @Override
    public String toString() {
        return "WorldConfig[rank=" + rank + ", worldSize=" + worldSize + ", localRank=" + localRank
                + ", master=" + masterAddr + ":" + masterPort + ", jobId=" + jobId + ", secret=<" + secret.length
                + " bytes>, timeout=" + timeout + ", transport=" + transport + ", nodeId=" + nodeId
                + ", aeronDir=" + resolvedAeronDir() + ", externalDriver=" + externalDriver
                + (insecureTransport ? ", insecureTransport" : "") + "]";
    }
}
