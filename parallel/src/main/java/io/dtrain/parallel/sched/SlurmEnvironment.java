package io.dtrain.parallel.sched;

import io.dtrain.common.UserFacingException;
import java.util.HashMap;
import java.util.Map;

/**
 * Reads where a process sits from Slurm's variables, so that {@code srun dtrain train ...} (one task per process)
 * and {@code srun dtrain launch ...} (one task per node) need no flags. torchrun's variables ({@code RANK},
 * {@code WORLD_SIZE}, ...) win when they are set: {@code dtrain launch} sets them for its workers.
 *
 * <p>Only a job step counts ({@code SLURM_STEP_NUM_TASKS} set, i.e. under {@code srun}): the body of a batch script
 * also sees {@code SLURM_JOB_ID} and {@code SLURM_NTASKS}, but it is one process, not the job's tasks.
 */
public final class SlurmEnvironment {
    /** Job ids map to rendezvous ports 20000-29999: below Linux's ephemeral range, one port per job id mod 10000. */
    static final int PORT_BASE = 20000;
    static final int PORT_SPAN = 10000;

    private SlurmEnvironment() {
    }

    /** This process's environment with Slurm's placement as torchrun's variables: what every rank-aware reader uses. */
    public static Map<String, String> current() {
        return asTorchrunVariables(System.getenv());
    }

    /** True when this process is a task of a Slurm job step. */
    public static boolean inJobStep(Map<String, String> env) {
        return present(env, "SLURM_JOB_ID") && present(env, "SLURM_STEP_NUM_TASKS") && present(env, "SLURM_PROCID");
    }

    /**
     * {@code env} with {@code RANK}, {@code WORLD_SIZE}, {@code LOCAL_RANK}, {@code MASTER_ADDR},
     * {@code MASTER_PORT}, {@code DTRAIN_JOB_ID} and {@code DTRAIN_NODE_ID} filled in from the Slurm job step, unless torchrun's variables are
     * set (then {@code env} itself).
     */
    public static Map<String, String> asTorchrunVariables(Map<String, String> env) {
        if (present(env, "RANK") || present(env, "WORLD_SIZE") || !inJobStep(env)) {
            return env;
        }
        Map<String, String> out = new HashMap<>(env);
        out.put("RANK", env.get("SLURM_PROCID"));
        out.put("WORLD_SIZE", env.get("SLURM_STEP_NUM_TASKS"));
        out.putIfAbsent("LOCAL_RANK", env.getOrDefault("SLURM_LOCALID", "0"));
        out.putIfAbsent("MASTER_ADDR", firstHost(env));
        out.putIfAbsent("MASTER_PORT", Integer.toString(port(env)));
        out.putIfAbsent("DTRAIN_JOB_ID", jobId(env));
        if (present(env, "SLURMD_NODENAME")) {
            out.putIfAbsent("DTRAIN_NODE_ID", env.get("SLURMD_NODENAME"));   // tasks on one node share memory
        }
        return out;
    }

    /**
     * One line saying what this task took from Slurm, e.g. "Slurm job 5, task 1 of 2 on node2 (step nodes node1,
     * node2): rank 1 of 2, rendezvous node1:20005"; null when Slurm did not place this process.
     */
    public static String describe(Map<String, String> env) {
        if (present(env, "RANK") || present(env, "WORLD_SIZE") || !inJobStep(env)) {
            return null;
        }
        Map<String, String> t = asTorchrunVariables(env);
        String list = present(env, "SLURM_STEP_NODELIST") ? env.get("SLURM_STEP_NODELIST") : env.get("SLURM_JOB_NODELIST");
        return "Slurm job " + env.get("SLURM_JOB_ID") + ", task " + env.get("SLURM_PROCID") + " of "
                + env.get("SLURM_STEP_NUM_TASKS") + " on " + env.getOrDefault("SLURMD_NODENAME", "?") + " (step nodes "
                + String.join(", ", SlurmNodeList.expand(list)) + "): rank " + t.get("RANK") + " of " + t.get("WORLD_SIZE")
                + ", rendezvous " + t.get("MASTER_ADDR") + ":" + t.get("MASTER_PORT");
    }

    /** The host of the job step's first task: rank 0 and node 0 run there. */
    public static String firstHost(Map<String, String> env) {
        String list = present(env, "SLURM_STEP_NODELIST") ? env.get("SLURM_STEP_NODELIST") : env.get("SLURM_JOB_NODELIST");
        if (list == null || list.isBlank()) {
            throw new UserFacingException("Slurm job " + env.get("SLURM_JOB_ID")
                    + " has no SLURM_JOB_NODELIST, so the rendezvous host is unknown: set MASTER_ADDR");
        }
        return SlurmNodeList.expand(list).get(0);
    }

    /** The rendezvous port of this job: 20000 + job id mod 10000 (two jobs on a node collide only 10000 ids apart). */
    public static int port(Map<String, String> env) {
        String id = env.get("SLURM_JOB_ID").strip();
        if (!id.matches("\\d+")) {
            throw new UserFacingException("SLURM_JOB_ID='" + id + "' is not a number; set MASTER_PORT");
        }
        long n = Long.parseLong(id.length() > 12 ? id.substring(id.length() - 12) : id);
        return PORT_BASE + (int) (n % PORT_SPAN);
    }

    /** dtrain's job id for a Slurm job: the same for every task and after a requeue. */
    public static String jobId(Map<String, String> env) {
        return "slurm-" + env.get("SLURM_JOB_ID").strip();
    }

    /** Nodes of the job step (one {@code dtrain launch} per node). */
    public static int nodes(Map<String, String> env) {
        return intVar(env, present(env, "SLURM_STEP_NUM_NODES") ? "SLURM_STEP_NUM_NODES" : "SLURM_NNODES");
    }

    public static int nodeRank(Map<String, String> env) {
        return intVar(env, "SLURM_NODEID");
    }

    public static int tasks(Map<String, String> env) {
        return intVar(env, "SLURM_STEP_NUM_TASKS");
    }

    /** GPUs Slurm gave this node's step ({@code --gpus-per-node}, {@code --gres=gpu:N}); 0 when none or unknown. */
    public static int gpusOnNode(Map<String, String> env) {
        String gpus = env.get("SLURM_GPUS_ON_NODE");
        return gpus != null && gpus.strip().matches("\\d+") ? Integer.parseInt(gpus.strip()) : 0;
    }

    private static int intVar(Map<String, String> env, String name) {
        String value = env.get(name);
        if (value == null || !value.strip().matches("\\d+")) {
            throw new UserFacingException("Slurm variable " + name + "='" + value + "' is not a number");
        }
        return Integer.parseInt(value.strip());
    }

    private static boolean present(Map<String, String> env, String name) {
        String value = env.get(name);
        return value != null && !value.isBlank();
    }
}
