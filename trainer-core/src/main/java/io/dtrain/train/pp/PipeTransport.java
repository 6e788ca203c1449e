package io.dtrain.train.pp;

/**
 * Point-to-point messages between pipeline stages, FIFO per (from, to) pair. Receiving does not block: the driver
 * polls, so one thread can drive several stages ({@link InMemoryPipeTransport}) or one stage whose neighbours are
 * other processes ({@link PeerPipeTransport}, waiting only when the next op needs a message that has not arrived).
 */
public interface PipeTransport extends AutoCloseable {

    /** Sends without waiting for the receiver; the receiver gets its own copy of the tensor. */
    void send(int fromStage, int toStage, PipeMessage message);

    /** The oldest undelivered message from {@code fromStage} to {@code toStage}, or null when none has arrived. */
    PipeMessage receive(int fromStage, int toStage);

    @Override
    default void close() {
    }
}
