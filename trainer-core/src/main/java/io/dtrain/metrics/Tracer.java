package io.dtrain.metrics;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import io.dtrain.common.AtomicFiles;

import java.io.BufferedWriter;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Spans of one rank in the Chrome trace event format (Horovod's timeline; opens in ui.perfetto.dev and
 * chrome://tracing): complete events ("ph":"X") with pid = rank and tid = the calling thread, timestamps in
 * microseconds on rank 0's wall clock (this host's clock minus its measured offset). Any thread may record.
 *
 * <p>Each rank streams its events to {@code metrics/trace-rank<r>.json} as a JSON array, flushed on
 * {@link #flush()}; the closing bracket is optional in this format, so a crashed run's file still loads.
 * {@link #merge} joins the ranks' files into one {@code trace.json}.
 */
public class Tracer implements AutoCloseable {
    /** Records nothing. */
    public static final Tracer NOOP = new Tracer();

    private final BufferedWriter out;
    private final int rank;
    private final long epochMicrosAtStart;
    private final long nanosAtStart;
    private final Set<Long> namedThreads = new HashSet<>();
    private volatile double clockOffsetMs;
    private boolean first = true;

    private Tracer() {
        this.out = null;
        this.rank = 0;
        this.epochMicrosAtStart = 0;
        this.nanosAtStart = 0;
    }

    private Tracer(Path file, int rank) throws IOException {
        Files.createDirectories(file.toAbsolutePath().getParent());
        this.out = Files.newBufferedWriter(file, StandardCharsets.UTF_8);
        this.rank = rank;
        this.nanosAtStart = System.nanoTime();
        java.time.Instant now = java.time.Instant.now();
        this.epochMicrosAtStart = now.getEpochSecond() * 1_000_000L + now.getNano() / 1000;
        out.write("[\n");
        write(JsonLines.line(metadata("process_name", -1, Map.of("name", "rank " + rank))));
        write(JsonLines.line(metadata("process_sort_index", -1, Map.of("sort_index", rank))));
    }

    /** A tracer writing {@code file} for {@code rank}. */
    public static Tracer open(Path file, int rank) throws IOException {
        return new Tracer(file, rank);
    }

    /** This host's clock minus rank 0's; spans recorded after this call are shifted by it. */
    public void setClockOffsetMs(double offsetMs) {
        this.clockOffsetMs = offsetMs;
    }

    /** Records a span between two {@link System#nanoTime()} readings. */
    public void span(String name, String category, long startNanos, long endNanos) {
        if (out == null) {
            return;
        }
        Thread t = Thread.currentThread();
        Map<String, Object> e = JsonLines.record();
        e.put("name", name);
        e.put("cat", category);
        e.put("ph", "X");
        e.put("ts", JsonLines.fixed(micros(startNanos), 3));
        e.put("dur", JsonLines.fixed(Math.max(0, (endNanos - startNanos) / 1000.0), 3));
        e.put("pid", rank);
        e.put("tid", t.getId());
        String event = JsonLines.line(e);
        synchronized (this) {
            if (namedThreads.add(t.getId())) {
                write(JsonLines.line(metadata("thread_name", t.getId(), Map.of("name", t.getName()))));
            }
            write(event);
        }
    }

    /** A span from now until {@link Span#close()}: {@code try (var s = tracer.begin("allreduce", "comm")) {...}}. */
    public Span begin(String name, String category) {
        return new Span(this, name, category, System.nanoTime());
    }

    /** An open span; closing it records it. */
    public static final class Span implements AutoCloseable {
        private final Tracer tracer;
        private final String name;
        private final String category;
        private final long startNanos;

        private Span(Tracer tracer, String name, String category, long startNanos) {
            this.tracer = tracer;
            this.name = name;
            this.category = category;
            this.startNanos = startNanos;
        }

        @Override
        public void close() {
            tracer.span(name, category, startNanos, System.nanoTime());
        }
    }

    /** A metadata event ("ph": "M") of this rank, or of one of its threads ({@code tid} >= 0). */
    private Map<String, Object> metadata(String name, long tid, Map<String, Object> args) {
        Map<String, Object> e = JsonLines.record();
        e.put("name", name);
        e.put("ph", "M");
        e.put("pid", rank);
        if (tid >= 0) {
            e.put("tid", tid);
        }
        e.put("args", args);
        return e;
    }

    /** Microseconds since the epoch on rank 0's clock; fractional so sub-microsecond spans keep their order. */
    private double micros(long nanos) {
        return epochMicrosAtStart + (nanos - nanosAtStart) / 1000.0 - clockOffsetMs * 1000.0;
    }

    private void write(String event) {
        try {
            if (!first) {
                out.write(",\n");
            }
            first = false;
            out.write(event);
        } catch (IOException e) {
            throw new UncheckedIOException("writing the trace of rank " + rank, e);
        }
    }

    /** Makes the events so far visible in the file (the trainer calls this once per step). */
    public synchronized void flush() {
        if (out == null) {
            return;
        }
        try {
            out.flush();
        } catch (IOException e) {
            throw new UncheckedIOException("writing the trace of rank " + rank, e);
        }
    }

    @Override
    public synchronized void close() throws IOException {
        if (out == null) {
            return;
        }
        out.write("\n]\n");
        out.close();
    }

    /**
     * Joins per-rank trace files (complete or cut off mid-run) into {@code target} as
     * {@code {"traceEvents":[...]}}, written atomically ({@link AtomicFiles}).
     */
    public static void merge(List<Path> rankFiles, Path target) throws IOException {
        ObjectMapper json = new ObjectMapper();
        ArrayNode events = json.createArrayNode();
        for (Path f : rankFiles) {
            for (JsonNode e : readEvents(json, f)) {
                events.add(e);
            }
        }
        JsonNode trace = json.createObjectNode().put("displayTimeUnit", "ms").set("traceEvents", events);
        AtomicFiles.write(target, out -> json.writeValue(out, trace));
    }

    /** The events of one rank's file; a file cut off mid-run loses at most its last, partial event. */
    static JsonNode readEvents(ObjectMapper json, Path file) throws IOException {
        String text = Files.readString(file).strip();
        if (text.endsWith("]")) {
            return json.readTree(text);
        }
        int lastComplete = text.lastIndexOf("},\n{");
        String repaired = text.endsWith("}") ? text + "]" : lastComplete < 0 ? "[]" : text.substring(0, lastComplete + 1) + "]";
        try {
            return json.readTree(repaired);
        } catch (IOException e) {
            // The last event was cut inside a nested object: drop it.
            return json.readTree(lastComplete < 0 ? "[]" : text.substring(0, lastComplete + 1) + "]");
        }
    }
}
