package io.dtrain.parallel.log;

/**
 * What a peer that has not proven the job secret sends (a job id, a refusal reason, an exception text that quotes
 * it) goes into a log only through {@link #quote}: at most a few dozen characters, every control, non-ASCII and quote
 * character escaped, so a stranger can neither flood the log nor forge lines in it.
 */
public final class Untrusted {
    /** Characters kept of an untrusted string by {@link #quote(String)}. */
    public static final int DEFAULT_LIMIT = 64;

    private Untrusted() {
    }

    /** {@code 'text'} escaped, cut after {@link #DEFAULT_LIMIT} characters with the full length said. */
    public static String quote(String text) {
        return quote(text, DEFAULT_LIMIT);
    }

    /** {@code 'text'} escaped and cut as {@link #escape} does. */
    public static String quote(String text, int limit) {
        return text == null ? "null" : "'" + escape(text, limit) + "'";
    }

    /**
     * {@code text} with printable ASCII kept and every other character (line breaks, terminal escapes) as
     * {@code \xNN} or {@code \}{@code uNNNN}, cut after {@code limit} characters with "...(N characters)".
     */
    public static String escape(String text, int limit) {
        StringBuilder out = new StringBuilder(Math.min(text.length(), limit) + 24);
        int kept = Math.min(text.length(), limit);
        for (int i = 0; i < kept; i++) {
            char c = text.charAt(i);
            if (c >= 0x20 && c < 0x7F) {
                out.append(c);
            } else if (c < 0x100) {
                out.append(String.format("\\x%02x", (int) c));
            } else {
                out.append(String.format("\\u%04x", (int) c));
            }
        }
        if (text.length() > limit) {
            out.append("...(").append(text.length()).append(" characters)");
        }
        return out.toString();
    }
}
