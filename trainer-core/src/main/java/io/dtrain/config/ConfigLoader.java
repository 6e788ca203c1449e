package io.dtrain.config;

import io.dtrain.config.ConfigSchema.Entry;
import org.snakeyaml.engine.v2.api.LoadSettings;
import org.snakeyaml.engine.v2.api.lowlevel.Compose;
import org.snakeyaml.engine.v2.exceptions.Mark;
import org.snakeyaml.engine.v2.exceptions.MarkedYamlEngineException;
import org.snakeyaml.engine.v2.exceptions.YamlEngineException;
import org.snakeyaml.engine.v2.nodes.MappingNode;
import org.snakeyaml.engine.v2.nodes.Node;
import org.snakeyaml.engine.v2.nodes.NodeTuple;
import org.snakeyaml.engine.v2.nodes.ScalarNode;
import org.snakeyaml.engine.v2.nodes.SequenceNode;

import java.io.IOException;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.InvalidPathException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.regex.Pattern;

/**
 * Loads a run configuration: one YAML file plus {@code --set a.b.c=value} overrides, validated against
 * {@link ConfigSchema}. Every error is a {@link ConfigException} naming file, line and dotted key. Relative paths
 * (data.train, data.val, data.tokenizer_dir, output.dir) resolve against the working directory and are stored
 * absolute, so the resolved config ({@link #toYaml}) reloads identically from a checkpoint on the same machine.
 */
public final class ConfigLoader {

    /** The "file" named by errors in {@link #fromResolvedYaml}. */
    public static final String RESOLVED_SOURCE = "<resolved config>";
    /** The "file" named by errors in {@link #fromMap}. */
    public static final String MAP_SOURCE = "<map>";

    private static final Pattern INTEGER = Pattern.compile("[-+]?[0-9][0-9_]*");
    private static final Pattern NUMBER = Pattern.compile("[-+]?(\\.[0-9]+|[0-9][0-9_]*(\\.[0-9_]*)?)([eE][-+]?[0-9]+)?");
    private static final Pattern URI_SCHEME = Pattern.compile("[A-Za-z][A-Za-z0-9+.-]*://.*");
    private static final Pattern PLAIN_SAFE = Pattern.compile("[A-Za-z/_][A-Za-z0-9_./+-]*");

    /** Where a value was given: a file and 1-based line, or --set (line -1). */
    private record Origin(String file, int line) {
    }

    /** A value before typing: the scalar's text as written, whether it was plain (unquoted), and its origin. */
    private record Raw(String text, boolean plain, Origin origin) {
        boolean isNull() {
            return plain && (text.isEmpty() || text.equals("~") || text.equalsIgnoreCase("null"));
        }
    }

    private ConfigLoader() {
    }

    /** Loads {@code yaml} (relative to the working directory) and applies {@code overrides} ("a.b.c=value"). */
    public static RunConfig load(Path yaml, List<String> overrides) {
        return load(yaml, overrides, workingDirectory());
    }

    /** As {@link #load(Path, List)} with relative paths (the config file's and those inside it) resolved against {@code workingDir}. */
    public static RunConfig load(Path yaml, List<String> overrides, Path workingDir) {
        Path file = workingDir.resolve(yaml);
        if (Files.isDirectory(file)) {
            throw new ConfigException(null, -1, null, "config file " + yaml + " is a directory; pass a .yaml file (e.g. configs/gpt-tiny.yaml)");
        }
        if (!Files.isRegularFile(file)) {
            throw new ConfigException(null, -1, null, "config file " + yaml + " not found (working directory "
                    + workingDir.toAbsolutePath() + "); check the path, e.g. configs/gpt-tiny.yaml");
        }
        String text;
        try {
            text = Files.readString(file, StandardCharsets.UTF_8);
        } catch (CharacterCodingException e) {
            throw new ConfigException(yaml.toString(), -1, null, "is not valid UTF-8 text");
        } catch (IOException e) {
            throw new ConfigException(yaml.toString(), -1, null, "cannot be read: " + e);
        }
        return fromYaml(text, yaml.toString(), overrides, workingDir);
    }

    /** Parses YAML text; {@code sourceName} is the file name errors report. */
    public static RunConfig fromYaml(String yamlText, String sourceName, List<String> overrides, Path workingDir) {
        Map<String, Raw> raw = new LinkedHashMap<>();
        Map<String, Origin> sectionOrigins = new LinkedHashMap<>();
        readDocument(yamlText, sourceName, raw, sectionOrigins);
        applyOverrides(overrides, raw);
        return resolve(raw, sectionOrigins, sourceName, workingDir);
    }

