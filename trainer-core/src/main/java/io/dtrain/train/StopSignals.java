package io.dtrain.train;

import java.io.PrintStream;
import java.time.Duration;
import java.util.Locale;

/**
 * What a batch scheduler sends before it takes the machine away: SIGTERM (Slurm at preemption or the time limit,
 * Kubernetes, spot reclaim) and SIGUSR1 (Slurm's {@code --signal=USR1@120}). The first makes the run finish its
 * current step, write a checkpoint with every rank and exit with {@link #EXIT_REQUEUE}; a second SIGTERM, or the
 * deadline passing, stops the process at once (copies of a signal within 2 s are one: a scheduler signals every
 * process of a job and {@code dtrain launch} forwards the signal too). A checkpoint is written to a temporary
 * directory and renamed, so stopping at any moment leaves the previous checkpoint whole.
 */
public final class StopSignals {
    /** Exit status of a run that stopped on a signal after writing its checkpoint: run the same command again. */
    public static final int EXIT_REQUEUE = 75;
    /** Exit status of a run stopped at once by a second signal or the deadline (128 + SIGTERM). */
    public static final int EXIT_STOPPED = 143;

    /** Signals this close together are one delivery (see onSignal). */
    public static final Duration SAME_DELIVERY = Duration.ofSeconds(2);

    private static volatile String requestedBy;
    private static volatile long requestedAtNanos;
    private static volatile boolean installed;

    private StopSignals() {
    }

    /**
     * Installs the handlers (once per process). {@code deadline}: how long after the first signal the process may
     * take to checkpoint before it stops at once.
     */
    public static synchronized void install(PrintStream out, Duration deadline) {
        if (installed) {
            return;
        }
        installed = true;
        for (String name : new String[] {"TERM", "USR1"}) {
            try {
                sun.misc.Signal.handle(new sun.misc.Signal(name), s -> onSignal("SIG" + name, out, deadline));
            } catch (IllegalArgumentException e) {
                // a JVM that reserves the signal (-Xrs): the default behaviour stays
            }
        }
    }

    private static void onSignal(String signal, PrintStream out, Duration deadline) {
        if (requestedBy != null) {
            // A scheduler signals every process of a job step and dtrain launch forwards the same signal to its
            // workers: copies arriving together are one request, not the second SIGTERM that means "stop now".
            if ("SIGTERM".equals(signal) && System.nanoTime() - requestedAtNanos > SAME_DELIVERY.toNanos()) {
                out.println("stop: second " + signal + ": stopping now (the previous checkpoint is intact)");
                out.flush();
                Runtime.getRuntime().halt(EXIT_STOPPED);
            }
            return;
        }
        requestedBy = signal;
        requestedAtNanos = System.nanoTime();
        out.printf(Locale.ROOT, "stop: %s received: finishing this step, then a checkpoint (a second SIGTERM or %d s"
                + " stop at once)%n", signal, deadline.toSeconds());
        out.flush();
        Thread deadlineWatch = new Thread(() -> {
            try {
                Thread.sleep(deadline.toMillis());
            } catch (InterruptedException e) {
                return;
            }
            out.println("stop: no checkpoint " + deadline.toSeconds() + " s after " + signal
                    + ": stopping now (the previous checkpoint is intact)");
            out.flush();
            Runtime.getRuntime().halt(EXIT_STOPPED);
        }, "dtrain-stop-deadline");
        deadlineWatch.setDaemon(true);
        deadlineWatch.start();
    }

    /** The signal that asked this process to stop, or null. */
    public static String requestedBy() {
        return requestedBy;
    }

    /** For tests in one JVM: as if {@code signal} had arrived (no deadline). */
    static void request(String signal) {
        requestedBy = signal;
    }

    /** For tests in one JVM. */
    static void clear() {
        requestedBy = null;
    }
}
