package io.dtrain.data.reader;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.core.StreamReadConstraints;
import com.github.luben.zstd.ZstdInputStreamNoFinalizer;
import io.dtrain.data.DataException;
import java.io.BufferedInputStream;
import java.io.IOException;
import java.io.InputStream;
import io.dtrain.data.fs.DataFiles;
import org.apache.hadoop.fs.Path;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;

/**
 * Streams the documents of one {@code .jsonl} or {@code .jsonl.zst} shard, one line in memory at a time.
 * Decoding errors (truncated or non-zstd data, unreadable file) always stop with a {@link DataException} naming
 * the file and how far decoding got; bad records follow the {@link BadRecordPolicy}.
 */
public final class ShardReader implements AutoCloseable {
    private static final int ZSTD_MAGIC = 0xFD2FB528;          // little-endian 28 B5 2F FD
    private static final int ZSTD_SKIPPABLE_MAGIC = 0x184D2A50; // low 4 bits vary

    static final JsonFactory JSON = JsonFactory.builder()
            .streamReadConstraints(StreamReadConstraints.builder().maxStringLength(Integer.MAX_VALUE / 2).build())
            .build();

    private final Path file;
    private final String fileName;
    private final boolean zstd;
    private final BadRecordPolicy policy;
    private final BadRecordReport report;
    private final InputStream in;
    private final Map<String, String> setNames = new HashMap<>();
    private final long[] fileBytesRead = new long[1];

    private byte[] buf = new byte[1 << 16];
    private int pos;
    private int limit;
    private int lineEnd;
    private boolean eof;
    private long bytesConsumed;  // decompressed bytes of all complete lines handed out so far
    private long lineNo;
    private long documents;

    public ShardReader(Path file, BadRecordPolicy policy, BadRecordReport report) {
        this.file = file;
        this.fileName = DataFiles.display(file);
        this.policy = policy;
        this.report = report;
        String name = file.getName();
        this.zstd = name.endsWith(".zst") || name.endsWith(".zstd");
        try {
            this.in = open(file);
        } catch (IOException e) {
            throw new DataException(fileName + ": cannot open: " + e, e);
        }
    }

    private InputStream open(Path path) throws IOException {
        InputStream raw = new BufferedInputStream(new CountingInputStream(DataFiles.open(path, 1 << 16), fileBytesRead),
                1 << 16);
        if (!zstd) {
            return raw;
        }
        raw.mark(4);
        byte[] head = raw.readNBytes(4);
        raw.reset();
        if (head.length == 0) {
            // Not a zstd stream at all (even an empty one has a frame header): most likely a download or copy that
            // was cut short. Read as no documents, but said, like a bad record (or refused under `fail`).
            String problem = "0 bytes, not a zstd stream (an interrupted download or copy?)";
            if (policy == BadRecordPolicy.FAIL) {
                raw.close();
                throw new DataException(fileName + ": " + problem + "; delete it or copy it again, or read it as no"
                        + " documents with the bad-record policy skip (data.on_bad_record, preprocess --bad-records)");
            }
            report.add(new BadRecordReport.BadRecord(fileName, 0, problem + "; read as no documents"));
            return raw;
        }
        int magic = head.length == 4
                ? (head[0] & 0xFF) | (head[1] & 0xFF) << 8 | (head[2] & 0xFF) << 16 | (head[3] & 0xFF) << 24 : 0;
        if (magic != ZSTD_MAGIC && (magic & 0xFFFFFFF0) != ZSTD_SKIPPABLE_MAGIC) {
            raw.close();
            throw new DataException(fileName + ": not a zstd file: it does not start with the zstd magic number"
                    + " 28 B5 2F FD (it starts with " + hex(head) + "); if it is plain JSON Lines, rename it to"
                    + " .jsonl, otherwise re-create it with `zstd`");
        }
        return new ZstdInputStreamNoFinalizer(raw);
    }

    public Path file() {
        return file;
    }

    /** Bytes read from the file itself so far (compressed bytes for .zst; read ahead by up to 128 KiB): progress. */
    public long fileBytesRead() {
        return fileBytesRead[0];
    }

    /** Documents returned so far. */
    public long documents() {
        return documents;
    }

    /** The next document, or null at the end of the shard. */
    public Document next() {
        while (true) {
            int start = readLine();
            if (start < 0) {
                return null;
            }
            int end = lineEnd;
            if (end > start && buf[end - 1] == '\r') {
                end--;
            }
            if (isBlank(buf, start, end)) {
                continue;
            }
            Document doc = parse(start, end);
            if (doc != null) {
                documents++;
                return doc;
            }
        }
    }

    /**
     * Advances to the next line; returns its start offset in {@code buf} and sets {@code lineEnd} to its end
     * (exclusive, without the '\n'), or returns -1 at the end of the stream.
     */
    private int readLine() {
        int scanFrom = pos;
        while (true) {
            for (int i = scanFrom; i < limit; i++) {
                if (buf[i] == '\n') {
                    int start = pos;
                    lineEnd = i;
                    lineNo++;
                    bytesConsumed += i + 1 - pos;
                    pos = i + 1;
                    return start;
                }
            }
            if (eof) {
                if (pos < limit) {
                    int start = pos;
                    lineEnd = limit;
                    lineNo++;
                    bytesConsumed += limit - pos;
                    pos = limit;
                    return start;
                }
                return -1;
            }
            scanFrom = fill();
        }
    }

