package io.dtrain.train;

/**
 * Where this process sits in the job: its rank, the data-parallel group, and how gradients are synchronised.
 * A single process is rank 0 of 1 with {@link GradientSync#LOCAL}; the data-parallel issue builds one from the
 * process group.
 */
public record RunContext(int rank, int worldSize, int dataParallelRank, int dataParallelSize, GradientSync gradientSync) {

    public static RunContext single() {
        return new RunContext(0, 1, 0, 1, GradientSync.LOCAL);
    }

    /** Prints the console lines (rank 0; other ranks only warn). */
    public boolean isLogger() {
        return rank == 0;
    }

    /** Writes parameters and the manifest of checkpoints. */
    public boolean isCheckpointWriter() {
        return rank == 0;
    }
}
