package io.dtrain.hf;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.dtrain.common.AtomicFiles;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.Collections;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The safetensors file format (Hugging Face's): an 8-byte little-endian header length N, N bytes of a JSON object
 * (each tensor's {@code dtype}, {@code shape} and {@code data_offsets} [begin, end) relative to the data, plus an
 * optional {@code __metadata__} of strings), then the tensors' raw little-endian bytes, C order, back to back.
 * Written here with the tensors in name order and the header padded with spaces to a multiple of 8 bytes (as the
 * reference implementation does), so the same tensors always give the same bytes.
 */
public final class Safetensors {
    static final String METADATA = "__metadata__";
    /** The reference implementation refuses larger headers; so do we (a corrupt length would allocate gigabytes). */
    private static final long MAX_HEADER_BYTES = 100L << 20;
    private static final ObjectMapper JSON = new ObjectMapper();

    /** The element types dtrain reads; it writes F32 and F64. */
    public enum Dtype {
        F64(8), F32(4), F16(2), BF16(2);

        private final int bytes;

        Dtype(int bytes) {
            this.bytes = bytes;
        }

        public int bytes() {
            return bytes;
        }

        static Dtype parse(String name) {
            for (Dtype d : values()) {
                if (d.name().equals(name)) {
                    return d;
                }
            }
            return null;
        }
    }

    /** One tensor of a header: where its bytes are, relative to the start of the data. */
    public record Entry(String name, Dtype dtype, long[] shape, long begin, long end) {
        public long elements() {
            long n = 1;
            for (long d : shape) {
                n *= d;
            }
            return n;
        }

        public String shapeText() {
            return Arrays.toString(shape);
        }
    }

    /** A parsed header: the tensors by name (file order), the metadata, and where the data starts in the file. */
    public record Header(Map<String, Entry> tensors, Map<String, String> metadata, long dataStart) {
    }

    /** A tensor to write: its bytes come from {@code data}, which writes exactly elements x dtype bytes. */
    public record Output(String name, Dtype dtype, long[] shape, Data data) {
        long bytes() {
            long n = dtype.bytes();
            for (long d : shape) {
                n *= d;
            }
            return n;
        }
    }

    /** Writes one tensor's raw little-endian bytes. */
    public interface Data {
        void writeTo(OutputStream out) throws IOException;
    }

    private Safetensors() {
    }

    /** Writes {@code tensors} (any order; stored by name) and {@code metadata} to {@code file}: a temporary file, then a rename. */
    public static void write(Path file, List<Output> tensors, Map<String, String> metadata) throws IOException {
        List<Output> sorted = tensors.stream().sorted((a, b) -> a.name().compareTo(b.name())).toList();
        ObjectNode header = JSON.createObjectNode();
        if (!metadata.isEmpty()) {
            ObjectNode m = header.putObject(METADATA);
            metadata.forEach(m::put);
        }
        long offset = 0;
        for (Output t : sorted) {
            ObjectNode e = header.putObject(t.name());
            e.put("dtype", t.dtype().name());
            ArrayNode shape = e.putArray("shape");
            for (long d : t.shape()) {
                shape.add(d);
            }
            e.putArray("data_offsets").add(offset).add(offset + t.bytes());
            offset += t.bytes();
        }
        byte[] json = JSON.writeValueAsBytes(header);
        int padded = (int) ((8 + json.length + 7) / 8 * 8 - 8);
        byte[] headerBytes = Arrays.copyOf(json, padded);
        Arrays.fill(headerBytes, json.length, padded, (byte) ' ');
        AtomicFiles.write(file, out -> {
            out.write(ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(padded).array());
            out.write(headerBytes);
            for (Output t : sorted) {
                CountingStream counted = new CountingStream(out);
                t.data().writeTo(counted);
                if (counted.count != t.bytes()) {
                    throw new IllegalStateException(t.name() + ": wrote " + counted.count + " bytes, its shape "
                            + Arrays.toString(t.shape()) + " " + t.dtype() + " is " + t.bytes());
                }
            }
        });
    }

    /** Reads and checks the header of {@code file}: every tensor lies inside the data, with the size its shape says. */
    public static Header readHeader(Path file) throws IOException {
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            long size = ch.size();
            if (size < 8) {
                throw bad(file, "it has " + size + " bytes, fewer than the 8-byte header length");
            }
            ByteBuffer lengthBytes = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
            readFully(ch, lengthBytes, 0);
            long n = lengthBytes.getLong(0);
            if (n <= 0 || n > MAX_HEADER_BYTES || 8 + n > size) {
                throw bad(file, "its header length is " + n + " bytes (the file has " + size
                        + "); it is not a safetensors file or it is truncated");
            }
            ByteBuffer headerBytes = ByteBuffer.allocate((int) n);
            readFully(ch, headerBytes, 8);
            JsonNode root;
            try {
                root = JSON.readTree(new String(headerBytes.array(), StandardCharsets.UTF_8));
            } catch (IOException e) {
                throw bad(file, "its header is not valid JSON (" + e.getMessage().lines().findFirst().orElse("") + ")");
            }
            if (root == null || !root.isObject()) {
                throw bad(file, "its header is not a JSON object");
            }
            long dataStart = 8 + n;
            long dataBytes = size - dataStart;
            Map<String, Entry> tensors = new LinkedHashMap<>();
            Map<String, String> metadata = new LinkedHashMap<>();
            Iterator<Map.Entry<String, JsonNode>> it = root.fields();
            while (it.hasNext()) {
                Map.Entry<String, JsonNode> f = it.next();
                if (f.getKey().equals(METADATA)) {
                    f.getValue().fields().forEachRemaining(m -> metadata.put(m.getKey(), m.getValue().asText()));
                    continue;
                }
                tensors.put(f.getKey(), entry(file, f.getKey(), f.getValue(), dataBytes));
            }
            return new Header(Collections.unmodifiableMap(tensors), Collections.unmodifiableMap(metadata), dataStart);
        }
    }

    private static Entry entry(Path file, String name, JsonNode t, long dataBytes) {
        JsonNode dtype = t.get("dtype");
        JsonNode shape = t.get("shape");
        JsonNode offsets = t.get("data_offsets");
        if (dtype == null || shape == null || !shape.isArray() || offsets == null || !offsets.isArray()
                || offsets.size() != 2) {
            throw bad(file, "tensor " + name + " needs dtype, shape and data_offsets [begin, end]");
        }
        Dtype d = Dtype.parse(dtype.asText());
        if (d == null) {
            throw bad(file, "tensor " + name + " has dtype " + dtype.asText() + "; dtrain reads F32, F64, F16 and BF16");
        }
        long[] s = new long[shape.size()];
        for (int i = 0; i < s.length; i++) {
            if (!shape.get(i).canConvertToLong() || shape.get(i).asLong() < 0) {
                throw bad(file, "tensor " + name + " has a bad dimension " + shape.get(i));
            }
            s[i] = shape.get(i).asLong();
        }
        long begin = offsets.get(0).asLong(-1);
        long end = offsets.get(1).asLong(-1);
        Entry e = new Entry(name, d, s, begin, end);
        if (begin < 0 || end < begin || end > dataBytes || end - begin != e.elements() * d.bytes()) {
            throw bad(file, "tensor " + name + " (" + d + " " + e.shapeText() + ") has data_offsets [" + begin + ", "
                    + end + "] but needs " + e.elements() * d.bytes() + " bytes inside the " + dataBytes
                    + " bytes of data; the file is truncated or corrupt");
        }
        return e;
    }

    /** The raw bytes of one tensor (little-endian); a tensor of 2 GiB or more is refused. */
    public static ByteBuffer readBytes(Path file, Header header, Entry e) throws IOException {
        long n = e.end() - e.begin();
        if (n >= Integer.MAX_VALUE) {
            throw new ModelFileException(file + ": tensor " + e.name() + " has " + n + " bytes; dtrain reads tensors of"
                    + " less than 2 GiB");
        }
        ByteBuffer b = ByteBuffer.allocate((int) n).order(ByteOrder.LITTLE_ENDIAN);
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            readFully(ch, b, header.dataStart() + e.begin());
        }
        return b.flip().order(ByteOrder.LITTLE_ENDIAN);
    }

    /** Element {@code i} of raw little-endian bytes of type {@code d}, as a double (exact for every type). */
    public static double value(ByteBuffer bytes, Dtype d, int i) {
        return switch (d) {
            case F64 -> bytes.getDouble(i * 8);
            case F32 -> bytes.getFloat(i * 4);
            case F16 -> halfToFloat(bytes.getShort(i * 2));
            case BF16 -> Float.intBitsToFloat((bytes.getShort(i * 2) & 0xffff) << 16);
        };
    }

    /** IEEE 754 binary16 to float. */
    static float halfToFloat(short bits) {
        return io.dtrain.model.Half.toFloat(bits);
    }

    private static void readFully(FileChannel ch, ByteBuffer into, long position) throws IOException {
        long pos = position;
        while (into.hasRemaining()) {
            int r = ch.read(into, pos);
            if (r < 0) {
                throw new IOException("unexpected end of file at byte " + pos);
            }
            pos += r;
        }
    }

    private static ModelFileException bad(Path file, String what) {
        return new ModelFileException(file + ": not a valid safetensors file: " + what);
    }

    private static final class CountingStream extends OutputStream {
        private final OutputStream out;
        private long count;

        CountingStream(OutputStream out) {
            this.out = out;
        }

        @Override
        public void write(int b) throws IOException {
            out.write(b);
            count++;
        }

        @Override
        public void write(byte[] b, int off, int len) throws IOException {
            out.write(b, off, len);
            count += len;
        }
    }
}
