package io.dtrain.data.reader;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The records a reader skipped: a total count and the first {@link #MAX_KEPT} of them with file, line and reason,
 * so a caller can print where the bad data is without the report growing with a badly broken corpus.
 */
public final class BadRecordReport {
    public static final int MAX_KEPT = 100;

    /** One skipped record; line 0 is the whole file (e.g. an empty .zst). */
    public record BadRecord(String file, long line, String reason) {
        private static final Pattern TEXT = Pattern.compile("(.+?)(?::(\\d+))?: (.*)", Pattern.DOTALL);

        @Override
        public String toString() {
            return file + (line > 0 ? ":" + line : "") + ": " + reason;
        }

        /** Reads back {@link #toString()} (e.g. a token-shard manifest's examples); unparsable text is kept as the reason. */
        public static BadRecord parse(String text) {
            Matcher m = TEXT.matcher(text);
            if (!m.matches()) {
                return new BadRecord("", 0, text);
            }
            return new BadRecord(m.group(1), m.group(2) == null ? 0 : Long.parseLong(m.group(2)), m.group(3));
        }
    }

    private final List<BadRecord> kept = new ArrayList<>();
    private long count;

    /** A report restored from stored counts (e.g. a token-shard manifest): {@code count} in total, {@code kept} listed. */
    public static BadRecordReport restored(long count, List<BadRecord> kept) {
        BadRecordReport r = new BadRecordReport();
        r.count = count;
        r.kept.addAll(kept.subList(0, Math.min(kept.size(), MAX_KEPT)));
        return r;
    }

    synchronized void add(BadRecord record) {
        count++;
        if (kept.size() < MAX_KEPT) {
            kept.add(record);
        }
    }

    public synchronized long count() {
        return count;
    }

    public synchronized List<BadRecord> records() {
        return Collections.unmodifiableList(new ArrayList<>(kept));
    }

    public synchronized boolean isEmpty() {
        return count == 0;
    }

    /** A multi-line text for logs: the count, then one line per kept record. */
    @Override
    public synchronized String toString() {
        if (count == 0) {
            return "no bad records";
        }
        StringBuilder sb = new StringBuilder().append(count).append(" bad record(s) skipped");
        if (count > kept.size()) {
            sb.append(" (first ").append(kept.size()).append(" listed)");
        }
        for (BadRecord r : kept) {
            sb.append(System.lineSeparator()).append("  ").append(r);
        }
        return sb.toString();
    }
}
