package io.dtrain.train;

import io.dtrain.parallel.ProcessGroup;
import io.dtrain.train.dp.DataParallelSync;

/**
 * Where this process sits in the job: its rank, the data-parallel group, and how gradients are synchronised.
 * A single process is rank 0 of 1 with {@link GradientSync#LOCAL}; {@link #dataParallel} makes every member of
 * a process group one data-parallel replica.
 */
public record RunContext(int rank, int worldSize, int dataParallelRank, int dataParallelSize, GradientSync gradientSync) {

    public static RunContext single() {
        return new RunContext(0, 1, 0, 1, GradientSync.LOCAL);
    }

    /** Pure data parallelism over {@code world}: each member is one replica, gradients averaged by AllReduce. */
    public static RunContext dataParallel(ProcessGroup world) {
        if (world.size() == 1) {
            return single();
        }
        return new RunContext(world.worldRank(), world.size(), world.rank(), world.size(), new DataParallelSync(world));
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
