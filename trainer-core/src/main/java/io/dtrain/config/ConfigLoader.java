package io.dtrain.config;

import io.dtrain.config.ConfigSchema.DeprecatedKey;
import io.dtrain.config.ConfigSchema.Entry;
import io.dtrain.config.RawValue.Origin;

import java.io.IOException;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.InvalidPathException;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;
import java.util.regex.Pattern;

/**
 * Loads a run configuration: one YAML file plus {@code --set a.b.c=value} overrides, validated against
 * {@link ConfigSchema}. Every error is a {@link ConfigException} naming file, line and dotted key. Relative paths
 * (data.train, data.val, data.tokenizer_dir, output.dir) resolve against the working directory and are stored
 * absolute, so the resolved config ({@link #toYaml}) reloads identically from a checkpoint on the same machine.
 *
 * <p>The work is split by seam: {@link ConfigYaml} reads and writes YAML, {@link ConfigRules} types each value and
 * checks the rules between keys, {@link KeySuggestions} words the "did you mean" of unknown keys; this class collects
 * the values as given, fills in defaults, converts deprecated keys ({@link ConfigSchema#deprecatedKeys}, one warning
 * line each) and resolves paths.
 */
public final class ConfigLoader {

    /** The "file" named by errors in {@link #fromResolvedYaml}. */
    public static final String RESOLVED_SOURCE = "<resolved config>";
    /** The "file" named by errors in {@link #fromMap}. */
    public static final String MAP_SOURCE = "<map>";
    /** Where deprecation lines go unless a caller passes its own sink: standard error. */
    public static final Consumer<String> WARN_TO_STDERR = System.err::println;

    /**
     * Checks the paths a run reads (every path key but output.dir, once resolved and non-empty) before anything
     * uses them, so that a missing input is a {@link ConfigException} naming the file, line and key.
     */
    @FunctionalInterface
    public interface InputCheck {
        /** Null when {@code path} (the resolved value of {@code key}) is usable, else what is wrong and what to do. */
        String problem(String key, String path);

        /** Checks nothing: configurations that are only read (a checkpoint's, a report's). */
        InputCheck NONE = (key, path) -> null;
    }

    private static final Pattern URI_SCHEME = Pattern.compile("[A-Za-z][A-Za-z0-9+.-]*://.*");

    private ConfigLoader() {
    }

    /** Loads {@code yaml} (relative to the working directory) and applies {@code overrides} ("a.b.c=value"). */
    public static RunConfig load(Path yaml, List<String> overrides) {
        return load(yaml, overrides, workingDirectory());
    }

    /** As {@link #load(Path, List)} with relative paths (the config file's and those inside it) resolved against {@code workingDir}. */
    public static RunConfig load(Path yaml, List<String> overrides, Path workingDir) {
        return load(yaml, overrides, workingDir, WARN_TO_STDERR);
    }

    /** As {@link #load(Path, List, Path)}, with deprecation lines ("warning: file:line: key: ...") given to {@code warnings}. */
    public static RunConfig load(Path yaml, List<String> overrides, Path workingDir, Consumer<String> warnings) {
        return load(yaml, overrides, workingDir, warnings, InputCheck.NONE);
    }

    /** As {@link #load(Path, List, Path, Consumer)}, with the input paths checked by {@code inputs}. */
    public static RunConfig load(Path yaml, List<String> overrides, Path workingDir, Consumer<String> warnings,
                                 InputCheck inputs) {
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
        return fromYaml(text, yaml.toString(), overrides, workingDir, warnings, inputs);
    }

    /** Parses YAML text; {@code sourceName} is the file name errors report. */
    public static RunConfig fromYaml(String yamlText, String sourceName, List<String> overrides, Path workingDir) {
        return fromYaml(yamlText, sourceName, overrides, workingDir, WARN_TO_STDERR);
    }

    /** As {@link #fromYaml(String, String, List, Path)}, with deprecation lines given to {@code warnings}. */
    public static RunConfig fromYaml(String yamlText, String sourceName, List<String> overrides, Path workingDir,
                                     Consumer<String> warnings) {
        return fromYaml(yamlText, sourceName, overrides, workingDir, warnings, InputCheck.NONE);
    }

