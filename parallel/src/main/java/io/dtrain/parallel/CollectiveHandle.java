package io.dtrain.parallel;

import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * An issued collective. Collectives run on the process's single communication thread in issue order; the
 * caller may compute meanwhile and must not touch the buffers until {@link #await()} returns.
 */
public final class CollectiveHandle {
    private final String description;
    private final CompletableFuture<Void> future;

    CollectiveHandle(String description, CompletableFuture<Void> future) {
        this.description = description;
        this.future = future;
    }

    static CollectiveHandle completed(String description) {
        return new CollectiveHandle(description, CompletableFuture.completedFuture(null));
    }

    /** Waits for completion; rethrows the collective's failure as a {@link CollectiveException}. */
    public void await() {
        try {
            future.get();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new CollectiveException("interrupted while waiting for " + description, e);
        } catch (ExecutionException e) {
            throw unwrap(e);
        }
    }

    /** Waits at most {@code timeout}; returns false if the collective is still running. */
    public boolean await(long timeout, TimeUnit unit) {
        try {
            future.get(timeout, unit);
            return true;
        } catch (TimeoutException e) {
            return false;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new CollectiveException("interrupted while waiting for " + description, e);
        } catch (ExecutionException e) {
            throw unwrap(e);
        }
    }

    public boolean isDone() {
        return future.isDone();
    }

    public String description() {
        return description;
    }

    /** The underlying future, to compose with other asynchronous work. */
    public CompletableFuture<Void> toCompletableFuture() {
        return future;
    }

    private RuntimeException unwrap(ExecutionException e) {
        Throwable cause = e.getCause();
        if (cause instanceof CollectiveException ce) {
            // Fresh exception so the waiting thread's stack shows up too; the original stays the cause.
            return new CollectiveException(ce.getMessage(), ce);
        }
        if (cause instanceof RuntimeException re) {
            return re;
        }
        return new CollectiveException(description + " failed: " + cause, cause);
    }
}
