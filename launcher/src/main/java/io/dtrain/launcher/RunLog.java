package io.dtrain.launcher;

import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Instant;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.Locale;

/**
 * Where a failed command keeps the stack trace its one-line message leaves out: the run's log directory once the
 * command has a run ({@code dtrain train}: {@code OUTPUT_DIR/logs/train-rank<r>.log}, appended to), and for a
 * failure outside a run that wraps a lower-level error, a file of its own under {@code $TMPDIR/dtrain-<user>/}.
 * One command runs per {@link Main#commandLine()}, which resets it.
 */
final class RunLog {
    private static volatile Path directory;

    private RunLog() {
    }

    /** From now on failures of this command are logged under {@code logDir} (created when first written). */
    static void use(Path logDir) {
        directory = logDir;
    }

    static void reset() {
        directory = null;
    }

    /** The run's log directory, or null before the command has one. */
    static Path directory() {
        return directory;
    }

    /**
     * Appends {@code error}'s stack trace under a header to the run's log, or, without a run and when
     * {@code withoutRun} is true, to a new file under the temporary directory. Returns the file, or null when
     * nothing was written (no place for it, or the write itself failed: the one-line message still stands).
     */
    static Path write(String command, String headline, Throwable error, boolean withoutRun) {
        Path dir = directory;
        String rank = io.dtrain.parallel.sched.SlurmEnvironment.current().getOrDefault("RANK", "0");
        Path file;
        if (dir != null) {
            file = dir.resolve(command + "-rank" + rank + ".log");
        } else if (withoutRun) {
            String stamp = DateTimeFormatter.ofPattern("yyyyMMdd-HHmmss", Locale.ROOT).withZone(ZoneOffset.UTC)
                    .format(Instant.now());
            file = Path.of(System.getProperty("java.io.tmpdir"), "dtrain-" + System.getProperty("user.name"),
                    command + "-" + stamp + "-pid" + ProcessHandle.current().pid() + ".log");
        } else {
            return null;
        }
        StringWriter trace = new StringWriter();
        PrintWriter w = new PrintWriter(trace);
        w.println("=== " + Instant.now() + " dtrain " + command + " (pid " + ProcessHandle.current().pid() + ", rank "
                + rank + ") failed");
        w.println(headline);
        error.printStackTrace(w);
        w.println();
        w.flush();
        try {
            Files.createDirectories(file.getParent());
            Files.writeString(file, trace.toString(), StandardCharsets.UTF_8, StandardOpenOption.CREATE,
                    StandardOpenOption.APPEND);
            return file;
        } catch (IOException | RuntimeException e) {
            return null;  // e.g. the disk that just filled up: the message on the console is what counts
        }
    }
}
