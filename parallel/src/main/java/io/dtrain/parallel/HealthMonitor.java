package io.dtrain.parallel;

import io.dtrain.parallel.rendezvous.RendezvousClient;
import io.dtrain.parallel.rendezvous.RendezvousServer;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Whether the other ranks are alive, and what this rank tells them: a heartbeat thread writes this rank's state
 * ({@code status/<rank>}: the collective it is in, running or idle) to the rendezvous store every 200 ms over its
 * own connection and reads the failures reported there ({@code fail/<rank>}, set by a rank that saw a failure
 * first-hand, or by the store when a rank's connection dropped). Collectives and peer links ask it, cheaply, whether
 * a member failed; on a timeout it explains from the heartbeats who is dead, stalled or elsewhere; and it turns a
 * failure into the {@link CollectiveException} that leaves the process group unusable, naming the rank at fault
 * first, with this process's thread dump written to a file of the log directory.
 */
final class HealthMonitor {
    static final String STATUS_PREFIX = "status/";
    private static final Logger log = LoggerFactory.getLogger(HealthMonitor.class);
    private static final long HEARTBEAT_INTERVAL_MS = 200;
    private static final long STALE_HEARTBEAT_MS = 2_000;

    private final int rank;
    private final RendezvousClient store;
    private final Path logDir;
    private final Thread heartbeat;
    private final long killAfterFrames = Long.getLong("dtrain.test.killAfterFrames", 0);
    private long framesSent;

    private volatile Map<Integer, String> failures = Map.of();
    private volatile CollectiveException broken;
    private volatile Ring activeRing;
    private volatile boolean running;
    private volatile boolean closing;

    /**
     * @param store  this monitor's own connection to the rendezvous store; null in a world of one (nothing to watch)
     * @param logDir where the thread dump of a failure is written
     */
    HealthMonitor(int rank, RendezvousClient store, Path logDir) {
        this.rank = rank;
        this.store = store;
        this.logDir = logDir;
        if (store == null) {
            heartbeat = null;
        } else {
            heartbeat = new Thread(this::heartbeatLoop, "dtrain-heartbeat");
            heartbeat.setDaemon(true);
        }
    }

    void start() {
        if (heartbeat != null) {
            heartbeat.start();
        }
    }

    /** The failure that made this process's groups unusable, or null. */
    CollectiveException broken() {
        return broken;
    }

    /** The communication thread starts a collective on {@code ring}: the heartbeat reports it as running. */
    void started(Ring ring) {
        activeRing = ring;
        running = true;
    }

    void finished() {
        running = false;
    }

    /** Test hook: {@code -Ddtrain.test.killAfterFrames=k} SIGKILLs this process after it sent k ring frames. */
    void frameSent() {
        if (killAfterFrames > 0 && ++framesSent >= killAfterFrames) {
            System.err.println("dtrain.test.killAfterFrames=" + killAfterFrames + ": killing rank " + rank + " now");
            System.err.flush();
            try {
                new ProcessBuilder("kill", "-9", Long.toString(ProcessHandle.current().pid())).start().waitFor();
                Thread.sleep(10_000);
            } catch (IOException | InterruptedException e) {
                // fall through to halt
            }
            Runtime.getRuntime().halt(137);
        }
    }

    /** The failure reported by rank {@code member}, or null. Cheap: a volatile read when healthy. */
    String failureOf(int member) {
        Map<Integer, String> current = failures;
        String reason = current.isEmpty() || member == rank ? null : current.get(member);
        if (reason == null) {
            return null;
        }
        if (reason.startsWith("rank " + member + " ")) {
            return reason;
        }
        // A report that names another rank first (a stalled rank that `member` diagnosed) keeps that rank first.
        return reason.startsWith("rank") ? reason + " (reported by rank " + member + ")"
                : "rank " + member + " failed: " + reason;
    }

    /** The failure reported by any member of {@code members}, or null. Cheap: a volatile read when healthy. */
    String failureOf(int[] members) {
        if (failures.isEmpty()) {
            return null;
        }
        StringBuilder reasons = null;
        for (int member : members) {
            String reason = failureOf(member);
            if (reason != null) {
                reasons = reasons == null ? new StringBuilder() : reasons.append("; ");
                reasons.append(reason);
            }
        }
        return reasons == null ? null : reasons.toString();
    }

    /** Like {@link #failureOf} but asks the store now instead of waiting for the next heartbeat. */
    String failureOfNow(int[] members) {
        if (store != null) {
            try {
                updateFailures(store.getPrefix(RendezvousServer.FAIL_PREFIX));
            } catch (RuntimeException e) {
                log.debug("store unreachable: {}", e.toString());
            }
        }
        return failureOf(members);
    }

    private synchronized void updateFailures(Map<String, byte[]> failed) {
        if (failed.isEmpty() || failed.size() == failures.size()) {
            return;
        }
        Map<Integer, String> parsed = new HashMap<>(failures);
        failed.forEach((key, value) -> parsed.put(Integer.parseInt(key.substring(RendezvousServer.FAIL_PREFIX.length())),
                new String(value, StandardCharsets.UTF_8)));
        failures = Map.copyOf(parsed);
    }

    /**
     * Builds the error of a failed collective (the reason first: it names the rank at fault), writes this rank's
     * thread dump to a file, tells the other ranks through the store (when this rank saw the failure first-hand) and
     * marks the process unusable.
     */
    CollectiveException fail(Ring ring, String reason, boolean firstHand) {
        return fail(reason + "; " + ring.describeOp() + " in group " + ring.describeGroup() + " failed on rank " + rank,
                firstHand);
    }

    /**
     * As above for a failure that is not a collective's (a point-to-point link, {@link PeerLinks}); {@code what}
     * names the rank at fault first. The store gets {@code what} alone (the other ranks add their own advice).
     */
    CollectiveException fail(String what, boolean firstHand) {
        String dump = null;
        if (broken == null) {
            dump = writeThreadDump(what);
        }
        CollectiveException error = new CollectiveException(what + "; the process group is unusable: restart the job"
                + " from its last checkpoint" + (dump == null ? "" : "; thread dump of rank " + rank + ": " + dump));
        if (broken == null) {
            broken = error;
        }
        log.debug(error.getMessage());
        if (firstHand && store != null) {
            try {
                store.set(RendezvousServer.FAIL_PREFIX + rank, what);
            } catch (RuntimeException e) {
                log.warn("could not report the failure to the rendezvous store: {}", e.getMessage());
            }
        }
        return error;
    }

    /**
     * This process's threads at the failure, in a file of the log directory (a few hundred lines: not for the
     * console); returns its path, or null after printing the dump to stderr when the file cannot be written.
     */
    private String writeThreadDump(String what) {
        String dump = threadDump("dtrain thread dump of rank " + rank + " after: " + what);
        String stamp = DateTimeFormatter.ofPattern("yyyyMMdd-HHmmss", Locale.ROOT).withZone(ZoneOffset.UTC)
                .format(Instant.now());
        Path file = logDir.resolve("thread-dump-rank" + rank + "-" + stamp + ".txt");
        try {
            Files.createDirectories(logDir);
            Files.writeString(file, dump, StandardCharsets.UTF_8);
            return file.toString();
        } catch (IOException | RuntimeException e) {
            System.err.println(dump);
            System.err.flush();
            return null;
        }
    }

    /** What the store's heartbeats say about one rank: alive and where, stalled, or never seen. */
    String describeRank(int member) {
        Map<String, byte[]> statuses;
        try {
            statuses = store.getPrefix(STATUS_PREFIX);
        } catch (RuntimeException e) {
            return "the rendezvous store is unreachable (" + e.getMessage() + ")";
        }
        byte[] raw = statuses.get(STATUS_PREFIX + member);
        if (raw == null) {
            return "rank " + member + " never reported a heartbeat";
        }
        String[] f = new String(raw, StandardCharsets.UTF_8).split("\\|", 6);
        long age = System.currentTimeMillis() - Long.parseLong(f[4]);
        if (age > STALE_HEARTBEAT_MS) {
            return "rank " + member + " has sent no heartbeat for " + age + " ms (stalled or dead)";
        }
        return "rank " + member + " is alive (heartbeat " + age + " ms ago) but did not send: stalled in its own work,"
                + " or its program differs from this rank's";
    }

    /** Explains a timeout from the other members' heartbeats in the store: who is dead, stalled or elsewhere. */
    String diagnose(Ring ring) {
        Map<String, byte[]> statuses;
        try {
            statuses = store.getPrefix(STATUS_PREFIX);
        } catch (RuntimeException e) {
            return "rank " + ring.prevRank + " (previous in the ring) sent nothing, and the rendezvous store is"
                    + " unreachable (" + e.getMessage() + ")";
        }
        long now = System.currentTimeMillis();
        List<String> findings = new ArrayList<>();
        List<Integer> culprits = new ArrayList<>();
        for (int member : ring.members) {
            if (member == rank) {
                continue;
            }
            byte[] raw = statuses.get(STATUS_PREFIX + member);
            if (raw == null) {
                findings.add("rank " + member + " never reported a heartbeat");
                culprits.add(member);
                continue;
            }
            // groupKey|seq|kind|state|epochMillis|name
            String[] f = new String(raw, StandardCharsets.UTF_8).split("\\|", 6);
            long age = now - Long.parseLong(f[4]);
            String where = Frame.kindName(Integer.parseInt(f[2])) + " '" + f[5] + "' #" + f[1] + " of group " + f[0];
            if (age > STALE_HEARTBEAT_MS) {
                findings.add("rank " + member + " has sent no heartbeat for " + age + " ms (stalled or dead; last in " + where + ")");
                culprits.add(member);
            } else if (f[3].equals("idle") && f[0].equals(ring.groupKey) && Long.parseLong(f[1]) >= ring.seq()) {
                continue; // it finished this collective: not the one holding it up
            } else if (f[3].equals("idle")) {
                findings.add("rank " + member + " is idle (last finished " + where + ") and has not called this collective");
                culprits.add(member);
            } else if (!f[0].equals(ring.groupKey) || Long.parseLong(f[1]) != ring.seq()
                    || Integer.parseInt(f[2]) != ring.kind() || !f[5].equals(ring.opName())) {
                findings.add("rank " + member + " is in " + where);
                culprits.add(member);
            }
        }
        if (culprits.isEmpty()) {
            return "rank " + ring.prevRank + " (previous in the ring) sent nothing although every member reports being"
                    + " in this collective (network or media driver problem?)";
        }
        if (culprits.size() == 1) {
            return "rank " + culprits.get(0) + " stopped making progress: it"
                    + findings.get(0).substring(("rank " + culprits.get(0)).length());
        }
        return "ranks " + culprits + " stopped making progress: " + String.join("; ", findings);
    }

    private void heartbeatLoop() {
        while (!closing) {
            try {
                Ring ring = activeRing;
                String status = ring == null
                        ? "none|-1|0|idle|" + System.currentTimeMillis() + "|"
                        : ring.groupKey + "|" + ring.seq() + "|" + ring.kind() + "|" + (running ? "running" : "idle") + "|"
                          + System.currentTimeMillis() + "|" + ring.opName();
                store.set(STATUS_PREFIX + rank, status);
                updateFailures(store.getPrefix(RendezvousServer.FAIL_PREFIX));
                Thread.sleep(HEARTBEAT_INTERVAL_MS);
            } catch (InterruptedException e) {
                return;
            } catch (RuntimeException e) {
                if (closing) {
                    return;
                }
                // The store lives in rank 0 (or the launcher): losing it means that process died.
                String reason = "the rendezvous store " + store.where() + " is unreachable: rank 0 (or the"
                        + " launcher hosting it) probably died (" + e.getMessage() + ")";
                log.error(reason);
                synchronized (this) {
                    Map<Integer, String> lost = new HashMap<>(failures);
                    lost.putIfAbsent(0, reason);
                    failures = Map.copyOf(lost);
                }
                return;
            }
        }
    }

    static String threadDump(String title) {
        StringBuilder out = new StringBuilder(title).append('\n');
        for (Map.Entry<Thread, StackTraceElement[]> e : Thread.getAllStackTraces().entrySet()) {
            Thread t = e.getKey();
            out.append('"').append(t.getName()).append("\" ").append(t.isDaemon() ? "daemon " : "")
                    .append(t.getState()).append('\n');
            for (StackTraceElement frame : e.getValue()) {
                out.append("\tat ").append(frame).append('\n');
            }
        }
        return out.toString();
    }

    /** Stops the heartbeat (after the last collective); its store connection stays open until {@link #close}. */
    void stop() {
        closing = true;
        if (heartbeat != null) {
            heartbeat.interrupt();
            try {
                heartbeat.join(2_000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
    }

    /** Closes the heartbeat's store connection. */
    void close() throws Exception {
        if (store != null) {
            store.close();
        }
    }
}
