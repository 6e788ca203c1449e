package io.dtrain.report;

import io.dtrain.common.UserFacingException;

/** A run directory that cannot be reported on; the message names the file (and line) and what to do. */
public final class ReportException extends UserFacingException {
    public ReportException(String message) {
        super(message);
    }
}
