package io.dtrain.metrics;

import java.util.Locale;

/** Builds one JSON object on one line, fields in the order added; non-finite numbers become null. */
final class JsonLine {
    private final StringBuilder sb = new StringBuilder("{");

    JsonLine field(String name, long v) {
        key(name).append(v);
        return this;
    }

    JsonLine field(String name, double v) {
        key(name);
        if (!Double.isFinite(v)) {
            sb.append("null");
        } else if (v == Math.rint(v) && Math.abs(v) < 9e15) {
            sb.append((long) v);
        } else {
            // Six significant digits: measurements are not more precise than that. "1.2E+3" is valid JSON.
            sb.append(java.math.BigDecimal.valueOf(v).round(new java.math.MathContext(6)).stripTrailingZeros().toString());
        }
        return this;
    }

    /** Full precision, for losses that tests compare exactly. */
    JsonLine exact(String name, double v) {
        key(name);
        sb.append(Double.isFinite(v) ? Double.toString(v) : "null");
        return this;
    }

    /** Fixed-point with {@code decimals} digits after the point (timestamps, which must not lose digits). */
    JsonLine fixed(String name, double v, int decimals) {
        key(name);
        sb.append(Double.isFinite(v) ? String.format(Locale.ROOT, "%." + decimals + "f", v) : "null");
        return this;
    }

    JsonLine field(String name, boolean v) {
        key(name).append(v);
        return this;
    }

    JsonLine field(String name, String v) {
        key(name);
        quote(sb, v);
        return this;
    }

    /** A value that is already JSON (an object or array). */
    JsonLine raw(String name, String json) {
        key(name).append(json);
        return this;
    }

    private StringBuilder key(String name) {
        if (sb.length() > 1) {
            sb.append(',');
        }
        quote(sb, name);
        return sb.append(':');
    }

    static void quote(StringBuilder out, String s) {
        out.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"' -> out.append("\\\"");
                case '\\' -> out.append("\\\\");
                case '\n' -> out.append("\\n");
                case '\r' -> out.append("\\r");
                case '\t' -> out.append("\\t");
                default -> {
                    if (c < 0x20) {
                        out.append(String.format(Locale.ROOT, "\\u%04x", (int) c));
                    } else {
                        out.append(c);
                    }
                }
            }
        }
        out.append('"');
    }

    /** The fields without the braces, e.g. to append to another object. */
    String fields() {
        return sb.substring(1);
    }

    @Override
    public String toString() {
        return sb + "}";
    }
}
