package io.dtrain.launcher;

import io.dtrain.parallel.rendezvous.RendezvousClient;
import io.dtrain.parallel.rendezvous.RendezvousServer;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Locale;
import java.util.Optional;

/**
 * {@code dtrain launch --max-restarts K}: runs this node's workers in restart rounds, coordinated with the other
 * nodes' launchers through node 0's rendezvous store (which the launcher on node 0 hosts, so it outlives the workers).
 *
 * <p>Round r: every launcher starts its workers with {@code DTRAIN_RESTART_COUNT=r} (they resume from the latest
 * complete checkpoint: {@code DTRAIN_RESUME=auto}). The first launcher whose worker fails publishes the cause under
 * {@code agent/stop/<r>}; every launcher sees it (its own worker's exit, or the key within ~100 ms), stops its
 * workers and counts itself in {@code agent/stopped/<r>}. When all nodes have, the launcher on node 0 starts round
 * r+1 in the store ({@link RendezvousServer#newRound}: ranks handed over, the round's keys dropped, workers of round
 * r refused) and publishes {@code agent/go/<r+1>}; then every launcher starts its workers again. After K restarts the
 * next failure ends the job: one line naming it, the failed worker's exit code.
 *
 * <p>A launcher that cannot start its workers at all (no such program: a restart would fail the same way, and without
 * it no round can complete) publishes the cause under {@code agent/end} before the round's stop, and every launcher
 * ends the job at once naming it, instead of waiting out the timeout for its stop and again for its restart.
 */
final class JobRestarts {
    /** Starts this node's workers of one round. */
    interface RoundStarter {
        void start(int round) throws IOException;
    }

    private static final String STOP = RendezvousServer.AGENT_PREFIX + "stop/";
    private static final String FAILURES = RendezvousServer.AGENT_PREFIX + "failures/";
    private static final String STOPPED = RendezvousServer.AGENT_PREFIX + "stopped/";
    private static final String GO = RendezvousServer.AGENT_PREFIX + "go/";
    private static final String END = RendezvousServer.AGENT_PREFIX + "end";

    private final PrintStream out;
    private final PrintStream err;
    private final RendezvousServer store;
    private final RendezvousClient agent;
    private final int nodeRank;
    private final int nnodes;
    private final int maxRestarts;
    private final Duration timeout;

    /**
     * @param store   the store this launcher hosts (node 0), else null
     * @param agent   this launcher's connection to the store
     * @param timeout how long a launcher waits for the others between rounds (the rendezvous timeout)
     */
    JobRestarts(PrintStream out, PrintStream err, RendezvousServer store, RendezvousClient agent, int nodeRank,
                int nnodes, int maxRestarts, Duration timeout) {
        this.out = out;
        this.err = err;
        this.store = store;
        this.agent = agent;
        this.nodeRank = nodeRank;
        this.nnodes = nnodes;
        this.maxRestarts = maxRestarts;
        this.timeout = timeout;
    }

    /** Runs rounds until the workers finish, stop for requeue, or fail once more than K restarts allow. */
    int run(WorkerSupervisor workers, RoundStarter starter) throws IOException, InterruptedException {
        for (int round = 0; ; round++) {
            try {
                starter.start(round);
            } catch (UserError e) {
                agent.set(END, ErrorHandler.EXIT_USER_ERROR + " " + e.getMessage());
                if (agent.add(FAILURES + round, 1) == 1) {
                    agent.set(STOP + round, ErrorHandler.EXIT_USER_ERROR + " " + e.getMessage());
                }
                throw e;
            }
            Thread watch = watchForStop(workers, round);
            WorkerSupervisor.Outcome outcome;
            try {
                outcome = workers.awaitOutcome();
            } finally {
                watch.interrupt();
            }
            if (outcome.failed() == null && outcome.stopReason() == null) {
                return workers.report(outcome); // finished, or stopped for requeue
            }
            long t0 = System.nanoTime();
            if (outcome.failed() != null && agent.add(FAILURES + round, 1) == 1) {
                agent.set(STOP + round, outcome.code() + " " + outcome.cause(nodeRank));
            }
            String stop = agent.getString(STOP + round, timeout);
            int code = Integer.parseInt(stop.substring(0, stop.indexOf(' ')));
            String cause = stop.substring(stop.indexOf(' ') + 1);
            Optional<byte[]> end = agent.tryGet(END);
            if (end.isPresent()) {
                String ended = new String(end.get(), StandardCharsets.UTF_8);
                err.printf(Locale.ROOT, "dtrain launch%s%s; the job cannot restart without that node's workers%n",
                        ErrorHandler.ERROR_MARK, ended.substring(ended.indexOf(' ') + 1));
                err.flush();
                return Integer.parseInt(ended.substring(0, ended.indexOf(' ')));
            }
            if (round >= maxRestarts) {
                err.printf(Locale.ROOT, "dtrain launch%s%s; the job gave up after %d restart(s) (--max-restarts %d)"
                                + " with exit code %d%n", ErrorHandler.ERROR_MARK, cause, round, maxRestarts, code);
                err.flush();
                return code > 0 && code < 128 ? code : 1;
            }
            out.printf(Locale.ROOT, "launch: restart %d of %d: %s; this node's workers stopped in %.1f s%n", round + 1,
                    maxRestarts, cause, outcome.stopSeconds());
            agent.add(STOPPED + round, 1);
            if (store != null) {
                awaitAllNodesStopped(round);
                store.newRound(round + 1);
                agent.set(GO + (round + 1), "go");
            } else {
                agent.get(GO + (round + 1), timeout);
            }
            workers.nextRound(round + 1);
            out.printf(Locale.ROOT, "launch: restart round %d: starting the workers again (every node stopped after %.1f s)%n",
                    round + 1, (System.nanoTime() - t0) / 1e9);
        }
    }

    /** Node 0: waits until the launcher of every node has stopped its workers of {@code round}. */
    private void awaitAllNodesStopped(int round) throws InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        long stopped;
        while ((stopped = agent.add(STOPPED + round, 0)) < nnodes) {
            if (System.nanoTime() > deadline) {
                throw new UserError(String.format(Locale.ROOT, "only %d of %d nodes' launchers stopped their workers"
                        + " within %d s to restart the job: is every node's dtrain launch still running?", stopped, nnodes,
                        timeout.toSeconds()));
            }
            Thread.sleep(50);
        }
    }

    /** A thread that stops this node's workers as soon as another node published a failure of {@code round}. */
    private Thread watchForStop(WorkerSupervisor workers, int round) {
        Thread t = new Thread(() -> {
            try {
                while (!Thread.currentThread().isInterrupted()) {
                    Optional<byte[]> stop = agent.tryGet(STOP + round);
                    if (stop.isPresent()) {
                        workers.requestStop(new String(stop.get(), StandardCharsets.UTF_8));
                        return;
                    }
                    Thread.sleep(100);
                }
            } catch (InterruptedException e) {
                // the round ended
            } catch (RuntimeException e) {
                // the store is gone: the workers lose it too and fail, which ends the round
            }
        }, "dtrain-launch-restart-watch");
        t.setDaemon(true);
        t.start();
        return t;
    }
}
