package io.dtrain.config;

import io.dtrain.common.UserFacingException;

/**
 * A configuration problem, naming the file, the line (1-based, -1 if unknown) and the dotted key:
 * {@code configs/x.yaml:7: model.n_head: expected an integer, got 'four'}. A problem in a {@code --set}
 * override has the file {@link #OVERRIDE} and reads {@code --set model.n_head: expected an integer, got 'four'}.
 */
public final class ConfigException extends UserFacingException {
    /** The "file" of values given on the command line with --set key=value. */
    public static final String OVERRIDE = "--set";
    private static final long serialVersionUID = 1L;

    private final String file;
    private final int line;
    private final String key;

    public ConfigException(String file, int line, String key, String message) {
        super(format(file, line, key, message));
        this.file = file;
        this.line = line;
        this.key = key;
    }

    /** "file:line: key: message", "--set key: message", or as much of it as is known. */
    static String format(String file, int line, String key, String message) {
        StringBuilder sb = new StringBuilder();
        if (OVERRIDE.equals(file) && key != null) {
            return sb.append(OVERRIDE).append(' ').append(key).append(": ").append(message).toString();
        }
        if (file != null) {
            sb.append(file);
            if (line > 0) {
                sb.append(':').append(line);
            }
            sb.append(": ");
        }
        if (key != null) {
            sb.append(key).append(": ");
        }
        return sb.append(message).toString();
    }

    public String file() {
        return file;
    }

    public int line() {
        return line;
    }

    public String key() {
        return key;
    }
}
