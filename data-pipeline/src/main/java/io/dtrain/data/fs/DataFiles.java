package io.dtrain.data.fs;

import io.dtrain.common.AtomicFiles;
import io.dtrain.data.DataException;
import java.io.FileNotFoundException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.URI;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Options;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.LocalFileSystem;
import org.apache.hadoop.fs.RawLocalFileSystem;
import org.apache.hadoop.hdfs.DistributedFileSystem;

/**
 * The one way the data pipeline touches files: Hadoop's {@link FileSystem}, so every input or output may be a
 * local path, {@code file:///...}, {@code hdfs://namenode:port/...} or any other scheme Hadoop is configured for.
 * A path without a scheme uses {@code fs.defaultFS} (the local file system unless a core-site.xml says otherwise).
 * Local files go through the raw local file system, so no {@code .crc} side files are written or expected.
 */
public final class DataFiles {
    private static volatile Configuration configuration;

    private DataFiles() {}

    /** What an output body writes; may throw IOException. */
    @FunctionalInterface
    public interface Writer {
        void write(OutputStream out) throws IOException;
    }

    /** The shared Hadoop configuration (loaded once: core-default.xml plus any core-site.xml on the classpath). */
    public static Configuration configuration() {
        Configuration c = configuration;
        if (c == null) {
            synchronized (DataFiles.class) {
                c = configuration;
                if (c == null) {
                    c = new Configuration();
                    configuration = c;
                }
            }
        }
        return c;
    }

    /** Replaces the configuration (tests, or a launcher that reads Hadoop settings from its own config). */
    public static synchronized void setConfiguration(Configuration conf) {
        configuration = conf;
    }

    public static FileSystem fileSystem(Path path) {
        try {
            FileSystem fs = path.getFileSystem(configuration());
            // Hadoop's shared local file system writes and checks .crc side files; its raw layer does neither.
            return fs instanceof LocalFileSystem local ? local.getRawFileSystem() : fs;
        } catch (IOException e) {
            throw new DataException(path + ": no usable file system for this path (" + e.getMessage()
                    + "); check the scheme and the Hadoop configuration", e);
        }
    }

    /** How a path is shown in messages and {@code Document.file}: local paths without {@code file:}. */
    public static String display(Path path) {
        URI uri = path.toUri();
        return "file".equals(uri.getScheme()) ? uri.getPath() : path.toString();
    }

    /** The file's status, or null if nothing exists at {@code path}. */
    public static FileStatus statusOrNull(Path path) {
        try {
            return fileSystem(path).getFileStatus(path);
        } catch (FileNotFoundException e) {
            return null;
        } catch (IOException e) {
            throw new DataException(display(path) + ": cannot stat: " + e.getMessage(), e);
        }
    }

    public static boolean isFile(Path path) {
        FileStatus s = statusOrNull(path);
        return s != null && s.isFile();
    }

    public static boolean isDirectory(Path path) {
        FileStatus s = statusOrNull(path);
        return s != null && s.isDirectory();
    }

    /** The whole file (for small files: configs, vocabularies). */
    public static byte[] readAllBytes(Path path) {
        try (InputStream in = open(path, 1 << 16)) {
            return in.readAllBytes();
        } catch (IOException e) {
            throw new DataException(display(path) + ": read failed: " + e.getMessage(), e);
        }
    }

    public static InputStream open(Path path, int bufferSize) {
        try {
            return fileSystem(path).open(path, bufferSize);
        } catch (FileNotFoundException e) {
            throw new DataException(display(path) + ": file not found", e);
        } catch (IOException e) {
            throw new DataException(display(path) + ": cannot open: " + e.getMessage(), e);
        }
    }

    /**
     * Writes {@code target} through a temporary sibling that is renamed over it only when {@code body} completed,
     * so readers never see a half-written file; on failure the temporary file is deleted. Local files go through
     * {@link AtomicFiles} (the project's one atomic write); other file systems through Hadoop's rename.
     */
    public static void writeAtomically(Path target, Writer body) {
        FileSystem fs = fileSystem(target);
        if (fs instanceof RawLocalFileSystem local) {
            try {
                AtomicFiles.write(local.pathToFile(target).toPath(), body::write);
            } catch (IOException | RuntimeException e) {
                throw writeFailed(target, e);
            }
            return;
        }
        Path temp = new Path(target.getParent(), "." + target.getName() + ".tmp-" + ProcessHandle.current().pid()
                + "-" + Thread.currentThread().getId());
        try {
            try (OutputStream out = fs.create(temp, true)) {
                body.write(out);
            }
            if (fs instanceof DistributedFileSystem dfs) {
                dfs.rename(temp, target, Options.Rename.OVERWRITE);  // atomic replace on HDFS
            } else if (!fs.rename(temp, target)) {
                // Plain rename() will not replace a file on some file systems; replacing is then not atomic.
                fs.delete(target, false);
                if (!fs.rename(temp, target)) {
                    throw new IOException("rename of " + display(temp) + " to " + display(target) + " failed");
                }
            }
        } catch (IOException | RuntimeException e) {
            try {
                fs.delete(temp, false);
            } catch (IOException suppressed) {
                e.addSuppressed(suppressed);
            }
            throw writeFailed(target, e);
        }
    }

    /** True for the name of a temporary file {@link #writeAtomically} leaves when killed mid-write. */
    public static boolean isTemporary(String name) {
        return name.startsWith(".") && (name.endsWith(".tmp") || name.contains(".tmp-"));
    }

    private static DataException writeFailed(Path target, Exception e) {
        return e instanceof DataException de ? de
                : new DataException(display(target) + ": write failed: " + e.getMessage(), e);
    }
}
