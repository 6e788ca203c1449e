package io.dtrain.config;

/**
 * A configuration value before typing: the scalar's text as written, whether it was plain (unquoted), and where it
 * was given, so that every later error can name the file, line and key.
 */
record RawValue(String text, boolean plain, Origin origin) {

    /** Where a value was given: a file and 1-based line, or --set / a map (line -1). */
    record Origin(String file, int line) {
    }

    boolean isNull() {
        return plain && (text.isEmpty() || text.equals("~") || text.equalsIgnoreCase("null"));
    }
}
