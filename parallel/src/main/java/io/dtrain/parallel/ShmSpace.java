package io.dtrain.parallel;

import io.dtrain.common.ByteSizes;
import io.dtrain.common.UserFacingException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Checks, before a shared-memory link is mapped, that its file system (usually {@code /dev/shm}, a tmpfs) has room
 * for the links this host's workers are about to map. A tmpfs hands out pages only when they are first written, so
 * without the check a full {@code /dev/shm} (docker's default is 64 MiB) shows up later as SIGBUS in the middle of a
 * collective; with it the worker refuses to start, saying how much is needed and how to get it.
 */
final class ShmSpace {
    private ShmSpace() {
    }

    /** Whether {@code dir}'s file system has {@code bytes} available (true when it cannot tell). */
    static boolean hasRoom(Path dir, long bytes) {
        try {
            return Files.getFileStore(dir).getUsableSpace() >= bytes;
        } catch (IOException e) {
            return true;
        }
    }

    /**
     * @param links        shared-memory links this host's workers map for it (e.g. one per local rank for a ring)
     * @param bytesPerLink one link's file: its ring and header
     * @param what         what the links are for, e.g. "the world ring"
     */
    static void require(Path dir, int links, long bytesPerLink, String what) {
        long available;
        try {
            available = Files.getFileStore(dir).getUsableSpace();
        } catch (IOException e) {
            return; // nothing to go by: mapping will say what is wrong
        }
        long needed = links * bytesPerLink;
        if (available < needed) {
            throw new UserFacingException("not enough shared memory for " + what + ": " + dir + " has "
                    + ByteSizes.format(available) + " available, its " + links + " shared-memory link(s) on this host need "
                    + ByteSizes.format(needed) + " (" + links + " x " + ByteSizes.format(bytesPerLink) + "); give the"
                    + " workers more: docker run --shm-size=1g, on Kubernetes an emptyDir volume with medium: Memory"
                    + " and a sizeLimit mounted at /dev/shm; free space there (old dtrain-* directories of dead jobs);"
                    + " or set DTRAIN_TRANSPORT=ipc (Aeron ipc instead of shared-memory links)");
        }
    }
}
