package io.dtrain.train.pp;

import io.dtrain.parallel.PeerLinks;

import java.util.HashMap;
import java.util.Map;
import java.util.function.IntUnaryOperator;

/**
 * {@link PipeTransport} between stage processes: messages to and from the neighbouring stages travel over
 * {@link PeerLinks} (Aeron). Stages are mapped to the world ranks of this rank's pipeline (same data-parallel
 * index). The tag carries the payload kind and micro-batch, so the receiver checks them against its program.
 */
public final class PeerPipeTransport implements PipeTransport {
    private final PeerLinks links;
    private final IntUnaryOperator rankOfStage;
    private final Map<Integer, PipeMessage> pending = new HashMap<>();

    public PeerPipeTransport(PeerLinks links, IntUnaryOperator rankOfStage) {
        this.links = links;
        this.rankOfStage = rankOfStage;
    }

    @Override
    public void send(int fromStage, int toStage, PipeMessage message) {
        links.send(rankOfStage.applyAsInt(toStage), tag(message), message.tensor());
    }

    @Override
    public PipeMessage receive(int fromStage, int toStage) {
        PipeMessage waiting = pending.remove(fromStage);
        if (waiting != null) {
            return waiting;
        }
        PeerLinks.Message m = links.poll(rankOfStage.applyAsInt(fromStage));
        return m == null ? null : decode(m);
    }

    /**
     * Blocks until the next message from {@code fromStage} has arrived (it is then returned by the next
     * {@link #receive}); fails within the collective timeout naming the stage, its rank and {@code awaited}.
     */
    public void await(int fromStage, String awaited) {
        if (!pending.containsKey(fromStage)) {
            int rank = rankOfStage.applyAsInt(fromStage);
            pending.put(fromStage, decode(links.await(rank, awaited + " from pipeline stage " + fromStage)));
        }
    }

    public long bytesSent() {
        return links.bytesSent();
    }

    public long bytesReceived() {
        return links.bytesReceived();
    }

    private static int tag(PipeMessage m) {
        return m.payload().ordinal() << 24 | m.microbatch();
    }

    private static PipeMessage decode(PeerLinks.Message m) {
        return new PipeMessage(PipeMessage.Payload.values()[m.tag() >>> 24], m.tag() & 0xFFFFFF, m.tensor());
    }
}
