package io.dtrain.parallel.rendezvous;

import io.dtrain.common.UserFacingException;

/**
 * The rendezvous store refused this worker (wrong job id or secret), or the store failed to prove the secret: the
 * job's workers were started with different settings, which the user fixes.
 */
public class RendezvousAuthException extends UserFacingException {
    public RendezvousAuthException(String message) {
        super(message);
    }
}