    /** As {@link #fromYaml(String, String, List, Path, Consumer)}, with the input paths checked by {@code inputs}. */
    public static RunConfig fromYaml(String yamlText, String sourceName, List<String> overrides, Path workingDir,
                                     Consumer<String> warnings, InputCheck inputs) {
        Map<String, RawValue> raw = new LinkedHashMap<>();
        Map<String, Origin> sectionOrigins = new LinkedHashMap<>();
        ConfigYaml.read(yamlText, sourceName, raw, sectionOrigins);
        applyOverrides(overrides, raw);
        return resolve(raw, sectionOrigins, sourceName, workingDir, warnings, inputs);
    }

    /**
     * Builds a config from Java values (for tests and programmatic runs): keys are dotted ("model.n_head") or
     * section names mapping to maps of keys; values are numbers, booleans or strings, validated like file values.
     */
    public static RunConfig fromMap(Map<String, ?> values) {
        Map<String, RawValue> raw = new LinkedHashMap<>();
        flattenMap("", values, raw, new LinkedHashMap<>());
        return resolve(raw, Map.of(), MAP_SOURCE, workingDirectory(), WARN_TO_STDERR, InputCheck.NONE);
    }

    /** Reloads the output of {@link #toYaml} (e.g. stored with a checkpoint). */
    public static RunConfig fromResolvedYaml(String yaml) {
        return fromYaml(yaml, RESOLVED_SOURCE, List.of(), workingDirectory());
    }

