package io.dtrain.data.loader;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * One rank's micro-batch: {@code windows[i]} holds {@code seqLen + 1} tokens of sample {@code sampleIndices[i]}
 * (inputs {@code [0, seqLen)}, targets {@code [1, seqLen]}); the sample index keys the dropout masks.
 */
public record MicroBatch(int[][] windows, long[] sampleIndices) {
    public int size() {
        return windows.length;
    }

    /** The first seq_len tokens of every window (fresh arrays). */
    public int[][] inputs() {
        int[][] out = new int[windows.length][];
        for (int b = 0; b < windows.length; b++) {
            out[b] = Arrays.copyOfRange(windows[b], 0, windows[b].length - 1);
        }
        return out;
    }

    /** The last seq_len tokens of every window (fresh arrays). */
    public int[][] targets() {
        int[][] out = new int[windows.length][];
        for (int b = 0; b < windows.length; b++) {
            out[b] = Arrays.copyOfRange(windows[b], 1, windows[b].length);
        }
        return out;
    }

    /**
     * Splits a batch into {@code count} equal micro-batches of consecutive rows (equal sizes make the mean of
     * micro-batch means the batch's mean).
     */
    public static List<MicroBatch> split(int[][] windows, long[] sampleIndices, int count) {
        if (count < 1) {
            throw new IllegalArgumentException("number of micro-batches must be >= 1, got " + count);
        }
        if (sampleIndices.length != windows.length) {
            throw new IllegalArgumentException(windows.length + " windows but " + sampleIndices.length + " sample indices");
        }
        if (windows.length == 0 || windows.length % count != 0) {
            throw new IllegalArgumentException("a batch of " + windows.length + " windows does not split into " + count
                    + " equal micro-batches: make the batch size a positive multiple of the number of micro-batches");
        }
        int size = windows.length / count;
        List<MicroBatch> out = new ArrayList<>(count);
        for (int m = 0; m < count; m++) {
            out.add(new MicroBatch(Arrays.copyOfRange(windows, m * size, (m + 1) * size),
                    Arrays.copyOfRange(sampleIndices, m * size, (m + 1) * size)));
        }
        return out;
    }
}