    /**
     * Builds a config from Java values (for tests and programmatic runs): keys are dotted ("model.n_head") or
     * section names mapping to maps of keys; values are numbers, booleans or strings, validated like file values.
     */
    public static RunConfig fromMap(Map<String, ?> values) {
        Map<String, Raw> raw = new LinkedHashMap<>();
        Map<String, Origin> seen = new LinkedHashMap<>();
        flattenMap("", values, raw, seen);
        return resolve(raw, Map.of(), MAP_SOURCE, workingDirectory());
    }

    /** Reloads the output of {@link #toYaml} (e.g. stored with a checkpoint). */
    public static RunConfig fromResolvedYaml(String yaml) {
        return fromYaml(yaml, RESOLVED_SOURCE, List.of(), workingDirectory());
    }

    /** The resolved config as YAML, every key in schema order: printed at start and stored with checkpoints. */
    public static String toYaml(RunConfig config) {
        StringBuilder sb = new StringBuilder("# dtrain resolved configuration: every key, defaults filled in, paths absolute\n");
        String section = null;
        for (Map.Entry<String, Object> kv : ConfigSchema.values(config).entrySet()) {
            Entry e = ConfigSchema.entry(kv.getKey());
            if (!e.section().equals(section)) {
                section = e.section();
                sb.append(section).append(":\n");
            }
            sb.append("  ").append(e.name()).append(": ").append(yamlScalar(kv.getValue())).append('\n');
        }
        return sb.toString();
    }

    /** The resolved config as nested maps (section -> key -> value), e.g. for JSON manifests. */
    public static Map<String, Object> toMap(RunConfig config) {
        Map<String, Object> out = new LinkedHashMap<>();
        for (Map.Entry<String, Object> kv : ConfigSchema.values(config).entrySet()) {
            Entry e = ConfigSchema.entry(kv.getKey());
            @SuppressWarnings("unchecked")
            Map<String, Object> section = (Map<String, Object>) out.computeIfAbsent(e.section(), s -> new LinkedHashMap<>());
            section.put(e.name(), kv.getValue());
        }
        return out;
    }

    // ---- reading YAML nodes -------------------------------------------------------------------------------------

    private static void readDocument(String text, String source, Map<String, Raw> raw, Map<String, Origin> sectionOrigins) {
        Optional<Node> root = compose(text, source, null, null);
        if (root.isEmpty() || isNullScalar(root.get())) {
            throw new ConfigException(source, -1, null, "the file is empty; expected sections "
                    + sectionNames() + " (see docs/config-reference.md)");
        }
        if (!(root.get() instanceof MappingNode mapping)) {
            throw new ConfigException(source, line(root.get()), null, "expected a mapping of sections ("
                    + sectionNames() + "), got " + describe(root.get()));
        }
        Map<String, Integer> seenAt = new LinkedHashMap<>();
        readMapping(mapping, "", source, raw, sectionOrigins, seenAt);
    }

    private static void readMapping(MappingNode node, String prefix, String source, Map<String, Raw> raw,
                                    Map<String, Origin> sectionOrigins, Map<String, Integer> seenAt) {
        for (NodeTuple tuple : node.getValue()) {
            Node keyNode = tuple.getKeyNode();
            int line = line(keyNode);
            if (!(keyNode instanceof ScalarNode keyScalar)) {
                throw new ConfigException(source, line, prefix.isEmpty() ? null : prefix,
                        "keys must be names, got " + describe(keyNode));
            }
            String path = prefix.isEmpty() ? keyScalar.getValue() : prefix + "." + keyScalar.getValue();
            Integer firstLine = seenAt.putIfAbsent(path, line);
            if (firstLine != null) {
                throw new ConfigException(source, line, path, "duplicate key (first given at line " + firstLine + "); keep one");
            }
            Node value = tuple.getValueNode();
            if (isSection(path)) {
                sectionOrigins.put(path, new Origin(source, line));
                if (value instanceof MappingNode m) {
                    readMapping(m, path, source, raw, sectionOrigins, seenAt);
                } else if (!isNullScalar(value)) {
                    throw new ConfigException(source, line, path, "expected a mapping of keys under " + path + " (e.g. "
                            + ConfigSchema.entries(path).get(0).key() + "), got " + describe(value));
                }
            } else if (ConfigSchema.entry(path) != null) {
                Entry e = ConfigSchema.entry(path);
                if (!(value instanceof ScalarNode scalar)) {
                    throw new ConfigException(source, line, path, "expected " + expected(e) + ", got " + describe(value));
                }
                raw.put(path, new Raw(scalar.getValue(), scalar.isPlain(), new Origin(source, line)));
            } else {
                throw new ConfigException(source, line, path, unknownKeyMessage(path, false));
            }
        }
    }

