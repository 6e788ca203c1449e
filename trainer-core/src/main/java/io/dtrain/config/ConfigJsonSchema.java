package io.dtrain.config;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.dtrain.common.AtomicFiles;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;

/**
 * Generates docs/config.schema.json, a JSON Schema (draft-07) of the run configuration files, from the same
 * {@link ConfigSchema} table as docs/config-reference.md, so editors complete and check keys (VS Code's YAML
 * extension: {@code # yaml-language-server: $schema=../docs/config.schema.json} at the top of a file, or a
 * {@code yaml.schemas} setting). ConfigJsonSchemaTest fails when the checked-in file differs.
 *
 * <p>Each section and key group is an object that allows only its keys. Integers are integers or strings such as
 * {@code 300_000_000} (the loader reads both; YAML reads digits with underscores as a string), numbers likewise;
 * choices are enums, ranges minimum/maximum. Deprecated keys are listed with {@code deprecated: true} and VS Code's
 * {@code deprecationMessage}. What the schema cannot say (rules between keys) the loader still checks.
 */
public final class ConfigJsonSchema {
    static final String DRAFT = "http://json-schema.org/draft-07/schema#";
    private static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
    private static final String INTEGER_TEXT = "^[-+]?[0-9][0-9_]*$";
    private static final String NUMBER_TEXT = "^[-+]?(\\.[0-9]+|[0-9][0-9_]*(\\.[0-9_]*)?)([eE][-+]?[0-9]+)?$";

    private ConfigJsonSchema() {
    }

    public static ObjectNode schema() {
        ObjectNode root = JSON.createObjectNode();
        root.put("$schema", DRAFT);
        root.put("title", "dtrain run configuration");
        root.put("description", "One YAML file per run (docs/config-reference.md). Generated from"
                + " io.dtrain.config.ConfigSchema by io.dtrain.config.ConfigJsonSchema; do not edit.");
        root.put("type", "object");
        root.put("additionalProperties", false);
        ObjectNode sections = root.putObject("properties");
        for (ConfigSchema.Section s : ConfigSchema.sections()) {
            ObjectNode section = object(sections, s.name());
            section.put("description", s.doc());
            for (ConfigSchema.Entry e : ConfigSchema.entries(s.name())) {
                place(section, e.name()).setAll(property(e));
            }
        }
        for (ConfigSchema.DeprecatedKey d : ConfigSchema.deprecatedKeys()) {
            ObjectNode section = (ObjectNode) sections.get(d.key().substring(0, d.key().indexOf('.')));
            ObjectNode p = place(section, d.key().substring(d.key().indexOf('.') + 1));
            p.setAll(property(ConfigSchema.entry(d.replacement())));
            p.remove("default");
            String message = "deprecated: use " + d.replacement() + (d.multiplier().isEmpty() ? ""
                    : " (this value x " + d.multiplier() + ")") + "; " + d.reason();
            p.put("description", message);
            p.put("deprecated", true);
            p.put("deprecationMessage", message);
        }
        return root;
    }

    public static String json() {
        try {
            return JSON.writeValueAsString(schema()) + "\n";
        } catch (JsonProcessingException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Writes the schema to {@code args[0]} (default docs/config.schema.json). */
    public static void main(String[] args) throws IOException {
        Path target = Path.of(args.length > 0 ? args[0] : "docs/config.schema.json").toAbsolutePath();
        write(target);
        System.out.println("wrote " + target);
    }

    static void write(Path target) throws IOException {
        AtomicFiles.writeString(target, json());
    }

    /** The property object of a dotted name inside a section ("pipeline.stages"), creating the groups on the way. */
    private static ObjectNode place(ObjectNode section, String name) {
        ObjectNode at = section;
        String[] parts = name.split("\\.");
        for (int i = 0; i < parts.length - 1; i++) {
            at = object((ObjectNode) at.withObject("properties"), parts[i]);
        }
        return at.withObject("properties").putObject(parts[parts.length - 1]);
    }

    private static ObjectNode object(ObjectNode properties, String name) {
        if (properties.has(name)) {
            return (ObjectNode) properties.get(name);
        }
        ObjectNode o = properties.putObject(name);
        o.put("type", "object");
        o.put("additionalProperties", false);
        return o;
    }

    private static ObjectNode property(ConfigSchema.Entry e) {
        ObjectNode p = JSON.createObjectNode();
        p.put("description", e.doc());
        switch (e.type()) {
            case INT, LONG -> numeric(p, "integer", INTEGER_TEXT, e.range());
            case DOUBLE -> numeric(p, "number", NUMBER_TEXT, e.range());
            case BOOLEAN -> p.put("type", "boolean");
            case STRING, PATH -> {
                p.put("type", "string");
                if (!e.choices().isEmpty()) {
                    ArrayNode values = p.putArray("enum");
                    e.choices().forEach(values::add);
                }
                if (e.required()) {
                    p.put("minLength", 1);
                }
            }
        }
        Object d = e.defaultValue();
        if (d instanceof Integer i) {
            p.put("default", i);
        } else if (d instanceof Long l) {
            p.put("default", l);
        } else if (d instanceof Double x) {
            p.put("default", x);
        } else if (d instanceof Boolean b) {
            p.put("default", b);
        } else if (d instanceof String s && !(e.required() && s.isEmpty())) {
            p.put("default", s);
        }
        return p;
    }

    /** A number of the type, or a string of that form (underscores); the range applies to the number. */
    private static void numeric(ObjectNode p, String type, String textPattern, ConfigSchema.Range r) {
        p.putArray("type").add(type).add("string");
        p.put("pattern", textPattern);
        if (r.min() != null) {
            p.put(r.minInclusive() ? "minimum" : "exclusiveMinimum", r.min());
        }
        if (r.max() != null) {
            p.put(r.maxInclusive() ? "maximum" : "exclusiveMaximum", r.max());
        }
    }
}
