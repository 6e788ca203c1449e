package io.dtrain.train;

/** Training cannot go on (non-finite loss or gradient with on_non_finite=stop, ...). */
public final class TrainingException extends RuntimeException {
    public TrainingException(String message) {
        super(message);
    }
}
