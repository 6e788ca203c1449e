package io.dtrain.config;

import io.dtrain.config.ConfigSchema.Entry;
import io.dtrain.config.RawValue.Origin;
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

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.regex.Pattern;

/**
 * The YAML side of a configuration: reading a file's nodes into raw values by dotted key (with the line of each)
 * and writing the resolved configuration back, every key in schema order. Reading works on the node tree, not on
 * Java objects, so that scalars keep their text, their quoting and their line.
 */
final class ConfigYaml {
    private static final Pattern PLAIN_SAFE = Pattern.compile("[A-Za-z/_][A-Za-z0-9_./+-]*");

    private ConfigYaml() {
    }

    /** Reads a file's text into {@code raw} (dotted key -> value) and {@code sectionOrigins} (section -> its line). */
    static void read(String text, String source, Map<String, RawValue> raw, Map<String, Origin> sectionOrigins) {
        Optional<Node> root = compose(text, source, null, null);
        if (root.isEmpty() || isNullScalar(root.get())) {
            throw new ConfigException(source, -1, null, "the file is empty; expected sections "
                    + KeySuggestions.sectionNames() + " (see docs/config-reference.md)");
        }
        if (!(root.get() instanceof MappingNode mapping)) {
            throw new ConfigException(source, line(root.get()), null, "expected a mapping of sections ("
                    + KeySuggestions.sectionNames() + "), got " + describe(root.get()));
        }
        readMapping(mapping, "", source, raw, sectionOrigins, new LinkedHashMap<>());
    }

    private static void readMapping(MappingNode node, String prefix, String source, Map<String, RawValue> raw,
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
            Entry e = ConfigSchema.entryOrReplacement(path);
            if (ConfigSchema.holdsKeys(path)) {
                sectionOrigins.put(path, new Origin(source, line));
                if (value instanceof MappingNode m) {
                    readMapping(m, path, source, raw, sectionOrigins, seenAt);
                } else if (!isNullScalar(value)) {
                    throw new ConfigException(source, line, path, "expected a mapping of keys under " + path + " (e.g. "
                            + ConfigSchema.entries(path).get(0).key() + "), got " + describe(value));
                }
            } else if (e != null) {
                if (!(value instanceof ScalarNode scalar)) {
                    throw new ConfigException(source, line, path, "expected " + ConfigRules.expected(e) + ", got " + describe(value));
                }
                raw.put(path, new RawValue(scalar.getValue(), scalar.isPlain(), new Origin(source, line)));
            } else {
                throw new ConfigException(source, line, path, KeySuggestions.unknownKeyMessage(path));
            }
        }
    }

    /** The value of {@code --set key=valueText}, read as a YAML scalar (quotes and all) typed by {@code e}. */
    static RawValue overrideValue(String key, String valueText, Entry e) {
        Origin origin = new Origin(ConfigException.OVERRIDE, -1);
        Optional<Node> node = compose(valueText, ConfigException.OVERRIDE + " " + key, ConfigException.OVERRIDE, key);
        if (node.isEmpty()) {
            return new RawValue("", true, origin);
        }
        if (node.get() instanceof ScalarNode scalar) {
            return new RawValue(scalar.getValue(), scalar.isPlain(), origin);
        }
        throw new ConfigException(ConfigException.OVERRIDE, -1, key, "expected " + ConfigRules.expected(e) + ", got " + describe(node.get()));
    }

    /** The resolved config as YAML, every key in schema order under its section. */
    static String write(RunConfig config) {
        StringBuilder sb = new StringBuilder("# dtrain resolved configuration: every key, defaults filled in, paths absolute\n");
        String section = null;
        for (Map.Entry<String, Object> kv : ConfigSchema.values(config).entrySet()) {
            Entry e = ConfigSchema.entry(kv.getKey());
            if (!e.section().equals(section)) {
                section = e.section();
                sb.append(section).append(":\n");
            }
            sb.append("  ").append(e.name()).append(": ").append(scalar(kv.getValue())).append('\n');
        }
        return sb.toString();
    }

    private static Optional<Node> compose(String text, String label, String errorFile, String errorKey) {
        try {
            return new Compose(LoadSettings.builder().setLabel(label).build()).composeString(text);
        } catch (MarkedYamlEngineException e) {
            throw syntaxError(e, errorFile == null ? label : errorFile, errorFile == null, errorKey);
        } catch (YamlEngineException e) {
            throw new ConfigException(errorFile == null ? label : errorFile, -1, errorKey, "YAML error: " + e.getMessage());
        }
    }

    /**
     * A syntax error located where the construct it is about opened (the quote, the '[' or '{', the key), which is
     * where the mistake usually is, with where the parser noticed it: an unclosed quote is only noticed at the end
     * of the file. {@code withLines} false (a --set value): no line numbers, the value is one line.
     */
    private static ConfigException syntaxError(MarkedYamlEngineException e, String file, boolean withLines, String key) {
        Optional<Mark> opened = e.getContextMark();
        Optional<Mark> noticed = e.getProblemMark();
        String problem = e.getProblem() != null ? e.getProblem() : e.getClass().getSimpleName();
        if (!withLines) {
            return new ConfigException(file, -1, key, "YAML syntax error: " + problem
                    + (e.getContext() != null ? " (" + e.getContext() + ")" : ""));
        }
        if (opened.isEmpty() || e.getContext() == null) {
            return new ConfigException(file, noticed.map(m -> m.getLine() + 1).orElse(-1), key,
                    "YAML syntax error: " + problem);
        }
        Mark start = opened.get();
        String where = noticed.map(m -> m.getLine() == start.getLine()
                ? " at column " + (m.getColumn() + 1)
                : " at line " + (m.getLine() + 1)).orElse("");
        return new ConfigException(file, start.getLine() + 1, key, "YAML syntax error: " + e.getContext().strip()
                + " that starts here (column " + (start.getColumn() + 1) + "): " + problem + where + "; " + fixFor(e.getContext()));
    }

    /** What usually fixes an unterminated construct. */
    private static String fixFor(String context) {
        if (context.contains("quoted scalar")) {
            return "close the quote on this line";
        }
        if (context.contains("flow sequence")) {
            return "close the '[' with ']' (items separated by ', ')";
        }
        if (context.contains("flow mapping")) {
            return "close the '{' with '}' (entries separated by ', ')";
        }
        return "check the quotes, brackets and indentation from this line on";
    }

    private static boolean isNullScalar(Node node) {
        return node instanceof ScalarNode s && new RawValue(s.getValue(), s.isPlain(), null).isNull();
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

    /** A value as a YAML scalar that reads back as the same value: plain when safe, else double-quoted. */
    private static String scalar(Object v) {
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
}
