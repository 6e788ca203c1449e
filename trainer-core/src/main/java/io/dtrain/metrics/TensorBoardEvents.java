package io.dtrain.metrics;

import java.io.BufferedOutputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.Map;
import java.util.zip.CRC32C;

/**
 * A TensorBoard event file of scalars, as TensorFlow's {@code tf.summary} and PyTorch's {@code SummaryWriter}
 * write them, so TensorBoard, {@code wandb sync --sync-tensorboard} and other readers of event files show a run.
 *
 * <p>The file ({@code events.out.tfevents.<epoch seconds>.<host>.<pid>.<rank>}) is a sequence of TFRecords: uint64
 * length, uint32 masked CRC32C of the length, the data, uint32 masked CRC32C of the data (little-endian; mask =
 * rotate right by 15, plus 0xa282ead8). Each record is an {@code Event} protobuf: field 1 {@code wall_time} (double,
 * seconds), 2 {@code step} (int64), 3 {@code file_version} (string, only in the first record: "brain.Event:2"),
 * 5 {@code summary}: a {@code Summary} whose repeated field 1 {@code value} holds {@code Summary.Value}s of field 1
 * {@code tag} (string) and 2 {@code simple_value} (float).
 *
 * <p>The five fields are encoded here by hand (varints, fixed64/fixed32, length-delimited), rather than with
 * protobuf-java, which would need generated classes (protoc at build time) or a descriptor built at run time for
 * these two messages, plus a 1.7 MB jar: see the module README. The test reads the files back with protobuf-java's
 * own parser and checks every CRC.
 */
public final class TensorBoardEvents implements AutoCloseable {
    private static final int MASK_DELTA = 0xa282ead8;

    private final Path file;
    private final OutputStream out;

    private TensorBoardEvents(Path file, OutputStream out) {
        this.file = file;
        this.out = out;
    }

    /** Creates a new event file in {@code dir} (created if missing) and writes its version record. */
    public static TensorBoardEvents create(Path dir, int rank) throws IOException {
        Files.createDirectories(dir);
        long now = System.currentTimeMillis();
        String name = String.format(Locale.ROOT, "events.out.tfevents.%010d.%s.%d.%d", now / 1000, hostName(),
                ProcessHandle.current().pid(), rank);
        Path file = dir.resolve(name);
        TensorBoardEvents events = new TensorBoardEvents(file,
                new BufferedOutputStream(Files.newOutputStream(file), 1 << 14));
        ByteArrayOutputStream event = new ByteArrayOutputStream();
        wallTime(event, now / 1000.0);
        string(event, 3, "brain.Event:2");
        events.record(event.toByteArray());
        events.out.flush();
        return events;
    }

    public Path file() {
        return file;
    }

    /**
     * Writes one event with the scalars {@code tagToValue} at {@code step} and flushes it, so TensorBoard sees it at
     * once. Non-finite values (phases not measured in this layout) are left out.
     */
    public synchronized void scalars(long step, long wallMillis, Map<String, Double> tagToValue) throws IOException {
        ByteArrayOutputStream summary = new ByteArrayOutputStream();
        for (Map.Entry<String, Double> e : tagToValue.entrySet()) {
            if (e.getValue() == null || !Double.isFinite(e.getValue())) {
                continue;
            }
            ByteArrayOutputStream value = new ByteArrayOutputStream();
            string(value, 1, e.getKey());
            tag(value, 2, 5);
            fixed32(value, Float.floatToIntBits(e.getValue().floatValue()));
            message(summary, 1, value.toByteArray());
        }
        ByteArrayOutputStream event = new ByteArrayOutputStream();
        wallTime(event, wallMillis / 1000.0);
        tag(event, 2, 0);
        varint(event, step);
        message(event, 5, summary.toByteArray());
        record(event.toByteArray());
        out.flush();
    }

    @Override
    public synchronized void close() throws IOException {
        out.close();
    }

    /** One TFRecord: length, masked CRC of the length, data, masked CRC of the data. */
    private void record(byte[] data) throws IOException {
        byte[] length = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(data.length).array();
        out.write(length);
        out.write(le32(maskedCrc32c(length)));
        out.write(data);
        out.write(le32(maskedCrc32c(data)));
    }

    /** TFRecord's masked CRC32C (Castagnoli): rotate right by 15 bits, add a constant. */
    static int maskedCrc32c(byte[] data) {
        CRC32C crc = new CRC32C();
        crc.update(data);
        int c = (int) crc.getValue();
        return ((c >>> 15) | (c << 17)) + MASK_DELTA;
    }

    private static byte[] le32(int v) {
        return ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN).putInt(v).array();
    }

    private static void wallTime(ByteArrayOutputStream out, double seconds) {
        tag(out, 1, 1);
        long bits = Double.doubleToLongBits(seconds);
        for (int i = 0; i < 8; i++) {
            out.write((int) (bits >>> (8 * i)));
        }
    }

    private static void string(ByteArrayOutputStream out, int field, String s) {
        message(out, field, s.getBytes(StandardCharsets.UTF_8));
    }

    /** A length-delimited field (wire type 2): a string, bytes or an embedded message. */
    private static void message(ByteArrayOutputStream out, int field, byte[] bytes) {
        tag(out, field, 2);
        varint(out, bytes.length);
        out.writeBytes(bytes);
    }

    private static void tag(ByteArrayOutputStream out, int field, int wireType) {
        varint(out, ((long) field << 3) | wireType);
    }

    private static void fixed32(ByteArrayOutputStream out, int v) {
        for (int i = 0; i < 4; i++) {
            out.write(v >>> (8 * i));
        }
    }

    /** Base-128 varint, low groups first; a negative int64 takes ten bytes, as protobuf encodes it. */
    private static void varint(ByteArrayOutputStream out, long v) {
        while ((v & ~0x7fL) != 0) {
            out.write((int) ((v & 0x7f) | 0x80));
            v >>>= 7;
        }
        out.write((int) v);
    }

    /** The kernel's host name (no DNS lookup, which can stall for seconds on a badly configured host). */
    private static String hostName() {
        try {
            String name = Files.readString(Path.of("/proc/sys/kernel/hostname")).strip();
            return name.isEmpty() ? "localhost" : name.replace('/', '_');
        } catch (IOException e) {
            return "localhost";
        }
    }
}
