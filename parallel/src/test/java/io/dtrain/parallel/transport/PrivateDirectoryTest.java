package io.dtrain.parallel.transport;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.dtrain.common.UserFacingException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The job directory guards the shared-memory data path: this user's, mode 0700, a real directory, or refused. */
class PrivateDirectoryTest {

    @Test
    void aMissingDirectoryIsCreatedOwnerOnly(@TempDir Path tmp) throws Exception {
        Path dir = PrivateDirectory.ensure(tmp.resolve("job").resolve("shm"));
        assertEquals("rwx------", PosixFilePermissions.toString(Files.getPosixFilePermissions(dir)));
        assertEquals(dir, PrivateDirectory.ensure(dir), "an existing private directory is fine");
    }

    @Test
    void aDirectoryOthersCanEnterIsRefusedNotRepaired(@TempDir Path tmp) throws Exception {
        Path dir = Files.createDirectory(tmp.resolve("job"));
        Files.setPosixFilePermissions(dir, PosixFilePermissions.fromString("rwxrwxrwx"));
        UserFacingException e = assertThrows(UserFacingException.class, () -> PrivateDirectory.ensure(dir));
        assertTrue(e.getMessage().contains("has mode rwxrwxrwx, not rwx------") && e.getMessage().contains("rm -r " + dir),
                e.getMessage());
        assertEquals("rwxrwxrwx", PosixFilePermissions.toString(Files.getPosixFilePermissions(dir)));
    }

    @Test
    void aSymbolicLinkIsRefused(@TempDir Path tmp) throws Exception {
        Path target = PrivateDirectory.ensure(tmp.resolve("real"));
        Path link = Files.createSymbolicLink(tmp.resolve("job"), target);
        UserFacingException e = assertThrows(UserFacingException.class, () -> PrivateDirectory.ensure(link));
        assertTrue(e.getMessage().contains("is a symbolic link"), e.getMessage());
    }

    @Test
    void anotherUsersDirectoryIsRefused(@TempDir Path tmp) throws Exception {
        Assumptions.assumeTrue("root".equals(System.getProperty("user.name")), "needs root to give a directory away");
        Path dir = PrivateDirectory.ensure(tmp.resolve("job"));
        Files.setOwner(dir, dir.getFileSystem().getUserPrincipalLookupService().lookupPrincipalByName("nobody"));
        UserFacingException e = assertThrows(UserFacingException.class, () -> PrivateDirectory.ensure(dir));
        assertTrue(e.getMessage().contains("belongs to nobody, not to root"), e.getMessage());
    }
}
