package io.dtrain.parallel;

/** Element types the collectives reduce: float32 and float64, stored in native byte order. */
public enum ElementType {
    FLOAT32(4),
    FLOAT64(8);

    private final int bytes;

    ElementType(int bytes) {
        this.bytes = bytes;
    }

    public int bytes() {
        return bytes;
    }
}
