package io.dtrain.pipeline;

/**
 * Point-to-point messages between pipeline stages, FIFO per (from, to) pair. Receiving does not block: the
 * executor polls, so one thread can drive several stages (in-process) or poll an Aeron subscription (later).
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
