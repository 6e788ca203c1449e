package io.dtrain.parallel.rendezvous;

import java.security.MessageDigest;
import java.time.Instant;
import java.util.HashMap;
import java.util.Map;

/**
 * Which process holds each rank in the current restart round. A rank belongs to the first process that joins with
 * it (all of a process's connections carry its member id) until the next round ({@link #newRound}); another process
 * claiming it, a worker of another round, or a rank with too many connections is refused with the reason. One lock,
 * this object's.
 */
final class RankHolders {
    /** A worker opens two (setup, heartbeat); a few more are allowed, not an unbounded number. */
    static final int CONNECTIONS_PER_RANK = 4;

    /** The process holding a rank: its member id, where it came from and when, its open connections. */
    private static final class Holder {
        final byte[] id;
        final String from;
        final Instant since;
        int connections;

        Holder(byte[] id, String from) {
            this.id = id;
            this.from = from;
            this.since = Instant.now();
        }
    }

    private final Map<Integer, Holder> holders = new HashMap<>();
    private int round;

    /**
     * Counts a connection of {@code memberId} for {@code rank} of restart round {@code peerRound}: null if accepted,
     * else why not (another round, the rank is another process's, or this one has too many connections).
     */
    synchronized String join(int rank, int peerRound, byte[] memberId, String from) {
        if (peerRound != round) {
            return "it belongs to restart round " + peerRound + " (DTRAIN_RESTART_COUNT) but the job is at round "
                    + round + (peerRound < round ? " (a worker of an earlier round still running after the job"
                    + " restarted: stop it)" : " (started before its launcher restarted the job?)");
        }
        Holder holder = holders.get(rank);
        if (holder == null) {
            holder = new Holder(memberId, from);
            holders.put(rank, holder);
        } else if (!MessageDigest.isEqual(holder.id, memberId)) {
            return "rank " + rank + " is already taken by another worker process of this job (joined from "
                    + holder.from + " at " + holder.since + "); a worker cannot rejoin a running round: stop the"
                    + " stale worker, or let the launcher restart the whole job (dtrain launch --max-restarts)";
        }
        if (holder.connections >= CONNECTIONS_PER_RANK) {
            return "rank " + rank + " already has " + holder.connections + " connections to the store";
        }
        holder.connections++;
        return null;
    }

    /**
     * A connection of {@code rank} of round {@code peerRound} closed; the rank stays its process's until the next
     * round. Returns false if that round is over (its connection was closed by {@link #newRound}).
     */
    synchronized boolean leave(int rank, int peerRound) {
        if (peerRound != round) {
            return false;
        }
        Holder holder = holders.get(rank);
        if (holder != null) {
            holder.connections--;
        }
        return true;
    }

    /** Starts restart round {@code next}: every rank is free again and only workers of {@code next} may join. */
    synchronized void newRound(int next) {
        if (next <= round) {
            throw new IllegalArgumentException("restart round " + next + " after round " + round);
        }
        round = next;
        holders.clear();
    }

    /** The restart round whose workers may join. */
    synchronized int round() {
        return round;
    }
}
