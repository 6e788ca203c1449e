package io.dtrain.parallel.pipeline;

import io.dtrain.parallel.PeerLinks;
import io.dtrain.parallel.ProcessGroup;

import java.util.stream.IntStream;

/**
 * Where this rank sits in a world of P pipeline stages x D data-parallel replicas, and the groups it talks in.
 * World rank r is stage {@code r / D}, replica {@code r % D} (as Megatron orders them: the replicas of a stage
 * are neighbours, so with one node per stage their gradient AllReduce stays on the node).
 *
 * <ul>
 *   <li>{@link #dataParallel()}: the D ranks holding the same stage, which average that stage's gradients (null for D = 1);
 *   <li>{@link #tiedEmbedding()}: stage 0 and the last stage of one replica, which sum the gradients of their two
 *       copies of the tied embedding every step (tied embeddings only);
 *   <li>{@link #links()}: point-to-point links to the previous and next stage of the same replica (activations
 *       and gradients);
 *   <li>{@link #world()}: per-step scalars (loss, squared gradient norm) and checkpoint barriers.
 * </ul>
 * Only ranks and groups: what travels in them is the trainer's business.
 */
public final class PipelineGroups implements AutoCloseable {
    private final ProcessGroup world;
    private final int stages;
    private final int replicas;
    private final int stage;
    private final int replica;
    private final ProcessGroup dataParallel;
    private final ProcessGroup tiedEmbedding;
    private final PeerLinks links;

    /**
     * Every rank of the world calls this with the same arguments. Groups are formed in a fixed order (data-parallel,
     * tied embedding, links) so that no rank waits in one group for a member still forming another.
     */
    public static PipelineGroups create(ProcessGroup world, int stages, boolean tiedEmbeddings) {
        if (stages < 1 || world.size() % stages != 0) {
            throw new IllegalArgumentException("parallel.pipeline.stages=" + stages + " does not divide the world of "
                    + world.size() + " ranks: launch P x D processes (e.g. --nproc-per-node " + stages + " for D = 1)");
        }
        return new PipelineGroups(world, stages, tiedEmbeddings);
    }

    private PipelineGroups(ProcessGroup world, int stages, boolean tiedEmbeddings) {
        this.world = world;
        this.stages = stages;
        this.replicas = world.size() / stages;
        this.stage = world.worldRank() / replicas;
        this.replica = world.worldRank() % replicas;
        ProcessGroup dp = null;
        ProcessGroup tied = null;
        PeerLinks opened = null;
        try {
            if (replicas > 1) {
                dp = world.subGroup(IntStream.range(0, replicas).map(k -> rankOf(stage, k)).toArray());
            }
            if (tiedEmbeddings && stages > 1 && (stage == 0 || stage == stages - 1)) {
                tied = world.subGroup(rankOf(0, replica), rankOf(stages - 1, replica));
            }
            if (stages > 1) {
                int[] neighbours = IntStream.of(stage - 1, stage + 1).filter(s -> s >= 0 && s < stages)
                        .map(s -> rankOf(s, replica)).toArray();
                opened = world.peerLinks("pipeline", neighbours);
            }
        } catch (RuntimeException e) {
            closeQuietly(opened);
            closeQuietly(tied);
            closeQuietly(dp);
            throw e;
        }
        this.dataParallel = dp;
        this.tiedEmbedding = tied;
        this.links = opened;
    }

    /** The world rank of {@code stageIndex}'s replica {@code replicaIndex}. */
    public int rankOf(int stageIndex, int replicaIndex) {
        return stageIndex * replicas + replicaIndex;
    }

    /** P. */
    public int stages() {
        return stages;
    }

    public int stage() {
        return stage;
    }

    public boolean isLastStage() {
        return stage == stages - 1;
    }

    /** D. */
    public int replicas() {
        return replicas;
    }

    /** This rank's index among its stage's D replicas (its data-parallel rank). */
    public int replica() {
        return replica;
    }

    public ProcessGroup world() {
        return world;
    }

    /** The D ranks of this stage, or null for D = 1. */
    public ProcessGroup dataParallel() {
        return dataParallel;
    }

    /** Stage 0 and the last stage of this replica with tied embeddings; null elsewhere. */
    public ProcessGroup tiedEmbedding() {
        return tiedEmbedding;
    }

    /** Links to the neighbouring stages of this replica (peers are world ranks, see {@link #rankOf}); null for P = 1. */
    public PeerLinks links() {
        return links;
    }

    /** Closes the groups this created (not the world). */
    @Override
    public void close() {
        closeQuietly(links);
        closeQuietly(tiedEmbedding);
        closeQuietly(dataParallel);
    }

    private static void closeQuietly(AutoCloseable c) {
        if (c == null) {
            return;
        }
        try {
            c.close();
        } catch (Exception e) {
            // closing after a failure: the process is ending anyway
        }
    }

    @Override
    public String toString() {
        return "pipeline stage " + stage + " of " + stages + ", replica " + replica + " of " + replicas;
    }
}
