package io.dtrain.checkpoint;

import io.dtrain.common.ByteSizes;
import org.nd4j.linalg.api.buffer.DataType;

import java.io.IOException;
import java.nio.file.FileStore;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.Optional;

/**
 * The disk side of checkpoints: how many bytes one needs (known from the layout: every tensor's parameters and, with
 * optimizer state, its two AdamW moments, plus the manifest), whether the file system has them (a warning before
 * the write, so a filling disk is noticed early), and what a failed write tells the user: what was being written,
 * how much it needs, where, and that the previous checkpoint is intact (the writers never touch it before the new
 * one is committed).
 */
public final class CheckpointSpace {
    /** Room for manifest.json (names, shapes, CRCs, the resolved config) and the directory entries. */
    private static final long MANIFEST_ALLOWANCE = 256 << 10;

    private CheckpointSpace() {
    }

    /** Bytes of one checkpoint of a model with {@code parameters} elements of {@code dtype}. */
    public static long bytesNeeded(long parameters, DataType dtype, boolean withOptimizer) {
        return parameters * CheckpointFiles.elementBytes(dtype) * (withOptimizer ? 3 : 1) + MANIFEST_ALLOWANCE;
    }

    /** Bytes this process may still write where {@code dir} is (or would be created), or -1 if unknown. */
    public static long usableBytes(Path dir) {
        Path p = dir.toAbsolutePath();
        while (p != null && !Files.exists(p)) {
            p = p.getParent();
        }
        if (p == null) {
            return -1;
        }
        try {
            FileStore store = Files.getFileStore(p);
            return store.getUsableSpace();
        } catch (IOException | SecurityException e) {
            return -1;
        }
    }

    /**
     * A warning line when {@code checkpointsDir}'s file system has less than {@code needed} bytes free for
     * {@code what} ("the checkpoint of step 40", "the first checkpoint"), else null.
     */
    public static String warning(Path checkpointsDir, String what, long needed) {
        long free = usableBytes(checkpointsDir);
        if (free < 0 || free >= needed) {
            return null;
        }
        return String.format(Locale.ROOT, "warning: %s needs %s under %s but only %s are free there: the write will"
                        + " probably fail; free some space or set output.dir to a larger disk", what,
                ByteSizes.format(needed), checkpointsDir, ByteSizes.format(free));
    }

    /** True when {@code e}'s cause chain says the disk (or the user's quota) is full. */
    public static boolean isDiskFull(Throwable e) {
        for (Throwable t = e; t != null; t = t.getCause()) {
            String m = t.getMessage();
            if (m != null && (m.contains("No space left on device") || m.contains("Disk quota exceeded"))) {
                return true;
            }
        }
        return false;
    }

    /**
     * The one-line error of a checkpoint write that failed with {@code e}: what, how much, where, why, that the
     * previous checkpoint is intact, and what to do.
     */
    public static CheckpointException writeFailed(Path checkpointsDir, long step, long needed, Throwable e) {
        String previous = previousCheckpoint(checkpointsDir)
                .map(p -> "the previous checkpoint " + p.getFileName() + " is intact (dtrain train --resume continues"
                        + " from it)")
                .orElse("no earlier checkpoint existed");
        long free = usableBytes(checkpointsDir);
        String where = checkpointsDir + (free >= 0 ? " (" + ByteSizes.format(free) + " free)" : "");
        String what = "the checkpoint of step " + step + " (" + ByteSizes.format(needed) + ": parameters and AdamW"
                + " state)";
        if (isDiskFull(e)) {
            return new CheckpointException("disk full: " + what + " does not fit under " + where + "; its partial"
                    + " files are discarded and " + previous + "; free some space, set output.dir to a larger disk or"
                    + " lower output.keep_checkpoints", e);
        }
        return new CheckpointException("cannot write " + what + " under " + where + ": " + reason(e) + "; its partial"
                + " files are discarded and " + previous + "; check that output.dir is writable", e);
    }

    private static Optional<Path> previousCheckpoint(Path checkpointsDir) {
        try {
            return Files.isDirectory(checkpointsDir) ? Checkpoint.findLatest(checkpointsDir) : Optional.empty();
        } catch (RuntimeException notReadable) {
            return Optional.empty();
        }
    }

    private static String reason(Throwable e) {
        Throwable root = e;
        while (root.getCause() != null && root.getCause() != root) {
            root = root.getCause();
        }
        return root.getMessage() != null ? root.getMessage() : root.toString();
    }
}
