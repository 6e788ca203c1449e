package io.dtrain.common;

import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * One rule for byte sizes wherever a user writes one (flags, config keys, environment variables): a number with
 * an optional unit. {@code KiB MiB GiB TiB} and the bare letters {@code k m g t} (as the JVM's {@code -Xmx2g})
 * are powers of 1024; {@code KB MB GB TB} are powers of 1000; case does not matter; {@code 1.5GiB} is allowed.
 */
public final class ByteSizes {
    private static final Pattern SIZE = Pattern.compile("(\\d+(?:\\.\\d+)?)\\s*([kmgt]?)(i?)(b?)");

    private ByteSizes() {
    }

    /**
     * @param what names the flag or key in the error, e.g. {@code "--memory-per-worker"}
     * @throws UserFacingException naming {@code what} and the accepted forms
     */
    public static long parse(String text, String what) {
        String t = text == null ? "" : text.strip().toLowerCase(Locale.ROOT);
        Matcher m = SIZE.matcher(t);
        if (!m.matches() || (!m.group(3).isEmpty() && m.group(2).isEmpty())) {
            throw new UserFacingException(what + ": '" + text + "' is not a byte size; write e.g. 1048576, 64KiB, 512MiB,"
                    + " 2g or 1GB (KiB/MiB/GiB and k/m/g are powers of 1024, KB/MB/GB of 1000)");
        }
        int power = m.group(2).isEmpty() ? 0 : "kmgt".indexOf(m.group(2)) + 1;
        boolean decimal = power > 0 && m.group(3).isEmpty() && !m.group(4).isEmpty();
        double unit = Math.pow(decimal ? 1000 : 1024, power);
        double bytes = Double.parseDouble(m.group(1)) * unit;
        if (bytes >= 0x1p63) {
            throw new UserFacingException(what + ": '" + text + "' is too large");
        }
        return (long) bytes;
    }

    /** {@code 1536} -> {@code 1.5KiB}; {@code 3221225472} -> {@code 3.0GiB}. */
    public static String format(long bytes) {
        String[] units = {"B", "KiB", "MiB", "GiB", "TiB"};
        double v = bytes;
        int u = 0;
        while (Math.abs(v) >= 1024 && u < units.length - 1) {
            v /= 1024;
            u++;
        }
        return u == 0 ? bytes + "B" : String.format(Locale.ROOT, "%.1f%s", v, units[u]);
    }
}
