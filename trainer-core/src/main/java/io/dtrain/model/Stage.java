package io.dtrain.model;

import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * One pipeline stage of the GPT, as an engine computes it: blocks [first, end); stage 0 also the token + position
 * embedding; the last stage also ln_f (pre-norm), the LM head and the mean cross-entropy. Two engines implement
 * it: {@code model.engine: samediff} (the SameDiff graph, the readable reference and the CUDA path) and
 * {@code fused} (hand-written CPU kernels on preallocated buffers); both compute the same numbers.
 *
 * <p>Micro-batches are {@code windows} [B][T+1] of token ids: stage 0 reads the inputs (tokens 0..T-1), the last
 * stage the targets (1..T). Activations between stages are [B, T, D]. A forward pass with {@code slot >= 0} keeps
 * what the backward pass of that slot needs (several slots are in flight in a pipeline schedule); slot -1 keeps
 * nothing. Parameter gradients are ADDED into the caller's flat gradient buffer, laid out as the model's
 * {@link ParamLayout}; a tied LM head's gradient goes into that layout's wte (stage 0's wte, or the last stage's
 * replica in a pipeline).
 */
public interface Stage extends AutoCloseable {
    int index();

    boolean isFirst();

    boolean isLast();

    /**
     * fp16 mixed precision ({@code training.precision: fp16}) or not: stored activations and activation gradients
     * rounded to half precision, arithmetic between stores in float32, parameter gradients in float32; the caller
     * hands {@link #setParams} the fp16-rounded copy of its fp32 master parameters and the loss scale as the
     * {@code gradScale} of {@link #loss}. Both engines round at the same points.
     */
    void setHalfPrecision(boolean half);

    /** Computes with these parameters from now on (fused reads them in place; SameDiff copies them). */
    void setParams(INDArray flatParams);

    /**
     * Non-last stage: the forward pass of one micro-batch. Returns x_out [B, T, D], valid until the slot's next
     * forward pass.
     *
     * @param xIn  the previous stage's output (null on stage 0)
     * @param keys dropout masks' keys, or null for no dropout
     */
    INDArray forward(int slot, int[][] windows, INDArray xIn, DropoutKeys keys);

    /**
     * Non-last stage: the backward pass of the micro-batch whose forward pass {@code slot} holds, given dL/d(x_out);
     * releases the slot. ADDS the parameter gradients into {@code flatGrads}. Returns dL/d(x_in) [B, T, D] (valid
     * until the next call on this stage), or null on stage 0, which adds the embedding's gradients instead.
     */
    INDArray backward(int slot, INDArray gradOut, INDArray flatGrads);

    /**
     * Last stage: the micro-batch's mean next-token cross-entropy. With {@code flatGrads} non-null also the backward
     * pass, in the same call: ADDS {@code gradScale} x the gradients of that mean into flatGrads, and
     * {@link #gradInput()} then holds gradScale x dL/d(x_in) (null on stage 0).
     */
    double loss(int[][] windows, INDArray xIn, DropoutKeys keys, double gradScale, INDArray flatGrads);

    /** dL/d(x_in) [B, T, D] of the last {@link #loss} with gradients, valid until the next call; null on stage 0. */
    INDArray gradInput();

    /** Last stage: logits [B, T, V] of the windows' first T tokens, no dropout. */
    INDArray logits(int[][] windows, INDArray xIn);

    @Override
    void close();
}
