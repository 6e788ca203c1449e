package io.dtrain.launcher;

import com.fasterxml.jackson.databind.JsonNode;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static io.dtrain.launcher.DpRuns.microOverrides;
import static io.dtrain.launcher.DpRuns.steps;
import static io.dtrain.launcher.DpRuns.summary;
import static io.dtrain.launcher.DpRuns.trainArgs;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Two launchers as two nodes (on one host, each with its own node id and media driver, so their workers talk UDP):
 * node 0 hosts the store on --rdzv, both derive the same job id from the shared --secret-file, and their workers
 * form one data-parallel job of two ranks.
 */
class DpMultiNodeTest {

    @Test
    void twoLaunchersFormOneJobAndTheSecretIsWrittenNowhere(@TempDir Path tmp) throws Exception {
        Path secret = Files.writeString(tmp.resolve("secret"), "a shared secret of the two nodes\n");
        int port;
        try (ServerSocket s = new ServerSocket(0)) {
            port = s.getLocalPort();
        }
        Path run = tmp.resolve("run");
        List<String> sets = microOverrides(run, 8, 2);
        List<CompletableFuture<Integer>> nodes = new ArrayList<>();
        List<java.io.StringWriter> errors = List.of(new java.io.StringWriter(), new java.io.StringWriter());
        for (int node = 0; node < 2; node++) {
            List<String> args = new ArrayList<>(List.of("launch", "--nproc-per-node", "1", "--nnodes", "2",
                    "--node-rank", Integer.toString(node), "--rdzv", "127.0.0.1:" + port, "--secret-file",
                    secret.toString(), "--memory-per-worker", "1g", "--stop-grace", "2", "--log-dir",
                    tmp.resolve("logs-node" + node).toString(),
                    // two "hosts": each its own node id and media driver, so the ring between them is UDP (loopback)
                    "--env", "DTRAIN_NODE_ID=node" + node,
                    "--env", "DTRAIN_AERON_DIR=" + Path.of("/dev/shm").resolve("dtrain-test-" + port + "-node" + node).resolve("aeron"),
                    "--"));
            args.addAll(trainArgs(sets));
            java.io.PrintWriter err = new java.io.PrintWriter(errors.get(node), true);
            nodes.add(CompletableFuture.supplyAsync(() -> {
                var cl = Main.commandLine();
                cl.setErr(err);
                return cl.execute(args.toArray(String[]::new));
            }));
        }
        for (int node = 0; node < 2; node++) {
            int code = nodes.get(node).get(180, TimeUnit.SECONDS);
            Path log = tmp.resolve("logs-node" + node).resolve("rank" + node + ".log");
            assertEquals(0, code, "node " + node + ": " + errors.get(node) + "\nrank " + node + "'s log:\n"
                    + (Files.exists(log) ? Files.readString(log) : "(none)"));
        }
        for (int rank = 0; rank < 2; rank++) {
            JsonNode s = summary(run, rank);
            assertEquals(2, s.get("data_parallel_size").asInt());
            assertEquals(8, s.get("samples").asLong(), "rank " + rank + " trained on half of 2 global batches of 8");
        }
        assertEquals(steps(run, 0).get(1).get("loss").asDouble(), steps(run, 1).get(1).get("loss").asDouble(), 0.0);
        // The secret (and the udp key derived from it) never reaches a log, the metrics, a checkpoint or the saved config.
        String secretText = "a shared secret of the two nodes";
        String udpKey = io.dtrain.parallel.transport.UdpAuthentication.encode(io.dtrain.parallel.transport.UdpAuthentication
                .jobKey(secretText.getBytes(java.nio.charset.StandardCharsets.UTF_8), derivedJobId(secretText, "127.0.0.1:" + port)));
        List<Path> written;
        try (var walk = Files.walk(tmp)) {
            written = walk.filter(Files::isRegularFile).filter(f -> !f.equals(secret)).toList();
        }
        assertTrue(written.stream().anyMatch(f -> f.toString().contains("checkpoint")), "checkpoints written: " + written);
        assertTrue(written.stream().anyMatch(f -> f.toString().endsWith(".log")), "logs written: " + written);
        for (Path f : written) {
            String content = new String(Files.readAllBytes(f), java.nio.charset.StandardCharsets.ISO_8859_1);
            assertFalse(content.contains(secretText) || content.contains(udpKey), "the secret is in " + f);
        }
        for (java.io.StringWriter err : errors) {
            assertFalse(err.toString().contains(secretText), "the secret is in a launcher's output");
        }
    }

    /** The job id both launchers derive from the secret and --rdzv (as LaunchCommand does for --nnodes > 1). */
    private static String derivedJobId(String secret, String rdzv) throws Exception {
        javax.crypto.Mac mac = javax.crypto.Mac.getInstance("HmacSHA256");
        mac.init(new javax.crypto.spec.SecretKeySpec(secret.getBytes(java.nio.charset.StandardCharsets.UTF_8), "HmacSHA256"));
        byte[] h = mac.doFinal(("job-id|" + rdzv + "|2x1").getBytes(java.nio.charset.StandardCharsets.UTF_8));
        return "dtrain-" + java.util.HexFormat.of().formatHex(h, 0, 6);
    }
}
