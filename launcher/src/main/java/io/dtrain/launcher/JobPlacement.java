package io.dtrain.launcher;

import io.dtrain.common.UserFacingException;
import io.dtrain.parallel.JobSecret;
import io.dtrain.parallel.sched.SlurmEnvironment;
import io.dtrain.parallel.sched.UserSecret;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.SecureRandom;
import java.util.HexFormat;
import java.util.Map;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * Where this launcher's node sits in the job and who may join it: from the flags, or, under a Slurm job step with
 * none of the placement flags, from Slurm's variables (one {@code dtrain launch} task per node).
 *
 * @param nprocPerNode workers on this node
 * @param nnodes       nodes in the job
 * @param nodeRank     this node's index
 * @param rdzvHost     node 0's address
 * @param rdzvPort     the store's port; 0: any free port (one node, no --rdzv)
 * @param jobId        the job's id
 * @param secret       the job secret
 * @param nodeId       the workers' DTRAIN_NODE_ID, or null (the host name)
 * @param source       where the placement came from, for the launch line
 */
record JobPlacement(int nprocPerNode, int nnodes, int nodeRank, String rdzvHost, int rdzvPort, String jobId,
                    byte[] secret, String nodeId, String source) {

    /** What the user gave on the command line; null where a flag was not given. */
    record Flags(Integer nprocPerNode, Integer nnodes, Integer nodeRank, String rdzv, Path secretFile, String jobId,
                 boolean standalone) {
    }

    static JobPlacement resolve(Flags flags, Map<String, String> env) throws IOException, GeneralSecurityException {
        if (flags.rdzv() != null && !flags.rdzv().matches(".+:\\d{1,5}")) {
            throw new UserError("--rdzv '" + flags.rdzv() + "' must be HOST:PORT, e.g. node0:29500");
        }
        boolean placedByFlags = flags.nnodes() != null || flags.nodeRank() != null || flags.rdzv() != null || flags.standalone();
        if (!placedByFlags && SlurmEnvironment.inJobStep(env)) {
            return fromSlurm(flags, env);
        }
        int nnodes = flags.nnodes() != null ? flags.nnodes() : 1;
        int nodeRank = flags.nodeRank() != null ? flags.nodeRank() : 0;
        int nproc = flags.nprocPerNode() != null ? flags.nprocPerNode() : 1;
        if (flags.standalone() && nnodes > 1) {
            throw new UserError("--standalone is a one-node job; drop it or --nnodes " + nnodes);
        }
        if (nnodes < 1 || nodeRank < 0 || nodeRank >= nnodes) {
            throw new UserError("--node-rank " + nodeRank + " must be in 0.." + (nnodes - 1) + " (--nnodes " + nnodes + ")");
        }
        byte[] configured = configuredSecret(flags.secretFile(), env);
        if (nnodes > 1 && (flags.rdzv() == null || configured == null)) {
            throw new UserError("a job on " + nnodes + " nodes needs --rdzv HOST:PORT (node 0's address, the same on "
                    + "every node) and --secret-file FILE or DTRAIN_JOB_SECRET (the same secret on every node)");
        }
        byte[] secret = configured != null ? configured : JobSecret.random();
        String host = flags.rdzv() == null ? "127.0.0.1" : flags.rdzv().substring(0, flags.rdzv().lastIndexOf(':'));
        int port = flags.rdzv() == null ? 0 : Integer.parseInt(flags.rdzv().substring(flags.rdzv().lastIndexOf(':') + 1));
        String jobId = flags.jobId() != null ? flags.jobId() : defaultJobId(nnodes, nproc, flags.rdzv(), secret);
        return new JobPlacement(nproc, nnodes, nodeRank, host, port, jobId, secret, null, "flags");
    }

    private static JobPlacement fromSlurm(Flags flags, Map<String, String> env) throws IOException {
        int tasks = SlurmEnvironment.tasks(env);
        int nodes = SlurmEnvironment.nodes(env);
        if (tasks != nodes) {
            throw new UserError("srun started " + tasks + " tasks on " + nodes + " nodes, but dtrain launch runs once per "
                    + "node and starts the workers itself: use srun --ntasks-per-node=1 dtrain launch ..., or "
                    + "srun dtrain train ... for one Slurm task per worker");
        }
        int gpus = SlurmEnvironment.gpusOnNode(env);
        int nproc = flags.nprocPerNode() != null ? flags.nprocPerNode() : Math.max(1, gpus);
        String jobId = flags.jobId() != null ? flags.jobId() : SlurmEnvironment.jobId(env);
        byte[] configured = configuredSecret(flags.secretFile(), env);
        byte[] secret = configured != null ? configured : UserSecret.forJob(env, jobId);
        return new JobPlacement(nproc, nodes, SlurmEnvironment.nodeRank(env), SlurmEnvironment.firstHost(env),
                SlurmEnvironment.port(env), jobId, secret, env.get("SLURMD_NODENAME"),
                "Slurm job " + env.get("SLURM_JOB_ID") + " (" + env.get("SLURM_JOB_NODELIST") + ")");
    }

    /**
     * --secret-file, else DTRAIN_JOB_SECRET / DTRAIN_JOB_SECRET_FILE (e.g. a Kubernetes Secret), else null: parallel's
     * {@link JobSecret}, the workers' reader too; its refusal of a bad file is a bad invocation here.
     */
    private static byte[] configuredSecret(Path secretFile, Map<String, String> env) {
        try {
            return JobSecret.configured(secretFile, "--secret-file", env);
        } catch (UserFacingException e) {
            throw new UserError(e.getMessage(), e);
        }
    }

    /** One node: random. Several: the same on every node without talking to each other (HMAC of the rdzv address). */
    private static String defaultJobId(int nnodes, int nproc, String rdzv, byte[] secret) throws GeneralSecurityException {
        if (nnodes == 1) {
            byte[] random = new byte[6];
            new SecureRandom().nextBytes(random);
            return "dtrain-" + HexFormat.of().formatHex(random);
        }
        Mac mac = Mac.getInstance("HmacSHA256");
        mac.init(new SecretKeySpec(secret, "HmacSHA256"));
        byte[] h = mac.doFinal(("job-id|" + rdzv + "|" + nnodes + "x" + nproc).getBytes(StandardCharsets.UTF_8));
        return "dtrain-" + HexFormat.of().formatHex(h, 0, 6);
    }
}
