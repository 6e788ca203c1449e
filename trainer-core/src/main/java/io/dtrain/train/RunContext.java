package io.dtrain.train;

import io.dtrain.parallel.ProcessGroup;
import io.dtrain.parallel.pipeline.PipelineGroups;

/**
 * Where this process sits in the job: its rank, its data-parallel group and (with pipeline parallelism) its stage
 * and the groups around it. {@link TrainStep#create} picks the step's layout from it. A single process is rank 0
 * of 1 ({@link #single}); {@link #dataParallel} makes every member of a process group one data-parallel replica;
 * {@link #of} splits the world into pipeline stages x replicas.
 *
 * @param world    the job's process group; null for a single process
 * @param pipeline this rank's stage and its groups; null without pipeline parallelism (P = 1)
 */
public record RunContext(int rank, int worldSize, int dataParallelRank, int dataParallelSize, ProcessGroup world,
                         PipelineGroups pipeline) implements AutoCloseable {

    /** A place in a job without its groups: for recording metrics as rank {@code rank} would. */
    public RunContext(int rank, int worldSize, int dataParallelRank, int dataParallelSize) {
        this(rank, worldSize, dataParallelRank, dataParallelSize, null, null);
    }

    public static RunContext single() {
        return new RunContext(0, 1, 0, 1);
    }

    /** Pure data parallelism over {@code world}: each member is one replica, gradients averaged by AllReduce. */
    public static RunContext dataParallel(ProcessGroup world) {
        if (world.size() == 1) {
            return single();
        }
        return new RunContext(world.worldRank(), world.size(), world.rank(), world.size(), world, null);
    }

    /**
     * {@code pipelineStages} = 1: {@link #dataParallel}. Otherwise world = P stages x D replicas, the groups formed
     * here; {@link #close} closes them (before the world).
     */
    public static RunContext of(ProcessGroup world, int pipelineStages, boolean tiedEmbeddings) {
        if (pipelineStages <= 1) {
            return dataParallel(world);
        }
        PipelineGroups p = PipelineGroups.create(world, pipelineStages, tiedEmbeddings);
        return new RunContext(world.worldRank(), world.size(), p.replica(), p.replicas(), world, p);
    }

    /** This process's rank among the job's processes on its host (0 for one process). */
    public int localRank() {
        return world == null ? 0 : world.localRank();
    }

    /** This rank's pipeline stage (0 without a pipeline). */
    public int stage() {
        return pipeline == null ? 0 : pipeline.stage();
    }

    /** Prints the console lines (rank 0; other ranks only warn). */
    public boolean isLogger() {
        return rank == 0;
    }

    /** Writes parameters and the manifest of checkpoints. */
    public boolean isCheckpointWriter() {
        return rank == 0;
    }

    /** This host's wall clock minus rank 0's, in milliseconds, as measured at rendezvous (0 for one process). */
    public double clockOffsetToRank0Ms() {
        // ProcessGroup reports rank 0's clock minus ours; the metrics want ours minus rank 0's.
        return world == null ? 0 : -world.clockOffsetToRank0Nanos() / 1e6;
    }

    /** Closes the pipeline's groups, if any (the world belongs to whoever opened it). */
    @Override
    public void close() {
        if (pipeline != null) {
            pipeline.close();
        }
    }
}