    private static void applyOverrides(List<String> overrides, Map<String, Raw> raw) {
        for (String override : overrides) {
            int eq = override.indexOf('=');
            if (eq <= 0) {
                throw new ConfigException(ConfigException.OVERRIDE, -1, override.isEmpty() ? "''" : override,
                        "expected key=value, e.g. --set model.n_head=8");
            }
            String key = override.substring(0, eq).trim();
            String valueText = override.substring(eq + 1);
            if (isSection(key)) {
                throw new ConfigException(ConfigException.OVERRIDE, -1, key, key + " is a section; set one of its keys, e.g. --set "
                        + ConfigSchema.entries(key).get(0).key() + "=...");
            }
            Entry e = ConfigSchema.entry(key);
            if (e == null) {
                throw new ConfigException(ConfigException.OVERRIDE, -1, key, unknownKeyMessage(key, true));
            }
            Origin origin = new Origin(ConfigException.OVERRIDE, -1);
            Optional<Node> node = compose(valueText, ConfigException.OVERRIDE + " " + key, ConfigException.OVERRIDE, key);
            if (node.isEmpty()) {
                raw.put(key, new Raw("", true, origin));
            } else if (node.get() instanceof ScalarNode scalar) {
                raw.put(key, new Raw(scalar.getValue(), scalar.isPlain(), origin));
            } else {
                throw new ConfigException(ConfigException.OVERRIDE, -1, key, "expected " + expected(e) + ", got " + describe(node.get()));
            }
        }
    }

    private static void flattenMap(String prefix, Map<String, ?> values, Map<String, Raw> raw, Map<String, Origin> seen) {
        Origin origin = new Origin(MAP_SOURCE, -1);
        for (Map.Entry<String, ?> kv : values.entrySet()) {
            String path = prefix.isEmpty() ? kv.getKey() : prefix + "." + kv.getKey();
            if (seen.put(path, origin) != null) {
                throw new ConfigException(MAP_SOURCE, -1, path, "duplicate key; keep one");
            }
            Object v = kv.getValue();
            if (isSection(path)) {
                if (!(v instanceof Map<?, ?> m)) {
                    throw new ConfigException(MAP_SOURCE, -1, path, "expected a map of keys under " + path);
                }
                @SuppressWarnings("unchecked")
                Map<String, ?> section = (Map<String, ?>) m;
                flattenMap(path, section, raw, seen);
            } else if (ConfigSchema.entry(path) != null) {
                raw.put(path, new Raw(v == null ? "" : String.valueOf(v), true, origin));
            } else {
                throw new ConfigException(MAP_SOURCE, -1, path, unknownKeyMessage(path, true));
            }
        }
    }

    // ---- typing, defaults, paths and the rules between keys ----------------------------------------------------

    private static RunConfig resolve(Map<String, Raw> raw, Map<String, Origin> sectionOrigins, String source, Path workingDir) {
        Map<String, Object> values = new LinkedHashMap<>();
        for (Entry e : ConfigSchema.entries()) {
            Raw r = raw.get(e.key());
            Object v = r == null ? e.defaultValue() : typed(e, r);
            if (e.type() == ConfigSchema.ValueType.PATH) {
                v = resolvePath((String) v, workingDir, e, r == null ? new Origin(source, -1) : r.origin());
            }
            values.put(e.key(), v);
        }
        Where where = new Where(raw, sectionOrigins, source);
        for (Entry e : ConfigSchema.entries()) {
            if (e.required() && ((String) values.get(e.key())).isEmpty()) {
                throw where.error(e.key() + " is required: " + e.doc(), e.key());
            }
        }
        RunConfig config = ConfigSchema.build(values);
        checkRules(config, where);
        return config;
    }

