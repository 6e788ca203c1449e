package io.dtrain.model.fused;

import io.dtrain.config.ModelConfig;
import io.dtrain.model.GptModel;
import org.bytedeco.javacpp.Pointer;
import org.junit.jupiter.api.Test;
import org.nd4j.linalg.api.ndarray.INDArray;

import java.lang.management.ManagementFactory;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Once a model's buffers exist (its first step makes them), a fused training step allocates nothing: not on the
 * Java heap of the training thread, not off-heap through JavaCPP.
 *
 * <p>Until the JIT has compiled the kernels, the JVM boxes Vector API values in interpreted code (tens of MB per
 * step for the first hundred steps of a JVM); that is the JVM warming up, not the engine allocating. So the JIT is
 * warmed up on another model first, and the model measured is fresh.
 */
class NoAllocationTest {
    private static final com.sun.management.ThreadMXBean THREADS =
            (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();

    private static ModelConfig config() {
        return new ModelConfig(257, 64, 64, 2, 4, 0, "pre", "gelu", 0.0, true, true, 0.02, 1e-5, "float32", "fused");
    }

    private static int[][] windows() {
        SplittableRandom rng = new SplittableRandom(1);
        int[][] windows = new int[4][65];
        for (int[] w : windows) {
            for (int t = 0; t < w.length; t++) {
                w[t] = rng.nextInt(257);
            }
        }
        return windows;
    }

    @Test
    void stepsFiveToFifteenAllocateNothing() {
        int[][] windows = windows();
        long[] samples = {0, 1, 2, 3};
        try (GptModel warmUp = new GptModel(config())) {
            INDArray params = warmUp.newFlatBuffer();
            INDArray grads = warmUp.newFlatBuffer();
            warmUp.initParams(params, 1);
            warmUp.setParams(params);
            for (int step = 0; step < 300; step++) {
                warmUp.forwardBackward(windows, samples, step, 7, grads);
            }
        }
        long thread = Thread.currentThread().getId();
        try (GptModel model = new GptModel(config())) {
            INDArray params = model.newFlatBuffer();
            INDArray grads = model.newFlatBuffer();
            model.initParams(params, 1);
            model.setParams(params);
            long offHeapBefore = Pointer.totalBytes();
            long heapAt5 = 0;
            long offHeapAt5 = 0;
            for (int step = 0; step <= 15; step++) {
                if (step == 5) {
                    heapAt5 = THREADS.getThreadAllocatedBytes(thread);
                    offHeapAt5 = Pointer.totalBytes();
                }
                model.forwardBackward(windows, samples, step, 7, grads);
            }
            long heap = THREADS.getThreadAllocatedBytes(thread) - heapAt5;
            long offHeap = Pointer.totalBytes() - offHeapAt5;
            assertTrue(offHeapAt5 > offHeapBefore, "the first steps allocate the activations");
            assertEquals(0, offHeap, "off-heap bytes allocated by steps 5..15");
            assertEquals(0, heap, "heap bytes allocated by steps 5..15 on the training thread");
        }
    }
}
