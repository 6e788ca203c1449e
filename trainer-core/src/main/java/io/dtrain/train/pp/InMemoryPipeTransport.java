package io.dtrain.train.pp;

import java.util.ArrayDeque;
import java.util.HashMap;
import java.util.Map;

/** All stages in one process: one unbounded FIFO per (from, to) pair. Not thread-safe (one driver thread). */
public final class InMemoryPipeTransport implements PipeTransport {
    private final Map<Long, ArrayDeque<PipeMessage>> queues = new HashMap<>();

    @Override
    public void send(int fromStage, int toStage, PipeMessage message) {
        // a copy, as a network transport would make: the sender may reuse or modify its array afterwards
        PipeMessage copy = new PipeMessage(message.payload(), message.microbatch(), message.tensor().dup('c'));
        queues.computeIfAbsent(key(fromStage, toStage), k -> new ArrayDeque<>()).addLast(copy);
    }

    @Override
    public PipeMessage receive(int fromStage, int toStage) {
        ArrayDeque<PipeMessage> q = queues.get(key(fromStage, toStage));
        return q == null ? null : q.pollFirst();
    }

    /** Messages sent and not yet received, over all pairs. */
    public int undelivered() {
        int n = 0;
        for (ArrayDeque<PipeMessage> q : queues.values()) {
            n += q.size();
        }
        return n;
    }

    private static long key(int fromStage, int toStage) {
        return ((long) fromStage << 32) | (toStage & 0xffffffffL);
    }
}
