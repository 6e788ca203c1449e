package io.dtrain.parallel.transport;

import io.aeron.CommonContext;
import io.dtrain.parallel.spawn.WorkerJvm;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Supplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Starts the host's media driver process for a job if none runs yet: under a file lock in the job directory
 * (mode 0700), so of the host's workers (or its launcher) the first starts it and the others share it.
 */
public final class MediaDriverProcess {
    static final String LOCK_FILE = "driver.lock";
    static final String PID_FILE = "driver.pid";
    static final String LOG_FILE = "driver.log";

    private static final Logger log = LoggerFactory.getLogger(MediaDriverProcess.class);

    private MediaDriverProcess() {
    }

    /**
     * Makes sure a driver runs in {@code aeronDir}, then calls {@code connect} while still holding the lock so
     * the driver cannot idle out between the check and the connection.
     *
     * @param idleExitSeconds the driver exits once it has had no client for this long
     */
    public static <T> T ensureRunningAndConnect(Path aeronDir, int idleExitSeconds, Duration startTimeout, Supplier<T> connect) {
        Path jobDir = aeronDir.toAbsolutePath().getParent();
        try {
            PrivateDirectory.ensure(jobDir);
            while (true) {
                Path lockFile = jobDir.resolve(LOCK_FILE);
                try (FileChannel channel = FileChannel.open(lockFile, StandardOpenOption.CREATE, StandardOpenOption.WRITE);
                     FileLock ignored = channel.lock()) {
                    if (!Files.exists(lockFile)) {
                        continue; // an exiting driver removed the file we locked: lock the new one
                    }
                    // A driver starved of CPU on a busy host can miss its heartbeat for seconds; judging it dead too
                    // early would start a second driver over the live one's files.
                    if (!CommonContext.isDriverActive(aeronDir.toFile(), 10_000, message -> { })) {
                        start(aeronDir, idleExitSeconds, startTimeout);
                    }
                    return connect.get();
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot start the Aeron media driver in " + aeronDir + ": " + e.getMessage(), e);
        }
    }

    /** For a launcher: makes sure the host's driver for a job runs (it exits idleExitSeconds after its last client). */
    public static void ensureRunning(Path aeronDir, int idleExitSeconds, Duration startTimeout) {
        ensureRunningAndConnect(aeronDir, idleExitSeconds, startTimeout, () -> null);
    }

    /** The driver's pid, if one was started in the job directory of {@code aeronDir} and still runs. */
    public static java.util.OptionalLong pid(Path aeronDir) {
        try {
            Path pidFile = aeronDir.toAbsolutePath().getParent().resolve(PID_FILE);
            return java.util.OptionalLong.of(Long.parseLong(Files.readString(pidFile).trim()));
        } catch (IOException | NumberFormatException e) {
            return java.util.OptionalLong.empty();
        }
    }

    private static void start(Path aeronDir, int idleExitSeconds, Duration startTimeout) throws IOException {
        DriverMain.threadingMode(System.getenv()); // a bad value is the user's one line here, not the driver's stack trace
        Path jobDir = aeronDir.toAbsolutePath().getParent();
        List<String> command = new ArrayList<>();
        command.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        // The driver needs the module opens every dtrain JVM gets (Agrona, sun.nio.ch for UDP), from the project's one
        // list rather than this JVM's arguments, which lack them when it was started without bin/dtrain; a small heap.
        for (String arg : WorkerJvm.projectOptions()) {
            if (arg.startsWith("--add-opens") || arg.startsWith("--add-exports")) {
                command.add(arg);
            }
        }
        // dtrain.test.* properties reach the driver too (tests capture datagrams there).
        System.getProperties().stringPropertyNames().stream().filter(name -> name.startsWith("dtrain.test."))
                .forEach(name -> command.add("-D" + name + "=" + System.getProperty(name)));
        command.add("-Xmx128m");
        command.add("-XX:+UseSerialGC");
        // C2, not C1 only: AES-GCM, which authenticates every udp datagram, is a C2 intrinsic (C1: 0.04 GB/s).
        command.add("-cp");
        command.add(System.getProperty("java.class.path"));
        command.add(DriverMain.class.getName());
        command.add(aeronDir.toString());
        command.add(Integer.toString(idleExitSeconds));
        Path logFile = jobDir.resolve(LOG_FILE);
        Process process = new ProcessBuilder(command)
                .redirectErrorStream(true)
                .redirectOutput(ProcessBuilder.Redirect.appendTo(logFile.toFile()))
                .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")))
                .start();
        log.info("started Aeron media driver pid {} in {} (log {})", process.pid(), aeronDir, logFile);
        long deadline = System.nanoTime() + startTimeout.toNanos();
        while (!CommonContext.isDriverActive(aeronDir.toFile(), 1_000, message -> { })) {
            if (!process.isAlive()) {
                throw new IOException("the media driver exited with code " + process.exitValue() + "; see " + logFile);
            }
            if (System.nanoTime() > deadline) {
                process.destroyForcibly();
                throw new IOException("the media driver did not start within " + startTimeout.toSeconds() + " s; see " + logFile);
            }
            try {
                Thread.sleep(50);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IOException("interrupted while starting the media driver", e);
            }
        }
    }
}
