package io.dtrain.launcher;

import java.io.BufferedReader;
import io.dtrain.train.StopSignals;

import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The worker processes of one node of a launched job: starts them, prints their output prefixed with the rank (rank
 * 0 in full, the others only warnings and errors unless {@code allRanksOutput}), waits for them, and on the first
 * failure stops the others (SIGTERM, then SIGKILL after the grace period) and names the failed rank with the end
 * of its output. Closing it, or this JVM exiting, stops every worker still running.
 */
final class WorkerSupervisor implements AutoCloseable {
    private static final int TAIL_LINES = 40;
    private static final Pattern WARNING_OR_ERROR = Pattern.compile(
            "(?i)(\\bWARN|\\bERROR\\b|\\berror:|exception|\\bFATAL\\b|dtrain thread dump)");

    /** A worker's one-line user-facing failure, as {@link ErrorHandler} prints it. */
    private static final Pattern ERROR_LINE = Pattern.compile("dtrain [a-z-]+" + Pattern.quote(ErrorHandler.ERROR_MARK)
            + "(.*)");

    /** Warnings every ND4J process prints at start; repeated by every rank they only hide the real ones. */
    private static final Pattern KNOWN_NOISE = Pattern.compile("Duplicate TF op mapping found");

    private final PrintStream out;
    private final PrintStream err;
    private final boolean allRanksOutput;
    private final Path logDir;
    private final int stopGraceSeconds;
    private final List<Worker> workers = new CopyOnWriteArrayList<>();
    /** Exited workers of the current round, and {@link #requestStop}'s reasons (Strings). */
    private final LinkedBlockingQueue<Object> events = new LinkedBlockingQueue<>();
    /** The restart round of the workers running now (their logs are appended to from round 1 on). */
    private int round;
    private final Thread stopOnExit = new Thread(() -> workers.forEach(w -> w.process.destroyForcibly()),
            "dtrain-launch-stop");

    /** One worker process and what it printed. */
    static final class Worker {
        final int rank;
        final int localRank;
        final Process process;
        final ArrayDeque<String> tail = new ArrayDeque<>();
        /** The one-line message of the user-facing failure it printed ("dtrain CMD: error: ..."), or null. */
        volatile String error;
        Thread pump;

        Worker(int rank, int localRank, Process process) {
            this.rank = rank;
            this.localRank = localRank;
            this.process = process;
        }

        synchronized void remember(String line) {
            if (tail.size() == TAIL_LINES) {
                tail.removeFirst();
            }
            tail.addLast(line);
            Matcher m = ERROR_LINE.matcher(line);
            if (m.matches()) {
                error = m.group(1);
            }
        }

        synchronized List<String> lastLines() {
            return new ArrayList<>(tail);
        }
    }

    /**
     * @param logDir           also write each worker's full output to {@code logDir/rank<r>.log} (null: no logs)
     * @param stopGraceSeconds after a failure, how long the other workers get to exit on SIGTERM
     */
    WorkerSupervisor(PrintStream out, PrintStream err, boolean allRanksOutput, Path logDir, int stopGraceSeconds)
            throws IOException {
        this.out = out;
        this.err = err;
        this.allRanksOutput = allRanksOutput;
        this.logDir = logDir;
        this.stopGraceSeconds = stopGraceSeconds;
        if (logDir != null) {
            Files.createDirectories(logDir);
        }
        Runtime.getRuntime().addShutdownHook(stopOnExit);
    }

    /** Starts one worker (its output merged into one stream) and begins printing its output. */
    void start(int rank, int localRank, ProcessBuilder builder) throws IOException {
        Worker w = new Worker(rank, localRank, builder.redirectErrorStream(true).start());
        workers.add(w);
        w.pump = pump(w);
        w.process.onExit().thenRun(() -> events.add(w));
    }

    /**
     * How this node's workers of one round ended: all finished ({@code failed} null, {@code stopReason} null), a
     * worker failed ({@code failed}; the others were stopped in {@code stopSeconds}), or {@link #requestStop} stopped
     * them ({@code stopReason}).
     */
    record Outcome(Worker failed, int code, String stopReason, int stoppedOnSignal, double stopSeconds) {
        /** A worker's failure as one phrase: which rank, which process, how it ended. */
        String cause(int nodeRank) {
            String how = code > 128 && code < 128 + 32 ? "was killed by" + describeExit(code).replaceFirst("^ \\(killed by", "")
                    .replaceFirst("\\)$", "") + " (exit code " + code + ")"
                    : "exited with code " + code + (failed.error != null ? ": " + failed.error : "");
            return String.format(Locale.ROOT, "rank %d (node %d, local rank %d, pid %d) %s", failed.rank, nodeRank,
                    failed.localRank, failed.process.pid(), how);
        }
    }

