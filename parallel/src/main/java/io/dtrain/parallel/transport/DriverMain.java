package io.dtrain.parallel.transport;

import io.aeron.driver.MediaDriver;
import io.aeron.driver.ThreadingMode;
import io.aeron.status.HeartbeatTimestamp;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import org.agrona.concurrent.BackoffIdleStrategy;
import org.agrona.concurrent.status.CountersReader;

/**
 * The per-host Aeron media driver, run as its own process so a worker's death cannot take it down:
 * {@code java -cp ... io.dtrain.parallel.transport.DriverMain AERON_DIR IDLE_EXIT_SECONDS}. It authenticates every udp
 * datagram of the channels that ask for it ({@link AuthenticatedUdp}), with the keys its clients leave in
 * {@link UdpKeys#directory} of AERON_DIR, so one driver can serve several jobs.
 *
 * <p>Tuned for few cores: SHARED_NETWORK threads (conductor; sender + receiver) with backoff idle strategies
 * (busy spinning starved the workers on 2 cores), 4 MiB socket buffers; {@code DTRAIN_DRIVER_THREADING=DEDICATED}
 * gives the sender and the receiver a thread each, for hosts with cores to spare ({@link #threadingMode}). It exits,
 * deleting its directory, once no Aeron client has been connected for IDLE_EXIT_SECONDS: that is how the job's driver
 * is removed when the job ends, even if workers were killed.
 */
public final class DriverMain {
    public static final int SOCKET_BUFFER_BYTES = 4 << 20;
    public static final String THREADING_VARIABLE = "DTRAIN_DRIVER_THREADING";

