package io.dtrain.compute;

import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.LockSupport;

/**
 * A fixed team of compute threads that run one {@link Region} together, SPMD style (as an OpenMP parallel region):
 * every thread runs the same code, takes its share of each loop with {@link Team#from}/{@link Team#to}, and
 * meets the others at {@link Team#barrier()} where a later op reads what another thread wrote. The calling thread
 * is member 0, so a team of one is just a call.
 *
 * <p>One dispatch per region (a stage's whole forward or backward), not per op: waking threads costs tens of
 * microseconds, a barrier between two running threads well under one. Idle members spin briefly, then park.
 * Nothing is allocated per region. A failure in any member fails every member's next barrier and is rethrown to
 * the caller, so a bug cannot leave the team waiting.
 */
public final class Workers implements AutoCloseable {
    /** Code every member of the team runs. */
    @FunctionalInterface
    public interface Region {
        void run(Team team);
    }

    /** What one member of a running region sees. */
    public static final class Team {
        private final Workers workers;
        private final int index;

        private Team(Workers workers, int index) {
            this.workers = workers;
            this.index = index;
        }

        public int index() {
            return index;
        }

        public int size() {
            return workers.size;
        }

        /** Start of this member's share of {@code [0, n)}: contiguous, balanced, in member order. */
        public int from(int n) {
            return (int) ((long) n * index / workers.size);
        }

        /** End (exclusive) of this member's share of {@code [0, n)}. */
        public int to(int n) {
            return (int) ((long) n * (index + 1) / workers.size);
        }

        /** Waits until every member has arrived; a member's failure fails the others here. */
        public void barrier() {
            workers.await(this);
        }

        public boolean isLeader() {
            return index == 0;
        }
    }

    private static final int SPINS_BEFORE_YIELD = 20_000;
    private static final long SPIN_NANOS_BEFORE_PARK = 200_000;

    private final int size;
    private final Team[] teams;
    private final Thread[] threads;
    private final AtomicInteger arrived = new AtomicInteger();
    private volatile int barrierGeneration;
    private volatile long regionGeneration;
    private final AtomicInteger finished = new AtomicInteger();
    private volatile Region region;
    private volatile Throwable failure;
    private volatile boolean closed;

    public Workers(int size) {
        if (size < 1) {
            throw new IllegalArgumentException("a team needs at least one thread, got " + size);
        }
        this.size = size;
        this.teams = new Team[size];
        for (int i = 0; i < size; i++) {
            teams[i] = new Team(this, i);
        }
        this.threads = new Thread[size - 1];
        for (int i = 1; i < size; i++) {
            Team team = teams[i];
            Thread t = new Thread(() -> memberLoop(team), "dtrain-compute-" + i);
            t.setDaemon(true);
            threads[i - 1] = t;
            t.start();
        }
    }

    /** The number of compute threads for this process: OMP_NUM_THREADS as the launcher sets it, else every core. */
    public static int defaultSize() {
        String omp = System.getenv("OMP_NUM_THREADS");
        if (omp != null && !omp.isBlank()) {
            try {
                return Math.max(1, Integer.parseInt(omp.strip()));
            } catch (NumberFormatException e) {
                // an unparsable value is OpenMP's problem too; fall through to every core
            }
        }
        return Runtime.getRuntime().availableProcessors();
    }

    public int size() {
        return size;
    }

    /** Runs {@code r} on every member (the caller is member 0); returns when all are done. Not reentrant. */
    public void run(Region r) {
        if (closed) {
            throw new IllegalStateException("compute threads are closed");
        }
        if (size == 1) {
            r.run(teams[0]);
            return;
        }
        failure = null;
        arrived.set(0);
        finished.set(0);
        region = r;
        regionGeneration++;
        for (Thread t : threads) {
            LockSupport.unpark(t);
        }
        try {
            r.run(teams[0]);
        } catch (Throwable e) {
            fail(e);
        }
        long spinStart = System.nanoTime();
        int spins = 0;
        while (finished.get() < size - 1) {
            if (++spins > SPINS_BEFORE_YIELD && System.nanoTime() - spinStart > SPIN_NANOS_BEFORE_PARK) {
                Thread.yield();
            } else {
                Thread.onSpinWait();
            }
        }
        region = null;
        Throwable f = failure;
        if (f != null) {
            if (f instanceof RuntimeException re) {
                throw re;
            }
            if (f instanceof Error err) {
                throw err;
            }
            throw new IllegalStateException("compute thread failed", f);
        }
    }

    private void fail(Throwable e) {
        if (failure == null) {
            failure = e;
        }
        barrierGeneration++; // release members waiting at a barrier; they see the failure and stop
    }

    private void memberLoop(Team team) {
        long seen = 0;
        while (!closed) {
            long spinStart = System.nanoTime();
            while (regionGeneration == seen && !closed) {
                if (System.nanoTime() - spinStart > SPIN_NANOS_BEFORE_PARK) {
                    LockSupport.parkNanos(this, 1_000_000);
                } else {
                    Thread.onSpinWait();
                }
            }
            if (closed) {
                return;
            }
            seen = regionGeneration;
            try {
                region.run(team);
            } catch (Throwable e) {
                fail(e);
            }
            finished.incrementAndGet();
        }
    }

    private void await(Team team) {
        if (size == 1) {
            return;
        }
        checkFailure();
        int generation = barrierGeneration;
        if (arrived.incrementAndGet() == size) {
            arrived.set(0);
            barrierGeneration = generation + 1;
            return;
        }
        int spins = 0;
        while (barrierGeneration == generation) {
            if (++spins > SPINS_BEFORE_YIELD) {
                Thread.yield();
            } else {
                Thread.onSpinWait();
            }
        }
        checkFailure();
    }

    private void checkFailure() {
        if (failure != null) {
            throw new MemberFailed();
        }
    }

    /** Thrown at a barrier in the members that did not fail themselves; the caller sees the original failure. */
    private static final class MemberFailed extends RuntimeException {
        MemberFailed() {
            super("another compute thread failed", null, false, false);
        }
    }

    @Override
    public void close() {
        closed = true;
        for (Thread t : threads) {
            LockSupport.unpark(t);
        }
    }
}