    /** Told of a worker's failure as soon as it is seen, before the others are stopped. */
    interface FailureListener {
        void failed(Outcome failure);
    }

    private volatile FailureListener onFailure = failure -> { };

    /** {@code listener} hears of each round's first failure first (dtrain launch tells node 0's store). */
    void onFailure(FailureListener listener) {
        this.onFailure = listener;
    }

    /** Waits for all workers; on the first failure stops the others and reports it. Returns the launcher's exit code. */
    int awaitAll() throws InterruptedException {
        return report(awaitOutcome());
    }

    /** Makes {@link #awaitOutcome} stop every worker and return (another node's worker failed). */
    void requestStop(String reason) {
        events.add(reason);
    }

    /** Waits until every worker of this round exited, one failed or {@link #requestStop}; stops the others then. */
    Outcome awaitOutcome() throws InterruptedException {
        int stoppedOnSignal = 0;
        for (int done = 0; done < workers.size(); done++) {
            Object event = events.take();
            if (event instanceof String reason) {
                long t0 = System.nanoTime();
                stopAll();
                return new Outcome(null, 0, reason, stoppedOnSignal, (System.nanoTime() - t0) / 1e9);
            }
            Worker w = (Worker) event;
            int code = w.process.exitValue();
            if (code == 0) {
                continue;
            }
            if (code == StopSignals.EXIT_REQUEUE) {
                // a stop signal: every rank checkpoints together and exits so; wait for the others
                stoppedOnSignal++;
                continue;
            }
            long t0 = System.nanoTime();
            onFailure.failed(new Outcome(w, code, null, stoppedOnSignal, 0));
            stopAll();
            w.pump.join(2_000);
            return new Outcome(w, code, null, stoppedOnSignal, (System.nanoTime() - t0) / 1e9);
        }
        return new Outcome(null, 0, null, stoppedOnSignal, 0);
    }

    /** Forgets the stopped workers of this round: the next ones belong to {@code nextRound}. */
    void nextRound(int nextRound) throws InterruptedException {
        stopAll();
        for (Worker w : workers) {
            w.pump.join(2_000);
        }
        workers.clear();
        events.clear();
        round = nextRound;
    }

    /** Prints how the round ended (the failure, or the stop for requeue, or success); returns the exit code. */
    int report(Outcome outcome) {
        int stoppedOnSignal = outcome.stoppedOnSignal();
        Worker w = outcome.failed();
        if (w != null) {
            int code = outcome.code();
            if (code == ErrorHandler.EXIT_USER_ERROR && w.error != null) {
                // The worker said what happened in one line, naming the rank at fault first (a stalled peer, a bad
                // config): that line leads, then who reported it.
                String stopped = workers.size() == 1 ? "" : String.format(Locale.ROOT, "; stopped the other %d"
                        + " worker(s) of this node in %.1f s", workers.size() - 1, outcome.stopSeconds());
                err.printf(Locale.ROOT, "dtrain launch%s%s (reported by rank %d, pid %d, exit code %d%s%s)%n",
                        ErrorHandler.ERROR_MARK, w.error, w.rank, w.process.pid(), code, stopped,
                        logDir == null ? "" : "; full output in " + logDir.toAbsolutePath());
                err.flush();
                return code;
            }
            StringBuilder msg = new StringBuilder(String.format(Locale.ROOT,
                    "dtrain launch: rank %d (local rank %d, pid %d) failed with exit code %d%s; stopped the other %d "
                            + "worker(s) of this node in %.1f s.%nLast lines of rank %d's output:%n", w.rank, w.localRank,
                    w.process.pid(), code, describeExit(code), workers.size() - 1, outcome.stopSeconds(), w.rank));
            for (String line : w.lastLines()) {
                msg.append("  [rank ").append(w.rank).append("] ").append(line).append(System.lineSeparator());
            }
            if (logDir != null) {
                msg.append("Full logs: ").append(logDir.toAbsolutePath()).append(System.lineSeparator());
            }
            err.print(msg);
            err.flush();
            return code > 0 && code < 128 ? code : 1;
        }
        if (stoppedOnSignal > 0) {
            out.printf(Locale.ROOT, "launch: %d worker(s) of this node stopped on a signal after writing their checkpoint:"
                    + " exit status %d; run the same command again to continue%n", stoppedOnSignal, StopSignals.EXIT_REQUEUE);
            return StopSignals.EXIT_REQUEUE;
        }
        out.printf(Locale.ROOT, "launch: all %d worker(s) of this node finished%n", workers.size());
        return 0;
    }

