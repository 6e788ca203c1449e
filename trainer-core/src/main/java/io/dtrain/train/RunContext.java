package io.dtrain.train;

import io.dtrain.parallel.ProcessGroup;
import io.dtrain.pipeline.PipelineGroups;
import io.dtrain.train.dp.DataParallelSync;

/**
 * Where this process sits in the job: its rank, its data-parallel group, how gradients are synchronised, and
 * (with pipeline parallelism) its stage and the groups around it. A single process is rank 0 of 1 with
 * {@link GradientSync#LOCAL}; {@link #dataParallel} makes every member of a process group one data-parallel
 * replica; {@link #of} splits the world into pipeline stages x replicas.
 *
 * @param pipeline null without pipeline parallelism (P = 1)
 */
public record RunContext(int rank, int worldSize, int dataParallelRank, int dataParallelSize, GradientSync gradientSync,
                         PipelineGroups pipeline) {

    public RunContext(int rank, int worldSize, int dataParallelRank, int dataParallelSize, GradientSync gradientSync) {
        this(rank, worldSize, dataParallelRank, dataParallelSize, gradientSync, null);
    }

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

    /**
     * {@code pipelineStages} = 1: {@link #dataParallel}. Otherwise world = P stages x D replicas: gradients are
     * averaged over the D ranks of this rank's stage; close the pipeline groups (before the world) when done.
     */
    public static RunContext of(ProcessGroup world, int pipelineStages, boolean tiedEmbeddings) {
        if (pipelineStages <= 1) {
            return dataParallel(world);
        }
        PipelineGroups p = PipelineGroups.create(world, pipelineStages, tiedEmbeddings);
        GradientSync sync = p.dataParallel() == null ? GradientSync.LOCAL : new DataParallelSync(p.dataParallel());
        return new RunContext(world.worldRank(), world.size(), p.replica(), p.replicas(), sync, p);
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
