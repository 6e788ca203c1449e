package io.dtrain.model;

import java.util.Arrays;

/**
 * One named parameter tensor inside the trainer's flat buffers.
 *
 * @param name   checkpoint name, e.g. {@code h.3.attn.c_attn.weight} (GPT-2 / nanoGPT naming, weights stored [in, out])
 * @param shape  C-order shape
 * @param offset first element inside the flat buffer
 * @param stage  index of the stage graph that owns it
 * @param kind   decides the weight-decay group
 */
public record ParamSpec(String name, long[] shape, long offset, int stage, ParamKind kind) {

    public long size() {
        long n = 1;
        for (long d : shape) {
            n *= d;
        }
        return n;
    }

    public long end() {
        return offset + size();
    }

    @Override
    public String toString() {
        return name + Arrays.toString(shape) + "@" + offset + " stage " + stage + " " + kind;
    }
}
