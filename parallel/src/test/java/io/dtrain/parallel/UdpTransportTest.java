package io.dtrain.parallel;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

/**
 * AllReduce over {@code aeron:udp}: on loopback within one host, and between two "hosts" made of network namespaces
 * joined by a veth pair (10.213.x.0/24, inside the namespaces only), each with its own media driver.
 */
class UdpTransportTest {

    @Test
    void allReduceOverUdpOnLoopback() throws IOException {
        Path jobDir = Files.createTempDirectory(Path.of("/dev/shm"), "dtrain-test-");
        Path aeronDir = jobDir.resolve("aeron");
        try {
            Map<String, String> env = Workers.jobEnv(3, aeronDir, Duration.ofSeconds(20));
            env.put("DTRAIN_TRANSPORT", "udp");
            List<Workers.Result> results = Workers.run(3, "udp", env, rank -> List.of(), Duration.ofSeconds(90));
            assertAllOkAndIdentical(results);
        } finally {
            Workers.cleanUp(jobDir, aeronDir);
        }
    }

    @Test
    void allReduceBetweenTwoHostsOverUdp() throws Exception {
        Assumptions.assumeTrue("root".equals(System.getProperty("user.name")),
                "skipped: the two-host test needs root to create network namespaces (ip netns)");
        Assumptions.assumeTrue(run("ip", "-V") == 0, "skipped: the 'ip' command (iproute2) is missing");
        String id = Long.toString(ProcessHandle.current().pid() % 10000);
        int subnet = (int) (ProcessHandle.current().pid() % 200) + 20;
        String nsA = "dtrainA" + id;
        String nsB = "dtrainB" + id;
        String vethA = "dtva" + id;
        String vethB = "dtvb" + id;
        String addrA = "10.213." + subnet + ".1";
        String addrB = "10.213." + subnet + ".2";
        Path jobDir = Files.createTempDirectory(Path.of("/dev/shm"), "dtrain-test-");
        Path aeronA = jobDir.resolve("hostA").resolve("aeron");
        Path aeronB = jobDir.resolve("hostB").resolve("aeron");
        try {
            Assumptions.assumeTrue(run("ip", "netns", "add", nsA) == 0,
                    "skipped: cannot create network namespaces here (ip netns add failed: no CAP_SYS_ADMIN?)");
            check(run("ip", "netns", "add", nsB));
            check(run("ip", "link", "add", vethA, "type", "veth", "peer", "name", vethB));
            check(run("ip", "link", "set", vethA, "netns", nsA));
            check(run("ip", "link", "set", vethB, "netns", nsB));
            check(run("ip", "-n", nsA, "addr", "add", addrA + "/24", "dev", vethA));
            check(run("ip", "-n", nsB, "addr", "add", addrB + "/24", "dev", vethB));
            for (String[] nsDev : new String[][] {{nsA, vethA}, {nsB, vethB}}) {
                check(run("ip", "-n", nsDev[0], "link", "set", nsDev[1], "mtu", "9000"));
                check(run("ip", "-n", nsDev[0], "link", "set", nsDev[1], "up"));
                check(run("ip", "-n", nsDev[0], "link", "set", "lo", "up"));
            }
            // Ranks 0,1 on host A (a shared-memory link between them), ranks 2,3 on host B; the ring crosses hosts twice
            // over UDP.
            Map<String, String> env = Workers.jobEnv(4, aeronA, Duration.ofSeconds(20));
            env.put("MASTER_ADDR", addrA);
            List<Workers.Result> results = Workers.run(4, "udp", env, rank -> List.of(),
                    rank -> List.of("ip", "netns", "exec", rank < 2 ? nsA : nsB, "env",
                            "DTRAIN_NODE_ID=" + (rank < 2 ? "hostA" : "hostB"),
                            "DTRAIN_AERON_DIR=" + (rank < 2 ? aeronA : aeronB)),
                    Duration.ofSeconds(120));
            assertAllOkAndIdentical(results);
        } finally {
            Workers.cleanUp(jobDir, aeronA, aeronB);
            run("ip", "netns", "del", nsA);
            run("ip", "netns", "del", nsB);
        }
    }

    private static void assertAllOkAndIdentical(List<Workers.Result> results) {
        List<String> reference = results.get(0).lines("CRC");
        assertEquals(3, reference.size(), results.get(0)::toString);
        for (Workers.Result r : results) {
            assertEquals(0, r.exitCode(), r::toString);
            assertTrue(r.stdout().contains("OK"), r::toString);
            assertEquals(reference, r.lines("CRC"), "rank " + r.rank());
        }
    }

    private static void check(int exitCode) {
        assertEquals(0, exitCode, "ip command failed");
    }

    private static int run(String... command) {
        try {
            Process p = new ProcessBuilder(new ArrayList<>(List.of(command))).redirectErrorStream(true)
                    .redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
            if (!p.waitFor(20, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                return -1;
            }
            return p.exitValue();
        } catch (IOException e) {
            return -1;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return -1;
        }
    }
}