    private DriverMain() {
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: DriverMain AERON_DIR IDLE_EXIT_SECONDS");
            System.exit(2);
        }
        Path aeronDir = Path.of(args[0]);
        long idleExitNs = TimeUnit.SECONDS.toNanos(Long.parseLong(args[1]));
        Path jobDir = aeronDir.getParent();
        AuthenticatedUdp.warmUp();
        MediaDriver driver = MediaDriver.launch(AuthenticatedUdp.install(context(aeronDir.toString()), new UdpKeys(aeronDir)));
        // The idle exit below cleans up through this hook.
        Runtime.getRuntime().addShutdownHook(new Thread(() -> shutdown(driver, jobDir), "dtrain-driver-shutdown"));
        // A scheduler signals every process of a job step, this driver too, while its workers still need it to write
        // their checkpoint together: SIGTERM and SIGINT make it leave as soon as it has no clients, SIGUSR1 (Slurm's
        // warning before the time limit) is for the workers alone. SIGKILL still ends it at once.
        AtomicBoolean stopRequested = new AtomicBoolean();
        for (String name : new String[] {"TERM", "INT"}) {
            sun.misc.Signal.handle(new sun.misc.Signal(name), s -> stopRequested.set(true));
        }
        sun.misc.Signal.handle(new sun.misc.Signal("USR1"), s -> { });
        Files.writeString(jobDir.resolve(MediaDriverProcess.PID_FILE), Long.toString(ProcessHandle.current().pid()));
        System.out.println("dtrain media driver pid " + ProcessHandle.current().pid() + " in " + aeronDir);
        CountersReader counters = driver.context().countersManager();
        long idleSince = System.nanoTime();
        while (true) {
            Thread.sleep(200);
            if (clientCount(counters) > 0) {
                idleSince = System.nanoTime();
            } else if ((stopRequested.get() || System.nanoTime() - idleSince > idleExitNs) && exitUnderLock(jobDir, counters)) {
                System.out.println(stopRequested.get() ? "dtrain media driver: stop requested and no clients left, exiting"
                        : "dtrain media driver: no clients for " + args[1] + " s, exiting");
                break;
            }
        }
        System.exit(0);
    }

    /** Closes the driver (which deletes its Aeron directory) and removes the rest of a dtrain job directory. */
    private static void shutdown(MediaDriver driver, Path jobDir) {
        driver.close();
        UdpKeys.deleteDirectory(Path.of(driver.aeronDirectoryName()));
        try {
            Files.deleteIfExists(jobDir.resolve(MediaDriverProcess.PID_FILE));
            Files.deleteIfExists(jobDir.resolve(MediaDriverProcess.LOG_FILE));
            if (jobDir.getFileName().toString().startsWith("dtrain-")) {
                Files.deleteIfExists(jobDir.resolve(MediaDriverProcess.LOCK_FILE));
                Files.deleteIfExists(jobDir.resolve("shm")); // same-host ring links (ShmLink); empty once mapped
                Files.deleteIfExists(jobDir);
            }
        } catch (java.io.IOException e) {
            // a worker is starting the next driver in this directory: leave it
        }
    }

    static MediaDriver.Context context(String aeronDir) {
        return new MediaDriver.Context()
                .aeronDirectoryName(aeronDir)
                .dirDeleteOnStart(true)
                .dirDeleteOnShutdown(true)
                // Conductor on one thread, sender + receiver on another: over udp both network directions of every local
                // rank go through the driver, and sharing one thread with the conductor (which also zeroes every
                // consumed term byte, see README "Performance") made it the bottleneck at 4 ranks (+40% busbw A/B).
                .threadingMode(threadingMode(System.getenv()))
                // The conductor moves each ipc publication's limit (its subscriber's position + term/2), so a parked
                // conductor stalls the sender: at most 50 us (was 200 us; the timer slack adds ~50 us more).
                .conductorIdleStrategy(backoff())
                .sharedNetworkIdleStrategy(backoff())
                // The same for the threads of the other modes (DTRAIN_DRIVER_THREADING).
                .senderIdleStrategy(backoff())
                .receiverIdleStrategy(backoff())
                .sharedIdleStrategy(backoff())
                .socketSndbufLength(SOCKET_BUFFER_BYTES)
                .socketRcvbufLength(SOCKET_BUFFER_BYTES)
                .initialWindowLength(SOCKET_BUFFER_BYTES)
                // A killed worker's publications and images go away after these. The collectives detect a death
                // faster through the rendezvous store, so these stay generous: a worker starved of CPU for a few
                // seconds (overloaded host, long GC) must not be declared dead by its driver.
                .clientLivenessTimeoutNs(TimeUnit.SECONDS.toNanos(20))
                .imageLivenessTimeoutNs(TimeUnit.SECONDS.toNanos(20))
                .publicationUnblockTimeoutNs(TimeUnit.SECONDS.toNanos(30))
                .warnIfDirectoryExists(false);
    }

    private static BackoffIdleStrategy backoff() {
        return new BackoffIdleStrategy(10, 20, TimeUnit.MICROSECONDS.toNanos(1), TimeUnit.MICROSECONDS.toNanos(50));
    }

    /**
     * The driver's threading mode from {@value #THREADING_VARIABLE}: SHARED_NETWORK by default (measured: DEDICATED,
     * with the sender and the receiver each on a thread of its own, gave the same busbw on 2 cores, and costs a third
     * thread there), DEDICATED for hosts with cores to spare, where sealing (sender) and checking (receiver) the udp
     * datagrams then run in parallel.
     */
    public static ThreadingMode threadingMode(java.util.Map<String, String> env) {
        String value = env.getOrDefault(THREADING_VARIABLE, ThreadingMode.SHARED_NETWORK.name()).trim();
        for (ThreadingMode mode : new ThreadingMode[] {ThreadingMode.SHARED, ThreadingMode.SHARED_NETWORK, ThreadingMode.DEDICATED}) {
            if (mode.name().equalsIgnoreCase(value)) {
                return mode;
            }
        }
        throw new io.dtrain.common.UserFacingException(THREADING_VARIABLE + "='" + value
                + "' must be SHARED_NETWORK (the default), DEDICATED or SHARED");
    }

    /** Re-checks under the job's driver lock so a worker that is just connecting never loses its driver. */
    private static boolean exitUnderLock(Path jobDir, CountersReader counters) throws Exception {
        Path lockFile = jobDir.resolve(MediaDriverProcess.LOCK_FILE);
        try (FileChannel channel = FileChannel.open(lockFile, StandardOpenOption.CREATE, StandardOpenOption.WRITE);
             FileLock ignored = channel.lock()) {
            if (clientCount(counters) > 0) {
                return false;
            }
            Files.deleteIfExists(jobDir.resolve(MediaDriverProcess.PID_FILE));
            // The lock file stays until the directory goes: a waiter re-checks that it still exists.
            Files.deleteIfExists(lockFile);
            return true;
        }
    }

    static int clientCount(CountersReader counters) {
        int[] count = {0};
        counters.forEach((counterId, typeId, keyBuffer, label) -> {
            if (typeId == HeartbeatTimestamp.HEARTBEAT_TYPE_ID) {
                count[0]++;
            }
        });
        return count[0];
    }
}
