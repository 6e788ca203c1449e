package io.dtrain.train.dp;

import io.dtrain.common.UserFacingException;
import io.dtrain.metrics.GpuDevices;
import io.dtrain.model.GptModel;
import io.dtrain.parallel.ElementType;
import io.dtrain.parallel.FlatBuffer;
import io.dtrain.parallel.ProcessGroup;
import org.bytedeco.javacpp.DoublePointer;
import org.bytedeco.javacpp.FloatPointer;
import org.bytedeco.javacpp.indexer.DoubleIndexer;
import org.bytedeco.javacpp.indexer.FloatIndexer;
import org.nd4j.linalg.api.buffer.DataBuffer;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

import java.nio.ByteBuffer;
import java.util.Map;

/**
 * The flat gradient buffer of a step whose gradients a data-parallel group averages (plain data parallelism, ZeRO-1,
 * the D replicas of a pipeline stage), allocated by the group ({@link ProcessGroup#allocateSharedBuffer}) in shared
 * memory when the ranks share this host's memory, so the shared-memory exchange reduces the gradients in place (no
 * copy into its slots and back). The same memory is the ND4J array the model adds its gradients into
 * (a {@code DataBuffer} over a JavaCPP pointer to it: ND4J's {@code createBuffer(ByteBuffer, ...)} would copy).
 *
 * <p>{@code DTRAIN_SHM_GRADIENTS=false} (the same on every rank, which {@code dtrain train} checks at start:
 * {@link #setting}; unset: {@link #ON_BY_DEFAULT}) keeps an ordinary
 * ND4J array, as does a group of one (null), a group without shared memory (another host, ipc/udp, a throttle, no room in /dev/shm), a
 * gradient buffer too large for one direct buffer, and the CUDA backend (whose arrays live on the GPU). Every rank decides alike: each calls {@code allocateSharedBuffer}
 * (a group-wide call) or none does, and its answer is the same on every member.
 */
public record SharedGradients(INDArray array, FlatBuffer flat, boolean shared) {
    public static final String ENV = "DTRAIN_SHM_GRADIENTS";
    /** Whether an unset {@code DTRAIN_SHM_GRADIENTS} means on. */
    public static final boolean ON_BY_DEFAULT = true;

    /**
     * {@code DTRAIN_SHM_GRADIENTS} as every rank must hold it ({@code allocate} is a group-wide call made by all or
     * none): "true" or "false" (unset: {@link #ON_BY_DEFAULT}), or the value as given when it is neither (refused
     * later, by {@link #allocate}), for the ranks to compare at start.
     */
    public static Map<String, String> setting(Map<String, String> env) {
        String value;
        try {
            value = Boolean.toString(enabled(env));
        } catch (UserFacingException e) {
            value = env.get(ENV).strip();
        }
        return Map.of(ENV, value);
    }

    /** Whether gradients go into the group's buffer: {@code DTRAIN_SHM_GRADIENTS}, else {@link #ON_BY_DEFAULT}. */
    static boolean enabled(Map<String, String> env) {
        String value = env.get(ENV);
        if (value == null || value.isBlank()) {
            return ON_BY_DEFAULT;
        }
        if (value.strip().equalsIgnoreCase("true")) {
            return true;
        }
        if (value.strip().equalsIgnoreCase("false")) {
            return false;
        }
        throw new UserFacingException(ENV + "=" + value.strip() + " is not true or false; unset it or set "
                + ENV + "=false to keep the gradients in an ordinary ND4J array");
    }

    /**
     * The model's gradient buffer for {@code group}'s collectives (every member calls this, in the same order);
     * {@code group} null: a group of one, an ordinary array.
     */
    public static SharedGradients allocate(ProcessGroup group, GptModel model, Map<String, String> env) {
        DataType dtype = model.dataType();
        long elements = model.layout().size();
        boolean fitsOneBuffer = elements * dtype.width() <= Integer.MAX_VALUE - 8;
        // on the CUDA backend the gradients are device memory: a host mapping cannot be their array
        if (group == null || !enabled(env) || !fitsOneBuffer || (dtype != DataType.FLOAT && dtype != DataType.DOUBLE)
                || GpuDevices.cudaBackend()) {
            return ordinary(model);
        }
        FlatBuffer flat = group.allocateSharedBuffer(elements,
                dtype == DataType.DOUBLE ? ElementType.FLOAT64 : ElementType.FLOAT32);
        if (flat == null) {
            // no exchange (another host, ipc/udp, a throttle) or no room: an ND4J array, not a direct ByteBuffer,
            // whose memory the JVM's direct-memory limit (-Xmx by default) would bound
            return ordinary(model);
        }
        return new SharedGradients(wrap(flat.asByteBuffer(), dtype, elements), flat, true);
    }

    private static SharedGradients ordinary(GptModel model) {
        INDArray array = model.newFlatBuffer();
        return new SharedGradients(array, FlatBuffer.of(array), false);
    }

    /** The summary field saying whether the gradients are in the group's shared memory (reduced in place). */
    public String summaryField() {
        return ",\"gradients_in_shared_memory\":" + shared;
    }

    /** A 1-D ND4J array over {@code memory}'s {@code elements}, sharing it (writes through either are seen by both). */
    static INDArray wrap(ByteBuffer memory, DataType dtype, long elements) {
        DataBuffer data;
        if (dtype == DataType.DOUBLE) {
            DoublePointer pointer = new DoublePointer(memory.asDoubleBuffer());
            data = Nd4j.createBuffer(pointer, dtype, elements, DoubleIndexer.create(pointer));
        } else {
            FloatPointer pointer = new FloatPointer(memory.asFloatBuffer());
            data = Nd4j.createBuffer(pointer, dtype, elements, FloatIndexer.create(pointer));
        }
        return Nd4j.create(data, new long[] {elements}, new long[] {1}, 0, 'c', dtype);
    }
}
