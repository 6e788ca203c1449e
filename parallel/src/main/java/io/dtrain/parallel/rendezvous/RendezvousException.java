package io.dtrain.parallel.rendezvous;

import io.dtrain.common.UserFacingException;

/**
 * Bringing the job up failed for a reason the user fixes: the store's port is taken, or another rank failed or was
 * refused before every rank joined (named, so that the others do not wait for it until the rendezvous timeout).
 */
public class RendezvousException extends UserFacingException {
    public RendezvousException(String message) {
        super(message);
    }

    public RendezvousException(String message, Throwable cause) {
        super(message, cause);
    }
}