    /** Names the line of the first listed key given explicitly, else of its section, else just the file. */
    private record Where(Map<String, Raw> raw, Map<String, Origin> sectionOrigins, String source) {
        ConfigException error(String message, String... keys) {
            for (String key : keys) {
                Raw r = raw.get(key);
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

    private static void checkRules(RunConfig c, Where where) {
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
        if (t.globalBatch() % t.microBatch() != 0) {
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
    }

    private static Object typed(Entry e, Raw r) {
        switch (e.type()) {
            case INT, LONG -> {
                long v = parseInteger(e, r);
                if (e.type() == ConfigSchema.ValueType.INT && (v < Integer.MIN_VALUE || v > Integer.MAX_VALUE)) {
                    throw typeError(e, r, "must fit in a 32-bit integer, got " + r.text());
                }
                checkRange(e, r, v);
                return e.type() == ConfigSchema.ValueType.INT ? (Object) (int) v : (Object) v;
            }
            case DOUBLE -> {
                requirePlainValue(e, r);
                if (!NUMBER.matcher(r.text()).matches()) {
                    throw typeError(e, r, "expected a number, got '" + r.text() + "'");
                }
                double v = Double.parseDouble(r.text().replace("_", ""));
                checkRange(e, r, v);
                return v;
            }
            case BOOLEAN -> {
                requirePlainValue(e, r);
                if (r.text().equalsIgnoreCase("true") || r.text().equalsIgnoreCase("false")) {
                    return Boolean.parseBoolean(r.text());
                }
                throw typeError(e, r, "expected true or false, got '" + r.text() + "'");
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
                throw typeError(e, r, "expected " + choicesText(e.choices()) + ", got '" + v + "'");
            }
            case PATH -> {
                return r.isNull() ? "" : r.text().trim();
            }
            default -> throw new IllegalStateException(e.type().toString());
        }
    }

    private static long parseInteger(Entry e, Raw r) {
        requirePlainValue(e, r);
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
            throw typeError(e, r, "is too large: " + text);
        }
        throw typeError(e, r, "expected an integer, got '" + text + "'");
    }

    private static void requirePlainValue(Entry e, Raw r) {
        if (r.isNull()) {
            throw typeError(e, r, "expected " + expected(e) + ", got nothing (an empty value)");
        }
        if (!r.plain()) {
            throw typeError(e, r, "expected " + expected(e) + ", got the quoted string \"" + r.text() + "\" (remove the quotes)");
        }
    }

    private static void checkRange(Entry e, Raw r, double v) {
        if (!e.range().contains(v)) {
            throw typeError(e, r, "must be " + (e.range().min() != null && e.range().max() != null ? "in " : "")
                    + e.range().describe() + ", got " + r.text());
        }
    }

    private static ConfigException typeError(Entry e, Raw r, String message) {
        return new ConfigException(r.origin().file(), r.origin().line(), e.key(), message);
    }

    private static String resolvePath(String p, Path workingDir, Entry e, Origin origin) {
        if (p.isEmpty() || URI_SCHEME.matcher(p).matches()) {
            return p;
        }
        String expanded = p.equals("~") || p.startsWith("~/") ? System.getProperty("user.home") + p.substring(1) : p;
        try {
            return workingDir.resolve(expanded).toAbsolutePath().normalize().toString();
        } catch (InvalidPathException bad) {
            throw new ConfigException(origin.file(), origin.line(), e.key(), "is not a valid path: " + bad.getMessage());
        }
    }

    // ---- helpers ------------------------------------------------------------------------------------------------

    private static Optional<Node> compose(String text, String label, String errorFile, String errorKey) {
        try {
            return new Compose(LoadSettings.builder().setLabel(label).build()).composeString(text);
        } catch (MarkedYamlEngineException e) {
            Optional<Mark> mark = e.getProblemMark().isPresent() ? e.getProblemMark() : e.getContextMark();
            int line = errorFile == null ? mark.map(m -> m.getLine() + 1).orElse(-1) : -1;
            String problem = e.getProblem() != null ? e.getProblem() : e.getClass().getSimpleName();
            String context = e.getContext() != null ? " (" + e.getContext() + ")" : "";
            throw new ConfigException(errorFile == null ? label : errorFile, line, errorKey, "YAML syntax error: " + problem + context);
        } catch (YamlEngineException e) {
            throw new ConfigException(errorFile == null ? label : errorFile, -1, errorKey, "YAML error: " + e.getMessage());
        }
    }

    private static boolean isSection(String path) {
        String prefix = path + ".";
        return ConfigSchema.entries().stream().anyMatch(e -> e.key().startsWith(prefix));
    }

    private static boolean isNullScalar(Node node) {
        return node instanceof ScalarNode s && new Raw(s.getValue(), s.isPlain(), null).isNull();
    }

    private static int line(Node node) {
        return node.getStartMark().map(m -> m.getLine() + 1).orElse(-1);
    }

    private static String describe(Node node) {
        if (node instanceof MappingNode) {
            return "a mapping";
        }
        if (node instanceof SequenceNode) {
            return "a list";
        }
        return "'" + ((ScalarNode) node).getValue() + "'";
    }

    private static String expected(Entry e) {
        return switch (e.type()) {
            case INT, LONG -> "an integer";
            case DOUBLE -> "a number";
            case BOOLEAN -> "true or false";
            case STRING -> e.choices().isEmpty() ? "a string" : choicesText(e.choices());
            case PATH -> "a path";
        };
    }

    private static String choicesText(List<String> choices) {
        if (choices.size() == 2) {
            return choices.get(0) + " or " + choices.get(1);
        }
        return "one of " + String.join(", ", choices);
    }

    private static String sectionNames() {
        return String.join(", ", ConfigSchema.sections().stream().map(ConfigSchema.Section::name).toList());
    }

    /** "unknown key; did you mean n_head?" (a sibling), "... optimizer.lr?" (same name elsewhere) or the valid keys. */
    static String unknownKeyMessage(String path, boolean fullPaths) {
        int dot = path.lastIndexOf('.');
        String parent = dot < 0 ? "" : path.substring(0, dot);
        String name = path.substring(dot + 1);
        List<String> siblings = new ArrayList<>();
        if (parent.isEmpty()) {
            ConfigSchema.sections().forEach(s -> siblings.add(s.name()));
        } else if (isSection(parent)) {
            ConfigSchema.entries(parent).forEach(e -> siblings.add(e.name()));
        }
        String what = parent.isEmpty() ? "unknown section" : isSection(parent) ? "unknown key" : "unknown section " + parent;
        String best = closest(name, siblings);
        if (best != null) {
            String prefix = fullPaths && !parent.isEmpty() ? parent + "." : "";
            return what + "; did you mean " + prefix + best.replace(" or ", " or " + prefix) + "?";
        }
        List<String> elsewhere = new ArrayList<>();
        for (Entry e : ConfigSchema.entries()) {
            if (e.name().equals(name) || (name.length() >= 4 && editDistance(name, e.name()) <= 1)) {
                elsewhere.add(e.key());
            }
        }
        if (!elsewhere.isEmpty()) {
            return what + "; did you mean " + String.join(" or ", elsewhere) + "?";
        }
        if (parent.isEmpty() || !isSection(parent)) {
            return what + "; sections are " + sectionNames();
        }
        return what + "; keys under " + parent + " are " + String.join(", ", siblings);
    }

    /** The nearest candidates by edit distance ("beta1 or beta2" on a tie), one containing the name, or null. */
    private static String closest(String name, List<String> candidates) {
        String lower = name.toLowerCase(Locale.ROOT).replace('-', '_');
        int bestDistance = Integer.MAX_VALUE;
        List<String> best = new ArrayList<>();
        for (String c : candidates) {
            int d = editDistance(lower, c);
            if (d < bestDistance) {
                best.clear();
                bestDistance = d;
            }
            if (d == bestDistance) {
                best.add(c);
            }
        }
        if (!best.isEmpty() && bestDistance <= (lower.length() <= 4 ? 1 : 2)) {
            return String.join(" or ", best);
        }
        for (String c : candidates) {
            if (lower.length() >= 3 && (c.contains(lower) || lower.contains(c))) {
                return c;
            }
        }
        return null;
    }

    static int editDistance(String a, String b) {
        int[] previous = new int[b.length() + 1];
        int[] current = new int[b.length() + 1];
        for (int j = 0; j <= b.length(); j++) {
            previous[j] = j;
        }
        for (int i = 1; i <= a.length(); i++) {
            current[0] = i;
            for (int j = 1; j <= b.length(); j++) {
                int substitute = previous[j - 1] + (a.charAt(i - 1) == b.charAt(j - 1) ? 0 : 1);
                current[j] = Math.min(substitute, Math.min(previous[j] + 1, current[j - 1] + 1));
            }
            int[] t = previous;
            previous = current;
            current = t;
        }
        return previous[b.length()];
    }

    private static String yamlScalar(Object v) {
        if (v instanceof Double d) {
            return Double.toString(d).replace('E', 'e');
        }
        if (!(v instanceof String s)) {
            return String.valueOf(v);
        }
        String lower = s.toLowerCase(Locale.ROOT);
        boolean special = List.of("true", "false", "yes", "no", "on", "off", "null", "y", "n").contains(lower);
        if (PLAIN_SAFE.matcher(s).matches() && !special) {
            return s;
        }
        StringBuilder sb = new StringBuilder("\"");
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"' -> sb.append("\\\"");
                case '\\' -> sb.append("\\\\");
                case '\n' -> sb.append("\\n");
                case '\t' -> sb.append("\\t");
                default -> {
                    if (c < 0x20 || c == 0x7f) {
                        sb.append(String.format("\\u%04x", (int) c));
                    } else {
                        sb.append(c);
                    }
                }
            }
        }
        return sb.append('"').toString();
    }

    private static Path workingDirectory() {
        return Path.of(System.getProperty("user.dir")).toAbsolutePath();
    }
}