    /** Moves the unread bytes to the front (growing the buffer for a long line), reads more; returns where to resume scanning. */
    private int fill() {
        int pending = limit - pos;
        if (pos > 0) {
            System.arraycopy(buf, pos, buf, 0, pending);
            pos = 0;
            limit = pending;
        }
        if (limit == buf.length) {
            buf = Arrays.copyOf(buf, buf.length * 2);
        }
        try {
            int n = in.read(buf, limit, buf.length - limit);
            if (n < 0) {
                eof = true;
            } else {
                limit += n;
            }
        } catch (IOException e) {
            long decoded = bytesConsumed + pending;
            throw new DataException(fileName + ": " + (zstd ? "zstd stream is truncated or corrupt" : "read failed")
                    + " after " + decoded + " decoded bytes (" + lineNo + " complete lines, " + documents
                    + " documents): " + e.getMessage() + (zstd ? "; re-download or re-create the shard" : ""), e);
        }
        return pending;
    }

    private Document parse(int start, int end) {
        int bad = Utf8.firstInvalid(buf, start, end);
        if (bad >= 0) {
            return badRecord("is not valid UTF-8 at byte " + (bad - start + 1) + " of the line (bytes "
                    + hex(Arrays.copyOfRange(buf, bad, Math.min(end, bad + 4))) + ")");
        }
        String text = null;
        String textProblem = "has no \"text\" field";
        String pileSetName = null;
        try (JsonParser p = JSON.createParser(buf, start, end - start)) {
            if (p.nextToken() != JsonToken.START_OBJECT) {
                return badRecord("is not a JSON object");
            }
            JsonToken t;
            while ((t = p.nextToken()) == JsonToken.FIELD_NAME) {
                String field = p.currentName();
                t = p.nextToken();
                if (field.equals("text")) {
                    if (t == JsonToken.VALUE_STRING) {
                        text = p.getText();
                        textProblem = null;
                    } else {
                        text = null;
                        textProblem = "has \"text\": " + describe(t) + " instead of a string";
                        p.skipChildren();
                    }
                } else if (field.equals("meta") && t == JsonToken.START_OBJECT) {
                    while (p.nextToken() == JsonToken.FIELD_NAME) {
                        String key = p.currentName();
                        JsonToken v = p.nextToken();
                        if (key.equals("pile_set_name") && v == JsonToken.VALUE_STRING) {
                            pileSetName = setNames.computeIfAbsent(p.getText(), s -> s);
                        } else {
                            p.skipChildren();
                        }
                    }
                } else {
                    p.skipChildren();
                }
            }
            if (p.nextToken() != null) {
                return badRecord("has more data after the JSON object");
            }
        } catch (JsonProcessingException e) {
            return badRecord("is not valid JSON: " + e.getOriginalMessage().replace('\n', ' ')
                    + " (column " + e.getLocation().getColumnNr() + ")");
        } catch (IOException e) {
            throw new DataException(fileName + ":" + lineNo + ": " + e.getMessage(), e);
        }
        if (textProblem != null) {
            return badRecord(textProblem);
        }
        int lone = Utf8.firstLoneSurrogate(text);
        if (lone >= 0) {
            return badRecord("\"text\" holds an unpaired surrogate \\u" + Integer.toHexString(text.charAt(lone))
                    + " at character " + lone + " (not encodable as UTF-8)");
        }
        return new Document(text, pileSetName, fileName, lineNo);
    }

    private Document badRecord(String reason) {
        if (policy == BadRecordPolicy.FAIL) {
            throw new DataException(fileName + ":" + lineNo + ": record " + reason
                    + "; fix or delete the line, or read with the bad-record policy 'skip'");
        }
        report.add(new BadRecordReport.BadRecord(fileName, lineNo, "record " + reason));
        return null;
    }

    private static String describe(JsonToken t) {
        return switch (t) {
            case VALUE_NULL -> "null";
            case VALUE_NUMBER_INT, VALUE_NUMBER_FLOAT -> "a number";
            case VALUE_TRUE, VALUE_FALSE -> "a boolean";
            case START_OBJECT -> "an object";
            case START_ARRAY -> "an array";
            default -> String.valueOf(t);
        };
    }

    private static boolean isBlank(byte[] b, int from, int to) {
        for (int i = from; i < to; i++) {
            byte c = b[i];
            if (c != ' ' && c != '\t' && c != '\r') {
                return false;
            }
        }
        return true;
    }

    private static String hex(byte[] bytes) {
        StringBuilder sb = new StringBuilder();
        for (byte b : bytes) {
            if (sb.length() > 0) {
                sb.append(' ');
            }
            sb.append(String.format("%02X", b & 0xFF));
        }
        return sb.toString();
    }

    @Override
    public void close() {
        try {
            in.close();
        } catch (IOException e) {
            throw new DataException(fileName + ": close failed: " + e.getMessage(), e);
        }
    }

    /** Counts the bytes read through it into {@code counter[0]}. */
    private static final class CountingInputStream extends java.io.FilterInputStream {
        private final long[] counter;

        CountingInputStream(InputStream in, long[] counter) {
            super(in);
            this.counter = counter;
        }

        @Override
        public int read() throws IOException {
            int b = in.read();
            if (b >= 0) {
                counter[0]++;
            }
            return b;
        }

        @Override
        public int read(byte[] b, int off, int len) throws IOException {
            int n = in.read(b, off, len);
            if (n > 0) {
                counter[0] += n;
            }
            return n;
        }

        @Override
        public long skip(long n) throws IOException {
            long skipped = in.skip(n);
            counter[0] += skipped;
            return skipped;
        }
    }
}
