package io.dtrain.parallel;

import io.aeron.Aeron;
import io.dtrain.parallel.log.RateLimitedLog;
import io.dtrain.parallel.transport.UdpAuthentication;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Tells a worker's log when the host's media driver drops udp datagrams that fail authentication (someone other than
 * this job's workers sends to its udp ports): the driver counts them per endpoint
 * ({@link UdpAuthentication#DROPPED_COUNTER_TYPE_ID}), this reads the sum once a second and warns, at most once
 * per 10 s, when it grew. The details (sender, reason) are in the driver's log.
 */
final class UdpDropWatch implements AutoCloseable {
    private static final Logger log = LoggerFactory.getLogger(UdpDropWatch.class);

    private final Aeron aeron;
    private final RateLimitedLog warnings = new RateLimitedLog(log, 10, TimeUnit.SECONDS);
    private final ScheduledExecutorService timer;
    private long reported;

    UdpDropWatch(Aeron aeron, int rank) {
        this.aeron = aeron;
        this.timer = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "dtrain-udp-watch");
            t.setDaemon(true);
            return t;
        });
        timer.scheduleWithFixedDelay(() -> check(rank), 1, 1, TimeUnit.SECONDS);
    }

    /** Datagrams the host's driver has dropped as not authentic, over its current endpoints. */
    long dropped() {
        long[] sum = {0};
        aeron.countersReader().forEach((counterId, typeId, keyBuffer, label) -> {
            if (typeId == UdpAuthentication.DROPPED_COUNTER_TYPE_ID) {
                sum[0] += aeron.countersReader().getCounterValue(counterId);
            }
        });
        return sum[0];
    }

    private synchronized void check(int rank) {
        try {
            long now = dropped();
            if (now > reported) {
                warnings.warn("rank {}: this host's media driver dropped {} udp datagrams that failed authentication"
                        + " (total {}): something other than this job's workers sends to its udp ports; the driver's"
                        + " log (driver.log in the job directory) names senders and reasons", rank, now - reported, now);
                reported = now;
            }
        } catch (RuntimeException e) {
            log.debug("udp drop watch: {}", e.toString());
        }
    }

    @Override
    public void close() {
        timer.shutdownNow();
    }
}
