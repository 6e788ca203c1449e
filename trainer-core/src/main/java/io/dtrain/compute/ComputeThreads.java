package io.dtrain.compute;

/**
^ * The process's one team of compute threads (the fused engine, the optimizer) (OMP_NUM_THREADS, as the launcher sizes it per
 * worker, else every core), made on first use and shared by every stage: one process, one set of threads.
 */
public final class ComputeThreads {
    private static Workers shared;

    private ComputeThreads() {
    }

    public static synchronized Workers shared() {
        if (shared == null) {
            shared = new Workers(Workers.defaultSize());
        }
        return shared;
    }
}
