package io.dtrain.checkpoint;

import io.dtrain.common.AtomicFiles;
import io.dtrain.optim.NioViews;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.DoubleBuffer;
import java.nio.FloatBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import java.util.zip.CRC32C;

/** Names, tensor-file I/O and directory helpers shared by {@link CheckpointWriter} and {@link Checkpoint}. */
final class CheckpointFiles {
    static final int FORMAT_VERSION = 1;
    static final String MANIFEST = "manifest.json";
    static final String LATEST = "latest";
    static final String TMP_PREFIX = ".tmp-";
    static final Pattern STEP_DIR = Pattern.compile("step-(\\d+)");
    /** Tensor files are streamed through a buffer of this many bytes (a multiple of 8). */
    static final int IO_CHUNK_BYTES = 8 << 20;

    static {
        if (ByteOrder.nativeOrder() != ByteOrder.LITTLE_ENDIAN) {
            throw new ExceptionInInitializerError("dtrain checkpoints are little-endian and are only supported on "
                    + "little-endian hosts");
        }
    }

    private CheckpointFiles() {
    }

    static String stepDirName(long step) {
        return String.format(Locale.ROOT, "step-%06d", step);
    }

    /** The step of a committed checkpoint directory name, or -1 if the name is not one. */
    static long stepOf(String dirName) {
        Matcher m = STEP_DIR.matcher(dirName);
        return m.matches() ? Long.parseLong(m.group(1)) : -1;
    }

    /** Committed step directories under {@code checkpointsDir}, oldest step first. */
    static List<Path> committedStepDirs(Path checkpointsDir) throws IOException {
        List<Path> out = new ArrayList<>();
        if (!Files.isDirectory(checkpointsDir)) {
            return out;
        }
        try (DirectoryStream<Path> ds = Files.newDirectoryStream(checkpointsDir)) {
            for (Path p : ds) {
                if (Files.isDirectory(p) && stepOf(p.getFileName().toString()) >= 0) {
                    out.add(p);
                }
            }
        }
        out.sort(Comparator.comparingLong(p -> stepOf(p.getFileName().toString())));
        return out;
    }

    /** A file name for a tensor name: keeps [A-Za-z0-9._-], escapes anything else as %XX (UTF-8 bytes). */
    static String fileStem(String tensorName) {
        StringBuilder sb = new StringBuilder();
        for (byte b : tensorName.getBytes(StandardCharsets.UTF_8)) {
            char c = (char) (b & 0xff);
            boolean safe = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
                    || c == '.' || c == '_' || c == '-';
            if (safe) {
                sb.append(c);
            } else {
                sb.append('%').append(String.format(Locale.ROOT, "%02X", b & 0xff));
            }
        }
        String s = sb.toString();
        return s.startsWith(".") ? "%2E" + s.substring(1) : s;
    }

    static String dtypeName(DataType t) {
        switch (t) {
            case FLOAT: return "float32";
            case DOUBLE: return "float64";
            default: throw new IllegalArgumentException("checkpoints hold float32 or float64 tensors, got " + t);
        }
    }

    /** The DataType of a manifest dtype name, or null if unknown. */
    static DataType dtypeOf(String name) {
        if ("float32".equals(name)) {
            return DataType.FLOAT;
        }
        if ("float64".equals(name)) {
            return DataType.DOUBLE;
        }
        return null;
    }

    static int elementBytes(DataType t) {
        return t == DataType.FLOAT ? 4 : 8;
    }

    static String crcHex(long crc) {
        return String.format(Locale.ROOT, "%08x", crc);
    }

