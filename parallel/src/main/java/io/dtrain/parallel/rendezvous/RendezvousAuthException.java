package io.dtrain.parallel.rendezvous;

/** The rendezvous store refused this worker (wrong job id or secret), or the store failed to prove the secret. */
public class RendezvousAuthException extends RuntimeException {
    public RendezvousAuthException(String message) {
        super(message);
    }
}
