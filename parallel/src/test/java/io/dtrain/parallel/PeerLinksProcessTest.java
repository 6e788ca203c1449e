package io.dtrain.parallel;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** Point-to-point links between real worker processes (the pipeline's transport). */
class PeerLinksProcessTest {
    @RegisterExtension
    static final JobDirectory JOB = new JobDirectory();

    @ParameterizedTest(name = "over {0}")
    @ValueSource(strings = {"auto", "ipc", "udp"}) // auto: shared-memory rings within the host
    void aChainOfRanksExchangesTensorsBothWaysAtOnceWithoutDeadlock(String transport) {
        int world = 3;
        java.util.Map<String, String> env = Workers.jobEnv(world, JOB.aeronDir(), Duration.ofSeconds(20));
        env.put("DTRAIN_TRANSPORT", transport);
        List<Workers.Result> results = Workers.run(world, "peers", env, rank -> List.of(), Duration.ofSeconds(90));
        long payload = 6L * 4 * 300 * 256 * 8 + 4 + 48;
        for (Workers.Result r : results) {
            assertEquals(0, r.exitCode(), r::toString);
            assertTrue(r.stdout().contains("OK"), r::toString);
            String[] bytes = r.lines("BYTES").get(0).split(" ");
            int neighbours = r.rank() == 1 ? 2 : 1;
            long sent = Long.parseLong(bytes[1]);
            // payload plus a 72-byte header per piece (at most 1 MiB each)
            assertTrue(sent >= neighbours * payload && sent <= neighbours * (payload + 40 * 72), "rank " + r.rank() + " sent " + sent);
            assertEquals(sent, Long.parseLong(bytes[2]), "rank " + r.rank() + " received as much as it sent");
        }
    }

    @Test
    void aPeerThatNeverSendsFailsTheWaitingRankWithinTheTimeoutNamingIt() {
        Duration timeout = Duration.ofSeconds(3);
        List<Workers.Result> results = Workers.run(2, "peers-stall", Workers.jobEnv(2, JOB.aeronDir(), timeout),
                rank -> List.of("-Dstall.ms=6000"), Duration.ofSeconds(60));
        Workers.Result waiting = results.get(0);
        String failure = waiting.failure();
        assertNotNull(failure, waiting::toString);
        assertTrue(failure.contains("activation of micro-batch 0 from stage 1") && failure.contains("rank 1"), failure);
        long ms = Long.parseLong(failure.replaceAll("FAILED after (\\d+) ms.*", "$1"));
        assertTrue(ms >= timeout.toMillis() - 100 && ms <= timeout.toMillis() + 3000, failure);
        assertTrue(waiting.threadDump().startsWith("dtrain thread dump of rank 0"), waiting::toString);
    }
}
