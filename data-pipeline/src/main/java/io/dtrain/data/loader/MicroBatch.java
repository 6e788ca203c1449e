package io.dtrain.data.loader;

/**
 * One rank's micro-batch: {@code windows[i]} holds {@code seqLen + 1} tokens of sample {@code sampleIndices[i]}
 * (inputs {@code [0, seqLen)}, targets {@code [1, seqLen]}).
 */
public record MicroBatch(int[][] windows, long[] sampleIndices) {
    public int size() {
        return windows.length;
    }
}
