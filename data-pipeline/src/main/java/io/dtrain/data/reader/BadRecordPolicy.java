package io.dtrain.data.reader;

/** What the reader does with a record that is not JSON, has no string {@code text}, or is not valid UTF-8. */
public enum BadRecordPolicy {
    /** Skip it, count it and remember file and line in the {@link BadRecordReport} (the default, like most Pile loaders). */
    SKIP,
    /** Stop with a {@link io.dtrain.data.DataException} naming file and line. */
    FAIL;

    /** Parses {@code skip} / {@code fail} (any case), naming the accepted values on error. */
    public static BadRecordPolicy parse(String value) {
        for (BadRecordPolicy p : values()) {
            if (p.name().equalsIgnoreCase(value.trim())) {
                return p;
            }
        }
        throw new IllegalArgumentException("bad-record policy '" + value + "' is not one of: skip, fail");
    }
}
