package io.dtrain.parallel.pipeline;

/**
 * One step of a pipeline stage's program. Compute steps ({@link Kind#FORWARD}, {@link Kind#BACKWARD}) have no
 * peer; communication steps name the neighbouring stage they send to or receive from.
 *
 * @param kind       what the stage does
 * @param microbatch index of the micro-batch, 0-based within the optimizer step
 * @param peer       stage sent to / received from; -1 for compute steps
 */
public record Op(Kind kind, int microbatch, int peer) {

    public enum Kind {
        FORWARD, BACKWARD, SEND_ACTIVATION, RECV_ACTIVATION, SEND_GRAD, RECV_GRAD
    }

    public Op {
        if (kind == null) {
            throw new IllegalArgumentException("op kind is null");
        }
        if (microbatch < 0) {
            throw new IllegalArgumentException(kind + ": micro-batch index must be >= 0, got " + microbatch);
        }
        boolean compute = kind == Kind.FORWARD || kind == Kind.BACKWARD;
        if (compute && peer != -1) {
            throw new IllegalArgumentException(kind + " has no peer stage, got " + peer);
        }
        if (!compute && peer < 0) {
            throw new IllegalArgumentException(kind + " of micro-batch " + microbatch + " needs a peer stage >= 0, got " + peer);
        }
    }

    public static Op forward(int microbatch) {
        return new Op(Kind.FORWARD, microbatch, -1);
    }

    public static Op backward(int microbatch) {
        return new Op(Kind.BACKWARD, microbatch, -1);
    }

    public static Op sendActivation(int microbatch, int toStage) {
        return new Op(Kind.SEND_ACTIVATION, microbatch, toStage);
    }

    public static Op recvActivation(int microbatch, int fromStage) {
        return new Op(Kind.RECV_ACTIVATION, microbatch, fromStage);
    }

    public static Op sendGrad(int microbatch, int toStage) {
        return new Op(Kind.SEND_GRAD, microbatch, toStage);
    }

    public static Op recvGrad(int microbatch, int fromStage) {
        return new Op(Kind.RECV_GRAD, microbatch, fromStage);
    }

    public boolean isCompute() {
        return peer < 0;
    }

    public boolean isSend() {
        return kind == Kind.SEND_ACTIVATION || kind == Kind.SEND_GRAD;
    }

    public boolean isReceive() {
        return kind == Kind.RECV_ACTIVATION || kind == Kind.RECV_GRAD;
    }

    /** Compact form for traces and error messages: F3, B3, sendAct3->2, recvGrad3<-2. */
    @Override
    public String toString() {
        return switch (kind) {
            case FORWARD -> "F" + microbatch;
            case BACKWARD -> "B" + microbatch;
            case SEND_ACTIVATION -> "sendAct" + microbatch + "->" + peer;
            case RECV_ACTIVATION -> "recvAct" + microbatch + "<-" + peer;
            case SEND_GRAD -> "sendGrad" + microbatch + "->" + peer;
            case RECV_GRAD -> "recvGrad" + microbatch + "<-" + peer;
        };
    }
}
