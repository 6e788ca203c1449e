package io.dtrain.parallel.rendezvous;

import io.dtrain.common.UserFacingException;

/**
 * The rendezvous store was not reachable, or a blocking get did not see its key, in time: a worker that was not
 * started, or was started with another address, port or job id, which the user fixes.
 */
public class RendezvousTimeoutException extends UserFacingException {
    public RendezvousTimeoutException(String message) {
        super(message);
    }
}
