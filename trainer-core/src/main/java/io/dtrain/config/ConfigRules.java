package io.dtrain.config;

import io.dtrain.config.ConfigSchema.Entry;
import io.dtrain.config.RawValue.Origin;

import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;

/**
 * What a configuration must satisfy: each value its key's type, range or choices ({@link #typed}), and the rules
 * between keys ({@link #checkBetweenKeys}, listed for the reference in {@link ConfigSchema#RULES}). Every
 * violation is one {@link ConfigException} naming the file, line and key to change.
 */
final class ConfigRules {
    private static final Pattern INTEGER = Pattern.compile("[-+]?[0-9][0-9_]*");
    private static final Pattern NUMBER = Pattern.compile("[-+]?(\\.[0-9]+|[0-9][0-9_]*(\\.[0-9_]*)?)([eE][-+]?[0-9]+)?");

    private ConfigRules() {
    }

    /**
     * Names the line of the first listed key given explicitly, else of its section, else just the file.
     *
     * @param raw            the values as given, by dotted key
     * @param sectionOrigins where each section (or group) was opened in the file
     * @param source         the file, for keys given nowhere
     */
    record Where(Map<String, RawValue> raw, Map<String, Origin> sectionOrigins, String source) {
        ConfigException error(String message, String... keys) {
            for (String key : keys) {
                RawValue r = raw.get(key);
                if (r != null) {
                    return new ConfigException(r.origin().file(), r.origin().line(), key, message);
                }
            }
            for (String key : keys) {
                Origin o = sectionOrigins.get(key.substring(0, key.lastIndexOf('.')));
                if (o != null) {
                    return new ConfigException(o.file(), o.line(), key, message);
                }
            }
            return new ConfigException(source, -1, keys[0], message);
        }
    }

    /** The rules between keys, on a config whose every value already has its type and range. */
    static void checkBetweenKeys(RunConfig c, Where where) {
        ModelConfig m = c.model();
        if (m.dModel() % m.nHead() != 0) {
            throw where.error("model.d_model (" + m.dModel() + ") is not divisible by model.n_head (" + m.nHead()
                    + "); choose n_head dividing d_model (head size = d_model / n_head)", "model.n_head", "model.d_model");
        }
        DataConfig d = c.data();
        int minVocab = "gpt2".equals(d.tokenizer()) ? 50257 : 257;
        if (m.vocabSize() < minVocab) {
            throw where.error("model.vocab_size (" + m.vocabSize() + ") is too small for the " + d.tokenizer()
                    + " tokenizer: it needs >= " + minVocab + ("byte".equals(d.tokenizer())
                    ? " (256 byte values + end-of-document)" : " (GPT-2's BPE vocabulary)"), "model.vocab_size", "data.tokenizer");
        }
        if ("gpt2".equals(d.tokenizer()) && d.tokenizerDir().isEmpty()) {
            throw where.error("data.tokenizer is gpt2 but data.tokenizer_dir is not set; point it at a directory with"
                    + " vocab.json and merges.txt", "data.tokenizer", "data.tokenizer_dir");
        }
        TrainingConfig t = c.training();
        if ((t.steps() > 0) == (t.tokens() > 0)) {
            String message = t.steps() > 0
                    ? "training.steps (" + t.steps() + ") and training.tokens (" + t.tokens() + ") are both set; set exactly one (the other 0)"
                    : "the run has no length: set exactly one of training.steps or training.tokens (> 0)";
            throw where.error(message, "training.steps", "training.tokens");
        }
        if (t.microBatch() > 0 && t.globalBatch() % t.microBatch() != 0) {
            throw where.error("training.global_batch (" + t.globalBatch() + ") is not a multiple of training.micro_batch ("
                    + t.microBatch() + "); gradient-accumulation steps = global_batch / (micro_batch x data-parallel size)"
                    + " must be an integer", "training.global_batch", "training.micro_batch");
        }
        ScheduleConfig s = c.schedule();
        if (s.warmupSteps() > c.totalSteps()) {
            throw where.error("schedule.warmup_steps (" + s.warmupSteps() + ") is more than the run's steps (" + c.totalSteps()
                    + (t.steps() > 0 ? ", training.steps" : ", from training.tokens") + ")", "schedule.warmup_steps");
        }
        if (s.decaySteps() != 0 && s.decaySteps() <= s.warmupSteps()) {
            throw where.error("schedule.decay_steps (" + s.decaySteps() + ") must be 0 (= the run's last step) or more than"
                    + " schedule.warmup_steps (" + s.warmupSteps() + ")", "schedule.decay_steps", "schedule.warmup_steps");
        }
        OptimizerConfig o = c.optimizer();
        if (o.minLr() > o.lr()) {
            throw where.error("optimizer.min_lr (" + o.minLr() + ") is greater than optimizer.lr (" + o.lr() + ")",
                    "optimizer.min_lr", "optimizer.lr");
        }
        checkPrecision(c, where);
    }

