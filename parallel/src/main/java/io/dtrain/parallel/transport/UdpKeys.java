package io.dtrain.parallel.transport;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFileAttributes;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.Comparator;
import java.util.HashMap;
import java.util.Map;

/**
 * How the media driver learns the udp key of each job it serves: a worker leaves its job key in a file named by the
 * key id in {@link #directory} (next to the driver's directory; this user's, 0700, checked by
 * {@link PrivateDirectory}; the file 0600), and the driver reads it when a channel asks for that key id. Nothing
 * secret travels on a command line, in a channel URI (those reach logs and the rendezvous store) or in an
 * environment variable, and one driver (an external one, or a test's) can serve several jobs. The driver removes the
 * directory when it exits.
 */
public final class UdpKeys {
    private final Path directory;
    private final Map<String, byte[]> loaded = new HashMap<>();

    UdpKeys(Path aeronDir) {
        this.directory = directory(aeronDir);
    }

    /** {@code <aeron dir>-udp-keys}, beside the driver's directory (which the driver clears when it starts). */
    public static Path directory(Path aeronDir) {
        Path dir = aeronDir.toAbsolutePath().normalize();
        return dir.resolveSibling(dir.getFileName() + "-udp-keys");
    }

    /** Leaves {@code jobKey} for the driver of {@code aeronDir} (once per key; replaces nothing). */
    public static void publish(Path aeronDir, byte[] jobKey) {
        Path dir = PrivateDirectory.ensure(directory(aeronDir));
        Path file = dir.resolve(UdpAuthentication.keyId(jobKey));
        if (Files.exists(file, LinkOption.NOFOLLOW_LINKS)) {
            return;
        }
        try {
            Path temp = Files.createTempFile(dir, ".key-", ".tmp", PosixFilePermissions.asFileAttribute(
                    PosixFilePermissions.fromString("rw-------")));
            Files.writeString(temp, UdpAuthentication.encode(jobKey), StandardCharsets.US_ASCII);
            try {
                Files.move(temp, file, StandardCopyOption.ATOMIC_MOVE);
            } catch (FileAlreadyExistsException raced) {
                Files.deleteIfExists(temp); // another worker of the job left the same key
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot leave the udp key for the media driver in " + dir + ": " + e.getMessage(), e);
        }
    }

    /** The job key named {@code keyId}, as a worker of that job left it; fails if there is none or it is not private. */
    synchronized byte[] key(String keyId) {
        byte[] key = loaded.get(keyId);
        if (key != null) {
            return key;
        }
        if (!keyId.matches("[0-9a-f]{16}")) {
            throw new IllegalArgumentException("'" + keyId + "' is not a udp key id");
        }
        Path file = directory.resolve(keyId);
        try {
            PrivateDirectory.ensure(directory);
            PosixFileAttributes attributes = Files.readAttributes(file, PosixFileAttributes.class, LinkOption.NOFOLLOW_LINKS);
            if (!attributes.isRegularFile() || !attributes.owner().getName().equals(System.getProperty("user.name"))
                    || !PosixFilePermissions.toString(attributes.permissions()).equals("rw-------")) {
                throw new IllegalArgumentException("the udp key file " + file + " is not this user's private file");
            }
            key = UdpAuthentication.decode(Files.readString(file, StandardCharsets.US_ASCII));
        } catch (IOException e) {
            throw new IllegalArgumentException("this media driver has no udp key " + keyId + " (" + e.getMessage()
                    + "): the worker that opened this channel did not leave it in " + directory, e);
        }
        if (!UdpAuthentication.keyId(key).equals(keyId)) {
            throw new IllegalArgumentException("the udp key file " + file + " does not hold key " + keyId);
        }
        loaded.put(keyId, key);
        return key;
    }

    /** Removes {@link #directory} of {@code aeronDir} (the driver, exiting). */
    static void deleteDirectory(Path aeronDir) {
        Path dir = directory(aeronDir);
        if (!Files.isDirectory(dir, LinkOption.NOFOLLOW_LINKS)) {
            return;
        }
        try (var files = Files.walk(dir)) {
            files.sorted(Comparator.reverseOrder()).forEach(f -> f.toFile().delete());
        } catch (IOException e) {
            // best effort: the job directory goes with the job
        }
    }
}
