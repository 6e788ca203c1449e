package io.dtrain.parallel.rendezvous;

/** A blocking get on the rendezvous store did not see its key in time. */
public class RendezvousTimeoutException extends RuntimeException {
    public RendezvousTimeoutException(String message) {
        super(message);
    }
}
