package io.dtrain.report;

/** A run directory that cannot be reported on; the message names the file (and line) and what to do. */
public final class ReportException extends RuntimeException {
    public ReportException(String message) {
        super(message);
    }
}
