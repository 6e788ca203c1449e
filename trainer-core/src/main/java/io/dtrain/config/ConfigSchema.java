package io.dtrain.config;

import java.lang.reflect.Constructor;
import java.lang.reflect.RecordComponent;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The one table of configuration keys: dotted key, type, default, allowed values or range, one-line doc.
 * It drives validation and defaults ({@link ConfigLoader}, {@link ConfigRules}), {@code --set} overrides, the
 * resolved YAML ({@link ConfigLoader#toYaml}), the deprecated keys still accepted ({@link #deprecatedKeys}) and the
 * generated reference ({@link ConfigReference}, docs/config-reference.md).
 *
 * <p>Each section is a record ({@code model} is {@link ModelConfig}, ...); its keys are the record's components
 * in snake_case and in the same order, checked when this class loads so the table and the records cannot drift.
 * A new section (parallel, metrics, ...) is a new record, a component of {@link RunConfig} and its rows here.
 */
public final class ConfigSchema {

    public enum ValueType {
        INT("integer"), LONG("integer"), DOUBLE("number"), BOOLEAN("true/false"), STRING("string"),
        /** A filesystem path: relative ones resolve against the working directory; URIs (hdfs://...) stay as is. */
        PATH("path");

        private final String description;

        ValueType(String description) {
            this.description = description;
        }

        public String description() {
            return description;
        }
    }

    /** A closed or half-open numeric interval; either end may be absent. */
    public record Range(Double min, boolean minInclusive, Double max, boolean maxInclusive) {
        static final Range ANY = new Range(null, true, null, true);

        static Range atLeast(double min) {
            return new Range(min, true, null, true);
        }

        static Range greaterThan(double min) {
            return new Range(min, false, null, true);
        }

        static Range halfOpen(double min, double max) {
            return new Range(min, true, max, false);
        }

        public boolean contains(double v) {
            if (Double.isNaN(v)) {
                return false;
            }
            boolean aboveMin = min == null || (minInclusive ? v >= min : v > min);
            boolean belowMax = max == null || (maxInclusive ? v <= max : v < max);
            return aboveMin && belowMax;
        }

        /** "any", ">= 1", "> 0", "[0, 1)". */
        public String describe() {
            if (min == null && max == null) {
                return "any";
            }
            if (max == null) {
                return (minInclusive ? ">= " : "> ") + number(min);
            }
            if (min == null) {
                return (maxInclusive ? "<= " : "< ") + number(max);
            }
            return (minInclusive ? "[" : "(") + number(min) + ", " + number(max) + (maxInclusive ? "]" : ")");
        }

        private static String number(double d) {
            return d == Math.rint(d) ? Long.toString((long) d) : Double.toString(d);
        }
    }

    /**
     * One configuration key.
     *
     * @param key          dotted path, e.g. "model.n_head"
     * @param type         value type
     * @param defaultValue value used when neither the file nor --set gives the key (Integer, Long, Double, Boolean, String)
     * @param range        allowed numeric range (numbers only)
     * @param choices      allowed values (strings only; empty = any)
     * @param required     a string that must not be empty (no usable default)
     * @param doc          one line for the reference
     */
    public record Entry(String key, ValueType type, Object defaultValue, Range range, List<String> choices,
                        boolean required, String doc) {

        public String section() {
            return key.substring(0, key.indexOf('.'));
        }

        public String name() {
            return key.substring(key.indexOf('.') + 1);
        }

        /** "[0, 1)", "pre \| post", "required", or "" when anything of the type goes. */
        public String describeAllowed() {
            if (!choices.isEmpty()) {
                return String.join(" | ", choices);
            }
            if (required) {
                return "required";
            }
            return range.equals(Range.ANY) ? "" : range.describe();
        }
    }

    /**
     * A key that was renamed or redefined. Files, {@code --set} and maps may still give it: {@link ConfigLoader}
     * reads its value as the replacement's (multiplied by the value of {@code multiplier} when that is set), prints
     * one deprecation line, and refuses a configuration that gives both keys. Nothing else knows the old key: the
     * records, the resolved YAML and the reference's tables have only the replacement.
     *
     * @param key         the old dotted key
     * @param replacement the key that holds the value now
     * @param multiplier  "" when the value carries over unchanged; else the key whose value converts it (an old count
     *                    of micro-batches is that many x training.micro_batch sequences); a 0 (auto) there cannot
     *                    convert, and the loader asks for the replacement instead
     * @param reason      why it changed, one line for the reference
     */
    public record DeprecatedKey(String key, String replacement, String multiplier, String reason) {
    }

    /** A top-level section: its name in the YAML file, the record holding its keys and a one-line doc. */
    public record Section(String name, Class<? extends Record> recordType, String doc) {
    }

    private static final List<Section> SECTIONS = List.of(
            new Section("model", ModelConfig.class, "the GPT's shape"),
            new Section("optimizer", OptimizerConfig.class, "AdamW with decoupled weight decay and gradient clipping"),
            new Section("schedule", ScheduleConfig.class,
                    "learning rate: linear warm-up from 0 to optimizer.lr, then decay to optimizer.min_lr"),
            new Section("data", DataConfig.class, "where training and validation text comes from"),
            new Section("training", TrainingConfig.class, "run length, batch sizes and cadences"),
            new Section("output", OutputConfig.class, "where a run writes"),
            new Section("metrics", MetricsConfig.class,
                    "utilization metrics, step records, MFU, the trace and the Prometheus endpoint (see `dtrain report`)"),
            new Section("parallel", ParallelismConfig.class,
                    "how data-parallel ranks average gradients (buckets, overlap) and how the model is split into pipeline stages"));

    private static final List<Entry> ENTRIES = List.of(
            integer("model.vocab_size", 257, Range.atLeast(1),
                    "tokens in the vocabulary: >= 257 for the byte tokenizer (256 bytes + end-of-document), >= 50257 for gpt2"),
            integer("model.seq_len", 64, Range.atLeast(1), "context length T (positions of the learned position embedding)"),
            integer("model.d_model", 64, Range.atLeast(1), "residual width D"),
            integer("model.n_layer", 2, Range.atLeast(1), "transformer blocks L"),
            integer("model.n_head", 4, Range.atLeast(1), "attention heads H; d_model must be divisible by n_head"),
            integer("model.d_ff", 0, Range.atLeast(0), "feed-forward width (0 = 4 x d_model)"),
            choice("model.norm", "pre", List.of("pre", "post"),
                    "pre: x + sublayer(LayerNorm(x)) (GPT-2); post: LayerNorm(x + sublayer(x)) (original Transformer)"),
            choice("model.activation", "gelu", List.of("gelu", "relu"),
                    "feed-forward activation; gelu is the tanh approximation, as GPT-2"),
            number("model.dropout", 0.0, Range.halfOpen(0, 1),
                    "dropout probability on embeddings, attention probabilities and residual branches"),
            bool("model.tie_embeddings", true, "the LM head shares the token embedding matrix"),
            bool("model.bias", true, "linear layers and LayerNorms have biases"),
            number("model.init_std", 0.02, Range.greaterThan(0),
                    "std of the normal initialisation of weights (residual projections scaled by 1/sqrt(2 x n_layer))"),
            number("model.layer_norm_eps", 1e-5, Range.atLeast(0),
                    "LayerNorm epsilon, added to the variance as in PyTorch (0 = none)"),
            choice("model.dtype", "float32", List.of("float32", "float64"), "floating-point type of parameters and activations"),
            choice("model.engine", "auto", List.of("auto", "fused", "samediff"),
                    "what computes the model: fused (hand-written CPU kernels on preallocated buffers), samediff (the SameDiff graph; the CUDA path) or auto (fused on the CPU backend, samediff otherwise)"),
            path("model.init_from", "", false,
                    "start from these weights instead of a random initialisation: a safetensors file or a Hugging Face model directory (model.safetensors) in GPT-2's layout, e.g. one `dtrain export --format hf` wrote; shapes must match this config (\"\" = random, from training.seed)"),

            number("optimizer.lr", 6e-4, Range.greaterThan(0), "peak learning rate (after warm-up)"),
            number("optimizer.min_lr", 6e-5, Range.atLeast(0), "learning rate at the end of the decay; <= lr"),
            number("optimizer.beta1", 0.9, Range.halfOpen(0, 1), "AdamW beta1"),
            number("optimizer.beta2", 0.95, Range.halfOpen(0, 1), "AdamW beta2"),
            number("optimizer.eps", 1e-8, Range.greaterThan(0), "AdamW epsilon"),
            number("optimizer.weight_decay", 0.1, Range.atLeast(0), "decoupled weight decay of the matrices of linear layers"),
            bool("optimizer.decay_biases_and_norms", false, "also decay biases and LayerNorm gains/offsets"),
            bool("optimizer.decay_embeddings", false, "also decay token/position embeddings"),
            number("optimizer.grad_clip", 1.0, Range.atLeast(0), "clip the global gradient L2 norm to this value (0 = no clipping)"),
            choice("optimizer.lr_scaling", "none", List.of("none", "linear", "sqrt"),
                    "scale lr (and min_lr) with the data-parallel world size"),
            bool("optimizer.shard_state", false, "ZeRO-1: shard AdamW state over data-parallel ranks"),

            integer("schedule.warmup_steps", 0, Range.atLeast(0), "steps of linear warm-up; <= the run's steps"),
            choice("schedule.decay", "cosine", List.of("cosine", "linear", "constant"), "shape of the decay after warm-up"),
            longInt("schedule.decay_steps", 0L, Range.atLeast(0),
                    "step at which the decay reaches min_lr (0 = the run's last step); > warmup_steps"),

            path("data.train", "", true, "training input: a file, a directory or a glob of *.jsonl / *.jsonl.zst (or preprocessed shards)"),
            path("data.val", "", false, "validation input, same forms (\"\" = none)"),
            choice("data.tokenizer", "byte", List.of("byte", "gpt2"),
                    "byte: 256 byte values + end-of-document (id 256); gpt2: GPT-2 BPE from tokenizer_dir"),
            path("data.tokenizer_dir", "", false,
                    "required when tokenizer is gpt2: a directory with Hugging Face's vocab.json + merges.txt, or a tokenizer.json (file or in the directory) of a GPT-2 style byte-level BPE; tokenizer.json settings dtrain does not implement are refused: a normalizer (e.g. NFC), a pre-tokenizer other than ByteLevel, use_regex: false, add_prefix_space: true, BPE dropout, subword prefixes/suffixes, byte_fallback, ignore_merges, a post-processor that adds tokens, non-special added tokens"),
            choice("data.on_bad_record", "skip", List.of("skip", "fail"),
                    "a malformed record: skip (count and report) or fail (stop, naming file and line)"),
            longInt("data.seed", 1234L, Range.ANY, "seed of the sample order (shuffle of global sample indices per epoch)"),
            integer("data.workers", 1, Range.atLeast(1), "background threads preparing batches"),

            integer("training.global_batch", 8, Range.atLeast(1),
                    "sequences per optimizer step over all data-parallel ranks; a multiple of micro_batch x data-parallel size"),
            integer("training.micro_batch", 0, Range.atLeast(0),
                    "sequences per forward/backward pass on one rank; 0 = global_batch / data-parallel size (one micro-batch per rank per step)"),
            longInt("training.steps", 0L, Range.atLeast(0), "optimizer steps to run; exactly one of steps and tokens is > 0"),
            longInt("training.tokens", 0L, Range.atLeast(0),
                    "tokens to train on; steps = ceil(tokens / (global_batch x seq_len)); exactly one of steps and tokens is > 0"),
            longInt("training.seed", 1337L, Range.ANY, "seed of initialisation and dropout"),
            integer("training.log_interval", 10, Range.atLeast(1), "console line every N steps"),
            integer("training.eval_interval", 0, Range.atLeast(0), "evaluate every N steps (0 = only at the end)"),
            integer("training.eval_sequences", 64, Range.atLeast(1),
                    "validation sequences per evaluation: a fixed set spread evenly over data.val (all of it if smaller), the same for every micro_batch and data-parallel size"),
            integer("training.checkpoint_interval", 0, Range.atLeast(0), "checkpoint every N steps (0 = only at the end)"),
            choice("training.on_non_finite", "stop", List.of("stop", "skip"),
                    "when loss or gradients are NaN/Inf: stop the run, or skip the step"),
            choice("training.recompute", "none", List.of("none", "blocks"),
                    "activation recomputation: none (keep every block's activations for the backward pass) or blocks (keep only each block's input and recompute the block just before its backward: less memory, one more forward per step)"),
            choice("training.precision", "fp32", List.of("fp32", "fp16", "bf16"),
                    "arithmetic of the forward and backward passes: fp32, or fp16 mixed precision (fp16 weights copies, activations and matmul inputs with fp32 accumulation, fp32 master weights, gradients, AllReduce and AdamW, dynamic loss scaling; on either engine, rounded at the same points: the fused CPU engine emulates it, the SameDiff graph rounds with casts and computes its GEMMs in fp32, so on a GPU it has fp16's numerics, not its speed); bf16 is refused where unsupported (the CPU engine, V100 and other GPUs below compute capability 8.0), naming why"),
            number("training.loss_scale.initial", 65536.0, Range.greaterThan(0),
                    "fp16: the dynamic loss scale at the start (2^16, as Megatron and DeepSpeed); halved and the step skipped when a gradient overflows"),
            integer("training.loss_scale.growth_interval", 2000, Range.atLeast(1),
                    "fp16: double the loss scale after this many steps in a row without overflow (Megatron's and DeepSpeed's default 2000)"),
            number("training.loss_scale.min", 1.0, Range.greaterThan(0),
                    "fp16: the floor of the loss scale; an overflow at the floor stops the run (lower optimizer.lr, or use precision fp32)"),

            path("output.dir", "runs/default", true, "run directory (checkpoints, metrics, resolved config)"),
            integer("output.keep_checkpoints", 3, Range.atLeast(1), "keep the newest K checkpoints"),

            integer("metrics.interval_ms", 500, Range.atLeast(0),
                    "system sampler period in ms (CPU, memory, network, disk, GPU) into metrics/system-rankN.jsonl; 0 = off"),
            choice("metrics.device", "cpu", List.of("cpu", "v100", "a100", "h100"),
                    "device of the MFU's peak, for training.precision (hardware.yaml): v100 15.7e12 fp32 / 125e12 fp16 tensor cores, a100 19.5e12 / 312e12, h100 67e12 / 989e12; cpu = measured fp32 GEMM rate (also for emulated fp16)"),
            number("metrics.peak_flops", 0.0, Range.atLeast(0),
                    "peak FLOP/s of one rank's device for the MFU (0 = the device's figure)"),
            integer("metrics.prometheus_port", 0, new Range(0.0, true, 65535.0, true),
                    "serve Prometheus metrics at http://host:(port + local rank)/metrics, so every node uses the same ports; 0 = off"),
            bool("metrics.trace", true, "write a Chrome/Perfetto trace of every step's phases (metrics/trace-rankN.json, merged into trace.json)"),
            bool("metrics.tensorboard", true,
                    "write TensorBoard event files of the training and validation scalars under tensorboard/rankN/ (tensorboard --logdir RUN/tensorboard; wandb sync --sync-tensorboard)"),

            number("parallel.dp.bucket_mb", 25.0, Range.greaterThan(0),
                    "data parallelism: AllReduce gradients in buckets of at most this many MiB (as PyTorch DDP's bucket_cap_mb)"),
            integer("parallel.dp.overlap_segments", 1, Range.atLeast(1),
                    "data parallelism: split the model into this many segments (graphs of contiguous blocks, <= model.n_layer) so a segment's buckets AllReduce while earlier segments run backward; 1 = no overlap"),
            integer("parallel.pipeline.stages", 1, Range.atLeast(1),
                    "pipeline parallelism: P stages, each a contiguous run of blocks in its own process; world size = P x data-parallel size; micro-batches per step M = global_batch / (micro_batch x DP size)"),
            choice("parallel.pipeline.schedule", "1f1b", List.of("1f1b", "gpipe"),
                    "1f1b: one forward one backward (at most P micro-batches' activations held); gpipe: all forwards, then all backwards (M held)"),
            text("parallel.pipeline.partition", "",
                    "blocks per stage, comma-separated (e.g. 3,2,2,1; sums to model.n_layer); empty = balanced by estimated cost, embedding on the first stage and LM head on the last"));

    /** The rules between keys that {@link ConfigRules#checkBetweenKeys} checks, in words for the reference. */
    static final List<String> RULES = List.of(
            "`model.d_model` is divisible by `model.n_head`.",
            "`model.vocab_size` >= 257 with `data.tokenizer: byte`, >= 50257 with `data.tokenizer: gpt2`.",
            "`data.tokenizer: gpt2` needs `data.tokenizer_dir`.",
            "Exactly one of `training.steps` and `training.tokens` is > 0.",
            "`training.global_batch` is a multiple of `training.micro_batch`; at run time also of"
                    + " `micro_batch x data-parallel size` (gradient-accumulation steps = global_batch / (micro_batch x DP size))."
                    + " `training.micro_batch: 0` (the default) is global_batch / DP size, one micro-batch per rank per step:"
                    + " global_batch is then a multiple of the DP size.",
            "`schedule.warmup_steps` <= the run's steps (`training.steps`, or the steps that cover `training.tokens`).",
            "`schedule.decay_steps` is 0 or > `schedule.warmup_steps`.",
            "`optimizer.min_lr` <= `optimizer.lr`.",
            "`training.precision: fp16` needs `model.dtype: float32`;"
                    + " `training.loss_scale.min` <= `training.loss_scale.initial`. `bf16` is refused, naming why (no bf16 on the CPU engine, SameDiff"
                    + " or GPUs below compute capability 8.0 such as V100).");

    /** Old keys still accepted, each with one deprecation line (docs/config-reference.md lists them). */
    private static final List<DeprecatedKey> DEPRECATED = List.of(
            new DeprecatedKey("parallel.dp.overlap_stages", "parallel.dp.overlap_segments", "",
                    "\"stage\" means a pipeline stage only; the data-parallel overlap split is into segments"),
            new DeprecatedKey("training.eval_batches", "training.eval_sequences", "training.micro_batch",
                    "counted micro-batches, so the evaluated set changed with micro_batch and the data-parallel size"));

    private static final Map<String, Entry> BY_KEY;

    static {
        Map<String, Entry> byKey = new LinkedHashMap<>();
        for (Entry e : ENTRIES) {
            if (byKey.put(e.key(), e) != null) {
                throw new IllegalStateException("ConfigSchema: duplicate key " + e.key());
            }
        }
        BY_KEY = Collections.unmodifiableMap(byKey);
        checkMatchesRecords();
        for (DeprecatedKey d : DEPRECATED) {
            if (byKey.containsKey(d.key()) || !byKey.containsKey(d.replacement())
                    || !(d.multiplier().isEmpty() || byKey.containsKey(d.multiplier()))) {
                throw new IllegalStateException("ConfigSchema: deprecated key " + d.key() + " must be gone from the table"
                        + " and name keys of it (" + d.replacement() + ", " + d.multiplier() + ")");
            }
        }
    }

    private ConfigSchema() {
    }

    public static List<Section> sections() {
        return SECTIONS;
    }

    public static List<Entry> entries() {
        return ENTRIES;
    }

    /** The entry of a dotted key, or null. */
    public static Entry entry(String key) {
        return BY_KEY.get(key);
    }

    public static List<Entry> entries(String section) {
        List<Entry> out = new ArrayList<>();
        for (Entry e : ENTRIES) {
            if (e.section().equals(section)) {
                out.add(e);
            }
        }
        return out;
    }

    /** A dotted path that holds keys: a section ("parallel") or a group inside one ("parallel.dp"). */
    public static boolean holdsKeys(String path) {
        String prefix = path + ".";
        return ENTRIES.stream().anyMatch(e -> e.key().startsWith(prefix));
    }

    /** The entry that types a key as given by a user: its own, or its replacement's when deprecated; else null. */
    public static Entry entryOrReplacement(String key) {
        DeprecatedKey d = deprecated(key);
        return entry(d == null ? key : d.replacement());
    }

    public static List<DeprecatedKey> deprecatedKeys() {
        return DEPRECATED;
    }

    /** The deprecation of an old dotted key, or null. */
    public static DeprecatedKey deprecated(String key) {
        return DEPRECATED.stream().filter(d -> d.key().equals(key)).findFirst().orElse(null);
    }

    /** Every key at its default (not a valid run on its own: data.train is empty and neither steps nor tokens is set). */
    public static RunConfig defaults() {
        Map<String, Object> values = new LinkedHashMap<>();
        for (Entry e : ENTRIES) {
            values.put(e.key(), e.defaultValue());
        }
        return build(values);
    }

    /** Builds the records from typed values, one per key (Integer, Long, Double, Boolean or String). */
    static RunConfig build(Map<String, Object> values) {
        Object[] sections = new Object[SECTIONS.size()];
        for (int i = 0; i < SECTIONS.size(); i++) {
            Section s = SECTIONS.get(i);
            List<Entry> keys = entries(s.name());
            Object[] args = new Object[keys.size()];
            for (int k = 0; k < keys.size(); k++) {
                args[k] = values.get(keys.get(k).key());
            }
            sections[i] = construct(s.recordType(), args);
        }
        return (RunConfig) construct(RunConfig.class, sections);
    }

    /** Every key's value, in schema order. */
    static Map<String, Object> values(RunConfig config) {
        Map<String, Object> out = new LinkedHashMap<>();
        for (Section s : SECTIONS) {
            Object section = read(config, RunConfig.class.getRecordComponents()[SECTIONS.indexOf(s)]);
            RecordComponent[] components = s.recordType().getRecordComponents();
            List<Entry> keys = entries(s.name());
            for (int k = 0; k < keys.size(); k++) {
                out.put(keys.get(k).key(), read(section, components[k]));
            }
        }
        return out;
    }

    static String snakeCase(String camel) {
        return camel.replaceAll("([a-z0-9])([A-Z])", "$1_$2").toLowerCase(Locale.ROOT);
    }

    private static Entry integer(String key, int def, Range range, String doc) {
        return new Entry(key, ValueType.INT, def, range, List.of(), false, doc);
    }

    private static Entry longInt(String key, long def, Range range, String doc) {
        return new Entry(key, ValueType.LONG, def, range, List.of(), false, doc);
    }

    private static Entry number(String key, double def, Range range, String doc) {
        return new Entry(key, ValueType.DOUBLE, def, range, List.of(), false, doc);
    }

    private static Entry bool(String key, boolean def, String doc) {
        return new Entry(key, ValueType.BOOLEAN, def, Range.ANY, List.of(), false, doc);
    }

    private static Entry choice(String key, String def, List<String> choices, String doc) {
        return new Entry(key, ValueType.STRING, def, Range.ANY, choices, false, doc);
    }

    private static Entry text(String key, String def, String doc) {
        return new Entry(key, ValueType.STRING, def, Range.ANY, List.of(), false, doc);
    }

    private static Entry path(String key, String def, boolean required, String doc) {
        return new Entry(key, ValueType.PATH, def, Range.ANY, List.of(), required, doc);
    }

    private static Object construct(Class<? extends Record> type, Object[] args) {
        RecordComponent[] components = type.getRecordComponents();
        Class<?>[] types = new Class<?>[components.length];
        for (int i = 0; i < components.length; i++) {
            types[i] = components[i].getType();
        }
        try {
            Constructor<? extends Record> c = type.getDeclaredConstructor(types);
            return c.newInstance(args);
        } catch (ReflectiveOperationException | IllegalArgumentException e) {
            throw new IllegalStateException("cannot build " + type.getSimpleName() + " from the schema's values", e);
        }
    }

    private static Object read(Object record, RecordComponent component) {
        try {
            return component.getAccessor().invoke(record);
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException("cannot read " + component.getName(), e);
        }
    }

    /** The table must list each record's components, in order, with matching types: a developer error otherwise. */
    private static void checkMatchesRecords() {
        RecordComponent[] top = RunConfig.class.getRecordComponents();
        if (top.length != SECTIONS.size()) {
            throw new IllegalStateException("ConfigSchema: RunConfig has " + top.length + " sections, the schema "
                    + SECTIONS.size());
        }
        for (int i = 0; i < top.length; i++) {
            Section s = SECTIONS.get(i);
            if (!top[i].getName().equals(s.name()) || top[i].getType() != s.recordType()) {
                throw new IllegalStateException("ConfigSchema: section " + i + " is " + s.name() + " but RunConfig has "
                        + top[i].getName());
            }
            RecordComponent[] components = s.recordType().getRecordComponents();
            List<Entry> keys = entries(s.name());
            if (components.length != keys.size()) {
                throw new IllegalStateException("ConfigSchema: " + s.recordType().getSimpleName() + " has "
                        + components.length + " components, the schema lists " + keys.size() + " keys under " + s.name());
            }
            for (int k = 0; k < components.length; k++) {
                Entry e = keys.get(k);
                // a nested key (parallel.pipeline.stages) matches the component pipelineStages
                String expected = s.name() + "." + snakeCase(components[k].getName());
                if (!(s.name() + "." + e.name().replace('.', '_')).equals(expected) || javaType(e.type()) != components[k].getType()) {
                    throw new IllegalStateException("ConfigSchema: key " + e.key() + " (" + e.type() + ") does not match "
                            + s.recordType().getSimpleName() + "." + components[k].getName() + " ("
                            + components[k].getType().getSimpleName() + ") at position " + k);
                }
                if (e.defaultValue() == null || boxed(javaType(e.type())) != e.defaultValue().getClass()) {
                    throw new IllegalStateException("ConfigSchema: default of " + e.key() + " has the wrong type");
                }
            }
        }
    }

    private static Class<?> javaType(ValueType t) {
        return switch (t) {
            case INT -> int.class;
            case LONG -> long.class;
            case DOUBLE -> double.class;
            case BOOLEAN -> boolean.class;
            case STRING, PATH -> String.class;
        };
    }

    private static Class<?> boxed(Class<?> c) {
        if (c == int.class) {
            return Integer.class;
        }
        if (c == long.class) {
            return Long.class;
        }
        if (c == double.class) {
            return Double.class;
        }
        if (c == boolean.class) {
            return Boolean.class;
        }
        return c;
    }
}
