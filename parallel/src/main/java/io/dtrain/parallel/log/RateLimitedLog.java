package io.dtrain.parallel.log;

import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;

/**
 * A warning that strangers can trigger at will (refused connections, datagrams that fail authentication) is logged at
 * most once per interval; the next line says how many were left out meanwhile, so the log shows that it happens and
 * how often without growing with the attack.
 */
public final class RateLimitedLog {
    private final Logger log;
    private final long intervalNs;
    private long lastNs;
    private boolean logged;
    private long suppressed;
    private long lines;

    public RateLimitedLog(Logger log, long interval, TimeUnit unit) {
        this.log = log;
        this.intervalNs = unit.toNanos(interval);
    }

    /** Logs {@code message} (slf4j placeholders) now, or counts it if a line went out within the interval. */
    public synchronized void warn(String message, Object... arguments) {
        long now = System.nanoTime();
        if (logged && now - lastNs < intervalNs) {
            suppressed++;
            return;
        }
        String more = suppressed == 0 ? "" : " (and " + suppressed + " more like it since the last such line)";
        log.warn(message + more, arguments);
        logged = true;
        lastNs = now;
        suppressed = 0;
        lines++;
    }

    /** Lines actually written so far. */
    public synchronized long lines() {
        return lines;
    }
}