    /** Sends {@code signal} (e.g. "TERM", "USR1") to every worker still running. */
    void forward(String signal) {
        for (Worker w : workers) {
            if (w.process.isAlive()) {
                try {
                    new ProcessBuilder("kill", "-" + signal, Long.toString(w.process.pid())).inheritIO().start();
                } catch (IOException e) {
                    err.println("dtrain launch: could not send SIG" + signal + " to rank " + w.rank + ": " + e.getMessage());
                }
            }
        }
    }

    /** Kills every worker at once (a second stop signal). */
    void killAll() {
        workers.forEach(w -> w.process.destroyForcibly());
    }

    /** Stops every worker still running and waits for their output to be printed. */
    @Override
    public void close() throws InterruptedException {
        stopAll();
        for (Worker w : workers) {
            if (w.pump != null) {
                w.pump.join(2_000);
            }
        }
        try {
            Runtime.getRuntime().removeShutdownHook(stopOnExit);
        } catch (IllegalStateException e) {
            // the JVM is already shutting down
        }
    }

    private static String describeExit(int code) {
        if (code > 128 && code < 128 + 32) {
            int signal = code - 128;
            String name = switch (signal) {
                case 9 -> "SIGKILL";
                case 15 -> "SIGTERM";
                case 6 -> "SIGABRT";
                case 11 -> "SIGSEGV";
                case 2 -> "SIGINT";
                default -> "signal " + signal;
            };
            return " (killed by " + name + (signal == 9 ? ": out of memory, or killed from outside?" : "") + ")";
        }
        return "";
    }

    /** SIGTERM to every live worker, then SIGKILL to those still running after the grace period. */
    private void stopAll() {
        workers.forEach(w -> w.process.destroy());
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(stopGraceSeconds);
        for (Worker w : workers) {
            try {
                long left = deadline - System.nanoTime();
                if (left <= 0 || !w.process.waitFor(left, TimeUnit.NANOSECONDS)) {
                    w.process.destroyForcibly();
                    w.process.waitFor(5, TimeUnit.SECONDS);
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                w.process.destroyForcibly();
            }
        }
    }

    /** Prefixes each line with the rank; rank 0 in full, others warnings/errors (and their stack traces) only. */
    private Thread pump(Worker w) throws IOException {
        Writer log = logDir == null ? null : Files.newBufferedWriter(logDir.resolve("rank" + w.rank + ".log"),
                StandardCharsets.UTF_8, round == 0 ? new java.nio.file.OpenOption[0]
                        : new java.nio.file.OpenOption[] {java.nio.file.StandardOpenOption.CREATE, java.nio.file.StandardOpenOption.APPEND});
        if (log != null && round > 0) {
            log.write("---- restart round " + round + " ----\n");
        }
        boolean everything = allRanksOutput || w.rank == 0;
        String prefix = "[rank " + w.rank + "] ";
        Thread t = new Thread(() -> {
            boolean printingError = false;
            try (InputStream in = w.process.getInputStream();
                 BufferedReader reader = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8))) {
                for (String line; (line = reader.readLine()) != null; ) {
                    w.remember(line);
                    if (log != null) {
                        log.write(line);
                        log.write('\n');
                        log.flush();
                    }
                    boolean continuation = printingError && (line.startsWith("\t") || line.startsWith(" ")
                            || line.startsWith("Caused by") || line.isEmpty());
                    printingError = (WARNING_OR_ERROR.matcher(line).find() && !KNOWN_NOISE.matcher(line).find())
                            || continuation;
                    if (everything || printingError) {
                        out.println(prefix + line);
                    }
                }
            } catch (IOException e) {
                // the worker is gone; what it printed so far is kept
            } finally {
                if (log != null) {
                    try {
                        log.close();
                    } catch (IOException ignored) {
                        // best effort
                    }
                }
            }
        }, "dtrain-launch-output-rank" + w.rank);
        t.setDaemon(true);
        t.start();
        return t;
    }
}
