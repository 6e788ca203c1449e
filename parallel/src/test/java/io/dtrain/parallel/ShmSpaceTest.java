package io.dtrain.parallel;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.dtrain.common.UserFacingException;
import java.nio.file.Path;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Too little room for the shared-memory links, on a real 6 MiB tmpfs (needs root to mount; skipped otherwise): the
 * worker refuses before mapping, with what is needed, what is available and how to get more.
 */
class ShmSpaceTest {
    @Test
    void tooLittleSharedMemoryIsRefusedWithWhatIsNeededAndAvailable(@TempDir Path dir) throws Exception {
        Process mount = new ProcessBuilder("mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", dir.toString())
                .redirectErrorStream(true).start();
        Assumptions.assumeTrue(mount.waitFor() == 0, "cannot mount a tmpfs here (needs root)");
        try {
            long link = ShmLink.HEADER_BYTES + (long) RingLinks.SHM_CAPACITY;
            ShmSpace.require(dir, 1, link, "ring world");   // one link fits
            UserFacingException e = assertThrows(UserFacingException.class, () -> ShmSpace.require(dir, 2, link, "ring world"));
            assertEquals("not enough shared memory for ring world: " + dir + " has 6.0MiB available, its 2 shared-memory"
                    + " link(s) on this host need 8.0MiB (2 x 4.0MiB); give the workers more: docker run --shm-size=1g,"
                    + " on Kubernetes an emptyDir volume with medium: Memory and a sizeLimit mounted at /dev/shm; free"
                    + " space there (old dtrain-* directories of dead jobs); or set DTRAIN_TRANSPORT=ipc (Aeron ipc"
                    + " instead of shared-memory links)", e.getMessage());
        } finally {
            new ProcessBuilder("umount", dir.toString()).inheritIO().start().waitFor();
        }
    }
}