    /** fp16 in float32 models (on either engine); bf16 nowhere yet, each refusal saying why. */
    private static void checkPrecision(RunConfig c, Where where) {
        TrainingConfig t = c.training();
        String engine = c.model().resolvedEngine();
        if ("bf16".equals(t.precision())) {
            throw where.error("bf16 is not supported here: " + ("fused".equals(engine)
                    ? "the fused CPU engine emulates fp16 only (bf16 would need its own rounding of every stored value),"
                    : "the SameDiff engine rounds to fp16 only (its graph casts to HALF and back; bf16 would need its own rounding),")
                    + " and bf16 tensor cores need compute capability 8.0+ (A100, H100): V100 (7.0) has none;"
                    + " use training.precision: fp16 (with dynamic loss scaling) or fp32", "training.precision");
        }
        if (!t.fp16()) {
            return;
        }
        if (c.model().isDouble()) {
            throw where.error("fp16 rounds float32 arithmetic to half precision; model.dtype: float64"
                    + " is the exact reference for tests: use model.dtype: float32 or training.precision: fp32",
                    "training.precision", "model.dtype");
        }
        if (t.lossScaleMin() > t.lossScaleInitial()) {
            throw where.error("training.loss_scale.min (" + t.lossScaleMin() + ") is greater than"
                    + " training.loss_scale.initial (" + t.lossScaleInitial() + ")", "training.loss_scale.min",
                    "training.loss_scale.initial");
        }
    }

    /**
     * The value of {@code r} as {@code e}'s type (Integer, Long, Double, Boolean or String), within its range or
     * choices; {@code key} is the key as the user gave it (a deprecated one is typed by its replacement's entry).
     */
    static Object typed(Entry e, String key, RawValue r) {
        switch (e.type()) {
            case INT, LONG -> {
                long v = parseInteger(e, key, r);
                if (e.type() == ConfigSchema.ValueType.INT && (v < Integer.MIN_VALUE || v > Integer.MAX_VALUE)) {
                    throw error(key, r, "must fit in a 32-bit integer, got " + r.text());
                }
                checkRange(e, key, r, v);
                return e.type() == ConfigSchema.ValueType.INT ? (Object) (int) v : (Object) v;
            }
            case DOUBLE -> {
                requirePlainValue(e, key, r);
                if (!NUMBER.matcher(r.text()).matches()) {
                    throw error(key, r, "expected a number, got '" + r.text() + "'");
                }
                double v = Double.parseDouble(r.text().replace("_", ""));
                checkRange(e, key, r, v);
                return v;
            }
            case BOOLEAN -> {
                requirePlainValue(e, key, r);
                if (r.text().equalsIgnoreCase("true") || r.text().equalsIgnoreCase("false")) {
                    return Boolean.parseBoolean(r.text());
                }
                throw error(key, r, "expected true or false, got '" + r.text() + "'");
            }
            case STRING -> {
                String v = r.isNull() ? "" : r.text();
                if (e.choices().isEmpty()) {
                    return v;
                }
                for (String choice : e.choices()) {
                    if (choice.equalsIgnoreCase(v.trim())) {
                        return choice;
                    }
                }
                throw error(key, r, "expected " + choicesText(e.choices()) + ", got '" + v + "'");
            }
            case PATH -> {
                return r.isNull() ? "" : r.text().trim();
            }
            default -> throw new IllegalStateException(e.type().toString());
        }
    }

    /** "an integer", "true or false", "pre or post", ...: what a key's value should look like. */
    static String expected(Entry e) {
        return switch (e.type()) {
            case INT, LONG -> "an integer";
            case DOUBLE -> "a number";
            case BOOLEAN -> "true or false";
            case STRING -> e.choices().isEmpty() ? "a string" : choicesText(e.choices());
            case PATH -> "a path";
        };
    }

    private static void checkRange(Entry e, String key, RawValue r, double v) {
        if (!e.range().contains(v)) {
            throw error(key, r, "must be " + (e.range().min() != null && e.range().max() != null ? "in " : "")
                    + e.range().describe() + ", got " + r.text());
        }
    }

    private static long parseInteger(Entry e, String key, RawValue r) {
        requirePlainValue(e, key, r);
        String text = r.text();
        try {
            if (INTEGER.matcher(text).matches()) {
                return Long.parseLong(text.replace("_", ""));
            }
            // 1e9 or 16.0 are fine when they are whole numbers: people write token budgets that way.
            if (NUMBER.matcher(text).matches()) {
                double d = Double.parseDouble(text.replace("_", ""));
                if (d == Math.rint(d) && Math.abs(d) < 0x1p53) {
                    return (long) d;
                }
            }
        } catch (NumberFormatException tooLarge) {
            throw error(key, r, "is too large: " + text);
        }
        throw error(key, r, "expected an integer, got '" + text + "'");
    }

    private static void requirePlainValue(Entry e, String key, RawValue r) {
        if (r.isNull()) {
            throw error(key, r, "expected " + expected(e) + ", got nothing (an empty value)");
        }
        if (!r.plain()) {
            throw error(key, r, "expected " + expected(e) + ", got the quoted string \"" + r.text() + "\" (remove the quotes)");
        }
    }

    private static ConfigException error(String key, RawValue r, String message) {
        return new ConfigException(r.origin().file(), r.origin().line(), key, message);
    }

    private static String choicesText(List<String> choices) {
        if (choices.size() == 2) {
            return choices.get(0) + " or " + choices.get(1);
        }
        return "one of " + String.join(", ", choices);
    }
}
