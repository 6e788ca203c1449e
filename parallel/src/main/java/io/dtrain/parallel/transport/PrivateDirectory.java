package io.dtrain.parallel.transport;

import io.dtrain.common.UserFacingException;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFileAttributes;
import java.nio.file.attribute.PosixFilePermission;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.EnumSet;
import java.util.Set;

/**
 * The job directory (and its {@code shm/}) is what keeps other users of the host off the job's data path: the
 * shared-memory ring links and the media driver's files live there and trust whoever can open them. So it must be a
 * real directory (not a link), owned by this user, with mode 0700; one that is not, possibly prepared by someone else
 * to read or plant link files, is refused, never repaired.
 */
public final class PrivateDirectory {
    private static final Set<PosixFilePermission> OWNER_ONLY = EnumSet.of(PosixFilePermission.OWNER_READ,
            PosixFilePermission.OWNER_WRITE, PosixFilePermission.OWNER_EXECUTE);

    private PrivateDirectory() {
    }

    /** Creates {@code dir} (mode 0700) if missing, then checks it as above; returns it. */
    public static Path ensure(Path dir) {
        try {
            if (!Files.exists(dir, LinkOption.NOFOLLOW_LINKS)) {
                try {
                    Files.createDirectories(dir, PosixFilePermissions.asFileAttribute(OWNER_ONLY));
                    // The umask may have removed more; never less than the owner's rwx.
                    Files.setPosixFilePermissions(dir, OWNER_ONLY);
                } catch (FileAlreadyExistsException raced) {
                    // another worker of this host made it first: checked below like any existing one
                }
            }
            check(dir);
            return dir;
        } catch (IOException e) {
            throw new UncheckedIOException("cannot create the job directory " + dir + ": " + e.getMessage(), e);
        }
    }

    private static void check(Path dir) throws IOException {
        PosixFileAttributes attributes = Files.readAttributes(dir, PosixFileAttributes.class, LinkOption.NOFOLLOW_LINKS);
        String fix = ": another user may be trying to read or feed this job's shared memory; remove it (rm -r " + dir
                + ") if it is a leftover of yours, or use another DTRAIN_AERON_DIR or job id";
        if (!attributes.isDirectory()) {
            throw new UserFacingException("the job directory " + dir + " is " + (attributes.isSymbolicLink()
                    ? "a symbolic link" : "not a directory") + fix);
        }
        String me = System.getProperty("user.name");
        if (!attributes.owner().getName().equals(me)) {
            throw new UserFacingException("the job directory " + dir + " belongs to " + attributes.owner().getName()
                    + ", not to " + me + fix);
        }
        if (!attributes.permissions().equals(OWNER_ONLY)) {
            throw new UserFacingException("the job directory " + dir + " has mode "
                    + PosixFilePermissions.toString(attributes.permissions()) + ", not rwx------" + fix);
        }
    }
}