    /**
     * Writes elements {@code [from, to)} of a flat buffer as raw little-endian values, fsyncs, and returns the
     * CRC32C of the bytes written.
     */
    static long writeTensor(Path file, INDArray flat, long from, long to) throws IOException {
        CRC32C crc = new CRC32C();
        long elem = elementBytes(flat.dataType());
        long perChunk = IO_CHUNK_BYTES / elem;
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
            for (long c = from; c < to; c += perChunk) {
                ByteBuffer src = NioViews.bytes(flat, c, Math.min(to, c + perChunk));
                crc.update(src.duplicate());
                while (src.hasRemaining()) {
                    ch.write(src);
                }
            }
            ch.force(true);
        }
        return crc.getValue();
    }

    /**
     * Streams a whole tensor file, checks its CRC32C, and copies its elements {@code [from, to)} into
     * {@code dest} starting at {@code destOffset}, casting between float32 and float64 if needed. The file's
     * size has already been checked against the manifest.
     *
     * @return the CRC32C of the whole file
     */
    static long readTensor(Path file, DataType fileType, long fileElements, long from, long to,
                           INDArray dest, long destOffset) throws IOException {
        CRC32C crc = new CRC32C();
        int elem = elementBytes(fileType);
        ByteBuffer chunk = ByteBuffer.allocateDirect((int) Math.min(IO_CHUNK_BYTES, Math.max(8, fileElements * elem)))
                .order(ByteOrder.LITTLE_ENDIAN);
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            long pos = 0;   // element index of chunk start
            while (pos < fileElements) {
                chunk.clear();
                long n = Math.min(fileElements - pos, chunk.capacity() / elem);
                chunk.limit((int) (n * elem));
                while (chunk.hasRemaining()) {
                    if (ch.read(chunk) < 0) {
                        throw new IOException("unexpected end of file " + file);
                    }
                }
                chunk.flip();
                crc.update(chunk.duplicate());
                long a = Math.max(from, pos);
                long b = Math.min(to, pos + n);
                if (a < b) {
                    copy(chunk, fileType, (int) (a - pos), (int) (b - pos), dest, destOffset + (a - from));
                }
                pos += n;
            }
        }
        return crc.getValue();
    }

    private static void copy(ByteBuffer chunk, DataType fileType, int a, int b, INDArray dest, long destStart) {
        long destEnd = destStart + (b - a);
        DataType destType = dest.dataType();
        if (fileType == destType) {
            int elem = elementBytes(fileType);
            ByteBuffer src = chunk.duplicate();
            src.position(a * elem).limit(b * elem);
            NioViews.bytes(dest, destStart, destEnd).put(src);
        } else if (fileType == DataType.FLOAT) {
            FloatBuffer src = chunk.asFloatBuffer();
            DoubleBuffer d = NioViews.doubles(dest, destStart, destEnd);
            for (int i = a; i < b; i++) {
                d.put(i - a, src.get(i));
            }
        } else {
            DoubleBuffer src = chunk.asDoubleBuffer();
            FloatBuffer d = NioViews.floats(dest, destStart, destEnd);
            for (int i = a; i < b; i++) {
                d.put(i - a, (float) src.get(i));
            }
        }
    }

    /**
     * Writes small text/JSON content through {@link AtomicFiles} (a temporary sibling, then a rename) and makes the
     * rename itself durable: {@code latest} must name a whole checkpoint after a power cut too.
     */
    static void writeAtomically(Path target, byte[] content) throws IOException {
        AtomicFiles.write(target, content);
        fsyncDirectory(target.toAbsolutePath().getParent());
    }

    static void writeNew(Path target, byte[] content) throws IOException {
        try (FileChannel ch = FileChannel.open(target, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
            ByteBuffer b = ByteBuffer.wrap(content);
            while (b.hasRemaining()) {
                ch.write(b);
            }
            ch.force(true);
        }
    }

    /** Makes a rename inside {@code dir} durable; best effort where the file system does not allow it. */
    static void fsyncDirectory(Path dir) {
        try (FileChannel ch = FileChannel.open(dir, StandardOpenOption.READ)) {
            ch.force(true);
        } catch (IOException | UnsupportedOperationException ignored) {
            // Some file systems cannot fsync a directory; the rename is still atomic, only its durability is weaker.
        }
    }

    static void deleteRecursively(Path root) throws IOException {
        if (!Files.exists(root)) {
            return;
        }
        try (Stream<Path> walk = Files.walk(root)) {
            List<Path> all = walk.sorted(Comparator.reverseOrder()).toList();
            for (Path p : all) {
                Files.deleteIfExists(p);
            }
        }
    }
}
