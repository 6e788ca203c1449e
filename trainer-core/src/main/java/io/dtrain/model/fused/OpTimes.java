package io.dtrain.model.fused;

import io.dtrain.compute.Workers;

import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;

/**
 * Where a fused pass spends its time, by kind of op, as the team's leader sees it (with one thread: exactly; with
 * more, the leader's share plus its waits at the barriers that follow). Off unless enabled; when on, one
 * {@code System.nanoTime()} per op. The per-op breakdown in benchmarks/RESULTS.md comes from here.
 */
public final class OpTimes {
    /** The kinds of op a step is made of. */
    public enum Kind {
        EMBEDDING("embedding"), LAYER_NORM("layer norm"), LINEAR_FORWARD("linear (GEMM) forward"),
        LINEAR_BACKWARD("linear (GEMM) backward"), ATTENTION_FORWARD("attention forward"),
        ATTENTION_BACKWARD("attention backward"), ACTIVATION("activation (GELU/ReLU)"),
        RESIDUAL_DROPOUT("residual add, dropout masks"), CLASSIFIER("LM head + cross-entropy"), COPIES("copies in/out"),
        BARRIER("waiting at barriers");

        final String label;

        Kind(String label) {
            this.label = label;
        }
    }

    private final long[] nanos = new long[Kind.values().length];
    private boolean enabled;
    private long last;

    public void enable(boolean on) {
        enabled = on;
    }

    public boolean enabled() {
        return enabled;
    }

    public void reset() {
        java.util.Arrays.fill(nanos, 0);
    }

    /** Starts timing at this point (the start of a pass); only the team's leader times. */
    void start(Workers.Team t) {
        if (enabled && t.isLeader()) {
            last = System.nanoTime();
        }
    }

    /** Charges the leader's time since its last mark to {@code kind}. */
    void charge(Workers.Team t, Kind kind) {
        if (enabled && t.isLeader()) {
            long now = System.nanoTime();
            nanos[kind.ordinal()] += now - last;
            last = now;
        }
    }

    /** A barrier whose wait counts as such. */
    void sync(Workers.Team t) {
        t.barrier();
        charge(t, Kind.BARRIER);
    }

    /** Milliseconds by kind, in a fixed order. */
    public Map<String, Double> millis() {
        Map<String, Double> out = new LinkedHashMap<>();
        for (Kind k : Kind.values()) {
            out.put(k.label, nanos[k.ordinal()] / 1e6);
        }
        return out;
    }

    public String table() {
        double total = 0;
        for (long n : nanos) {
            total += n;
        }
        StringBuilder sb = new StringBuilder();
        for (Kind k : Kind.values()) {
            long n = nanos[k.ordinal()];
            sb.append(String.format(Locale.ROOT, "%-28s %9.1f ms %5.1f%%%n", k.label, n / 1e6, total == 0 ? 0 : 100.0 * n / total));
        }
        return sb.toString();
    }
}