    /** The resolved config as YAML, every key in schema order: printed at start and stored with checkpoints. */
    public static String toYaml(RunConfig config) {
        return ConfigYaml.write(config);
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

    // ---- values as given: --set and maps (files: ConfigYaml) ----------------------------------------------------

    private static void applyOverrides(List<String> overrides, Map<String, RawValue> raw) {
        for (String override : overrides) {
            int eq = override.indexOf('=');
            if (eq <= 0) {
                throw new ConfigException(ConfigException.OVERRIDE, -1, override.isEmpty() ? "''" : override,
                        "expected key=value, e.g. --set model.n_head=8");
            }
            String key = override.substring(0, eq).trim();
            if (ConfigSchema.holdsKeys(key)) {
                throw new ConfigException(ConfigException.OVERRIDE, -1, key, key + " is a section; set one of its keys, e.g. --set "
                        + ConfigSchema.entries(key).get(0).key() + "=...");
            }
            Entry e = ConfigSchema.entryOrReplacement(key);
            if (e == null) {
                throw new ConfigException(ConfigException.OVERRIDE, -1, key, KeySuggestions.unknownKeyMessage(key));
            }
            raw.put(key, ConfigYaml.overrideValue(key, override.substring(eq + 1), e));
        }
    }

    private static void flattenMap(String prefix, Map<String, ?> values, Map<String, RawValue> raw, Map<String, Origin> seen) {
        Origin origin = new Origin(MAP_SOURCE, -1);
        for (Map.Entry<String, ?> kv : values.entrySet()) {
            String path = prefix.isEmpty() ? kv.getKey() : prefix + "." + kv.getKey();
            if (seen.put(path, origin) != null) {
                throw new ConfigException(MAP_SOURCE, -1, path, "duplicate key; keep one");
            }
            Object v = kv.getValue();
            if (ConfigSchema.holdsKeys(path)) {
                if (!(v instanceof Map<?, ?> m)) {
                    throw new ConfigException(MAP_SOURCE, -1, path, "expected a map of keys under " + path);
                }
                @SuppressWarnings("unchecked")
                Map<String, ?> section = (Map<String, ?>) m;
                flattenMap(path, section, raw, seen);
            } else if (ConfigSchema.entryOrReplacement(path) != null) {
                raw.put(path, new RawValue(v == null ? "" : String.valueOf(v), true, origin));
            } else {
                throw new ConfigException(MAP_SOURCE, -1, path, KeySuggestions.unknownKeyMessage(path));
            }
        }
    }

    // ---- typing, defaults, deprecated keys, paths, then the rules between keys ----------------------------------

    private static RunConfig resolve(Map<String, RawValue> raw, Map<String, Origin> sectionOrigins, String source,
                                     Path workingDir, Consumer<String> warnings, InputCheck inputs) {
        Map<String, Object> values = new LinkedHashMap<>();
        for (Entry e : ConfigSchema.entries()) {
            RawValue r = raw.get(e.key());
            values.put(e.key(), r == null ? e.defaultValue() : ConfigRules.typed(e, e.key(), r));
        }
        for (DeprecatedKey d : ConfigSchema.deprecatedKeys()) {
            RawValue old = raw.get(d.key());
            if (old != null) {
                values.put(d.replacement(), convert(d, old, raw, values, warnings));
                // From here on, errors about the replacement name the line where its value was given.
                raw.put(d.replacement(), old);
            }
        }
        for (Entry e : ConfigSchema.entries()) {
            if (e.type() == ConfigSchema.ValueType.PATH) {
                RawValue r = raw.get(e.key());
                values.put(e.key(), resolvePath((String) values.get(e.key()), workingDir, e,
                        r == null ? new Origin(source, -1) : r.origin()));
            }
        }
        ConfigRules.Where where = new ConfigRules.Where(raw, sectionOrigins, source);
        for (Entry e : ConfigSchema.entries()) {
            if (e.required() && ((String) values.get(e.key())).isEmpty()) {
                throw where.error(e.key() + " is required: " + e.doc(), e.key());
            }
        }
        RunConfig config = ConfigSchema.build(values);
        ConfigRules.checkBetweenKeys(config, where);
        for (Entry e : ConfigSchema.entries()) {
            if (e.type() == ConfigSchema.ValueType.PATH && !e.key().equals("output.dir")
                    && !((String) values.get(e.key())).isEmpty()) {
                String problem = inputs.problem(e.key(), (String) values.get(e.key()));
                if (problem != null) {
                    throw where.error(problem, e.key());
                }
            }
        }
        return config;
    }

    /** The replacement's value of a deprecated key given as {@code old}; one warning line says how it was read. */
    private static Object convert(DeprecatedKey d, RawValue old, Map<String, RawValue> raw, Map<String, Object> values,
                                  Consumer<String> warnings) {
        Origin at = old.origin();
        RawValue replacementGiven = raw.get(d.replacement());
        if (replacementGiven != null) {
            Origin other = replacementGiven.origin();
            throw new ConfigException(at.file(), at.line(), d.key(), "deprecated and replaced by " + d.replacement()
                    + ", which is given too (" + (other.line() > 0 ? "line " + other.line() : other.file())
                    + "); keep only " + d.replacement());
        }
        Entry replacement = ConfigSchema.entry(d.replacement());
        Object value = ConfigRules.typed(replacement, d.key(), old);
        String how = "";
        if (!d.multiplier().isEmpty()) {
            long factor = ((Number) values.get(d.multiplier())).longValue();
            if (factor == 0) {
                throw new ConfigException(at.file(), at.line(), d.key(), "deprecated (" + d.reason() + "); it converts to "
                        + d.replacement() + " as " + d.key() + " x " + d.multiplier() + ", but " + d.multiplier()
                        + " is 0 (auto, known only at run time): set " + d.replacement() + " instead");
            }
            long product = ((Number) value).longValue() * factor;
            if (replacement.type() == ConfigSchema.ValueType.INT && product > Integer.MAX_VALUE) {
                throw new ConfigException(at.file(), at.line(), d.key(), "deprecated; converted to " + d.replacement()
                        + " (x " + d.multiplier() + " " + factor + ") it is too large: " + product);
            }
            how = " = " + value + " x " + d.multiplier() + " " + factor;
            value = replacement.type() == ConfigSchema.ValueType.INT ? (Object) (int) product : (Object) product;
        }
        warnings.accept("warning: " + ConfigException.format(at.file(), at.line(), d.key(), "deprecated, use "
                + d.replacement() + " (read as " + d.replacement() + ": " + value + how + ")"));
        return value;
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

    private static Path workingDirectory() {
        return Path.of(System.getProperty("user.dir")).toAbsolutePath();
    }
}
