package io.dtrain.model;

import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * One pipeline stage run as a chain of parts, each a {@link Stage} over some of its blocks, used for block-level
 * activation recomputation with the SameDiff engine ({@code training.recompute: blocks}): a SameDiff part keeps only
 * its input per in-flight micro-batch and recomputes its forward pass in its backward pass, so a chain of one-block
 * parts keeps only block inputs. The chain passes activations forward and gradients back through its parts, as
 * {@link GptModel} does through stages.
 */
public final class StageChain implements Stage {
    /** The slot the parts use for the last stage's one-call loss and backward. */
    private static final int LOSS_SLOT = -2;

    private final int index;
    private final Stage[] parts;
    private INDArray gradInput;

    public StageChain(int index, Stage[] parts) {
        if (parts.length == 0) {
            throw new IllegalArgumentException("a stage chain needs at least one part");
        }
        this.index = index;
        this.parts = parts.clone();
    }

    @Override
    public int index() {
        return index;
    }

    @Override
    public boolean isFirst() {
        return parts[0].isFirst();
    }

    @Override
    public boolean isLast() {
        return parts[parts.length - 1].isLast();
    }

    @Override
    public void setHalfPrecision(boolean half) {
        for (Stage p : parts) {
            p.setHalfPrecision(half);
        }
    }

    @Override
    public void setParams(INDArray flatParams) {
        for (Stage p : parts) {
            p.setParams(flatParams);
        }
    }

    @Override
    public INDArray forward(int slot, int[][] windows, INDArray xIn, DropoutKeys keys) {
        INDArray x = xIn;
        for (Stage p : parts) {
            x = p.forward(slot, windows, x, keys);
        }
        return x;
    }

    @Override
    public INDArray backward(int slot, INDArray gradOut, INDArray flatGrads) {
        INDArray g = gradOut;
        for (int i = parts.length - 1; i >= 0; i--) {
            g = parts[i].backward(slot, g, flatGrads);
        }
        return g;
    }

    @Override
    public double loss(int[][] windows, INDArray xIn, DropoutKeys keys, double gradScale, INDArray flatGrads) {
        int lastPart = parts.length - 1;
        int slot = flatGrads == null ? -1 : LOSS_SLOT;
        INDArray x = xIn;
        for (int i = 0; i < lastPart; i++) {
            x = parts[i].forward(slot, windows, x, keys);
        }
        double loss = parts[lastPart].loss(windows, x, keys, gradScale, flatGrads);
        if (flatGrads != null) {
            INDArray g = parts[lastPart].gradInput();
            for (int i = lastPart - 1; i >= 0; i--) {
                g = parts[i].backward(LOSS_SLOT, g, flatGrads);
            }
            gradInput = g;
        }
        return loss;
    }

    @Override
    public INDArray gradInput() {
        return gradInput;
    }

    @Override
    public INDArray logits(int[][] windows, INDArray xIn) {
        INDArray x = xIn;
        for (int i = 0; i < parts.length - 1; i++) {
            x = parts[i].forward(-1, windows, x, null);
        }
        return parts[parts.length - 1].logits(windows, x);
    }

    @Override
    public void close() {
        for (Stage p : parts) {
            p.close();
        }
    }
}
