package io.dtrain.model;

import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.indexing.NDArrayIndex;

import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The order and offsets of all parameters in the trainer-owned flat buffers (parameters, gradients, AdamW
 * moments). Parameters are laid out stage by stage, so each stage's parameters are one contiguous range:
 * the data-parallel issue AllReduces such ranges as buckets, the pipeline issue keeps only its own range.
 */
public final class ParamLayout {
    private final List<ParamSpec> specs;
    private final Map<String, ParamSpec> byName;
    private final long size;

    private ParamLayout(List<ParamSpec> specs) {
        this.specs = Collections.unmodifiableList(specs);
        Map<String, ParamSpec> m = new LinkedHashMap<>();
        for (ParamSpec s : specs) {
            if (m.put(s.name(), s) != null) {
                throw new IllegalArgumentException("duplicate parameter name " + s.name());
            }
        }
        this.byName = Collections.unmodifiableMap(m);
        this.size = specs.isEmpty() ? 0 : specs.get(specs.size() - 1).end();
    }

    /** Builds a layout, assigning offsets in the given order. */
    public static final class Builder {
        private final List<ParamSpec> specs = new ArrayList<>();
        private long next;

        public Builder add(String name, ParamKind kind, int stage, long... shape) {
            ParamSpec s = new ParamSpec(name, shape.clone(), next, stage, kind);
            specs.add(s);
            next = s.end();
            return this;
        }

        public ParamLayout build() {
            return new ParamLayout(new ArrayList<>(specs));
        }
    }

    public static Builder builder() {
        return new Builder();
    }

    public List<ParamSpec> specs() {
        return specs;
    }

    public ParamSpec spec(String name) {
        ParamSpec s = byName.get(name);
        if (s == null) {
            throw new IllegalArgumentException("no parameter named " + name);
        }
        return s;
    }

    public boolean contains(String name) {
        return byName.containsKey(name);
    }

    /** Total number of elements (the flat buffers' length). */
    public long size() {
        return size;
    }

    public List<ParamSpec> stageSpecs(int stage) {
        List<ParamSpec> out = new ArrayList<>();
        for (ParamSpec s : specs) {
            if (s.stage() == stage) {
                out.add(s);
            }
        }
        return out;
    }

    /** [first, end) element range of one stage's parameters in the flat buffers. */
    public long[] stageRange(int stage) {
        List<ParamSpec> ss = stageSpecs(stage);
        if (ss.isEmpty()) {
            return new long[] {0, 0};
        }
        return new long[] {ss.get(0).offset(), ss.get(ss.size() - 1).end()};
    }

    /** A view (no copy) of one parameter inside a flat buffer laid out by this layout. */
    public INDArray view(INDArray flat, String name) {
        return view(flat, spec(name));
    }

    public static INDArray view(INDArray flat, ParamSpec s) {
        INDArray v = flat.get(NDArrayIndex.interval(s.offset(), s.end()));
        return v.reshape('c', s.shape());
    }
}
