package io.dtrain.config;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.networknt.schema.Error;
import com.networknt.schema.Schema;
import com.networknt.schema.SchemaRegistry;
import com.networknt.schema.SpecificationVersion;
import org.junit.jupiter.api.Test;
import org.snakeyaml.engine.v2.api.Load;
import org.snakeyaml.engine.v2.api.LoadSettings;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * docs/config.schema.json is generated from ConfigSchema and current; a JSON Schema validator (networknt's, as
 * editors would apply it) accepts every shipped config and refuses unknown keys, bad choices and out-of-range values.
 */
class ConfigJsonSchemaTest {
    private static final Path SCHEMA = ShippedConfigsTest.repoRoot().resolve("docs/config.schema.json");
    private static final ObjectMapper JSON = new ObjectMapper();

    /** Regenerate with: mvn -o -pl trainer-core test -Dtest=ConfigJsonSchemaTest -Ddtrain.regenerate.docs=true */
    @Test
    void checkedInSchemaMatchesTheSchemaTable() throws IOException {
        if (Boolean.getBoolean("dtrain.regenerate.docs")) {
            ConfigJsonSchema.write(SCHEMA);
        }
        assertTrue(Files.exists(SCHEMA), SCHEMA + " is missing");
        assertEquals(ConfigJsonSchema.json(), Files.readString(SCHEMA),
                "docs/config.schema.json is out of date with ConfigSchema; regenerate it: mvn -o -pl trainer-core test"
                        + " -Dtest=ConfigJsonSchemaTest,ConfigReferenceTest -Ddtrain.regenerate.docs=true");
    }

    @Test
    void everyKeyOfTheTableIsInTheSchema() {
        JsonNode schema = ConfigJsonSchema.schema();
        for (ConfigSchema.Entry e : ConfigSchema.entries()) {
            JsonNode at = schema;
            for (String part : e.key().split("\\.")) {
                at = at.path("properties").path(part);
            }
            assertEquals(e.doc(), at.path("description").asText(), e.key());
        }
        assertEquals("[\"pre\",\"post\"]", schema.at("/properties/model/properties/norm/enum").toString());
        assertEquals(1.0, schema.at("/properties/parallel/properties/pipeline/properties/stages/minimum").asDouble());
        assertTrue(schema.at("/properties/training/properties/eval_batches/deprecated").asBoolean());
    }

    private static Schema validator() throws IOException {
        return SchemaRegistry.withDefaultDialect(SpecificationVersion.DRAFT_7)
                .getSchema(ConfigJsonSchema.schema());
    }

    private static JsonNode yaml(String text) {
        return JSON.valueToTree(new Load(LoadSettings.builder().build()).loadFromString(text));
    }

    @Test
    void everyShippedConfigIsValid() throws IOException {
        Schema schema = validator();
        List<Path> configs;
        try (Stream<Path> s = Files.list(ShippedConfigsTest.repoRoot().resolve("configs"))) {
            configs = s.filter(p -> p.toString().endsWith(".yaml")).sorted().toList();
        }
        assertTrue(configs.size() >= 5, configs.toString());
        for (Path c : configs) {
            List<Error> errors = schema.validate(yaml(Files.readString(c)));
            assertEquals(List.of(), errors, c.toString());
        }
    }

    @Test
    void unknownKeysBadChoicesAndOutOfRangeValuesAreFlagged() throws IOException {
        Schema schema = validator();
        assertEquals(List.of(), schema.validate(yaml("model:\n  n_head: 4\ntraining:\n  tokens: 300_000_000\n  steps: 3e2\n")));
        assertFlags(schema, "model:\n  n_heads: 4\n", "n_heads");
        assertFlags(schema, "model:\n  norm: middle\n", "norm");
        assertFlags(schema, "model:\n  dropout: 1.0\n", "dropout");
        assertFlags(schema, "model:\n  n_layer: two\n", "n_layer");
        assertFlags(schema, "parallel:\n  pipeline:\n    stages: 0\n", "stages");
        assertFlags(schema, "metrics:\n  prometheus_port: 70000\n", "prometheus_port");
        assertFlags(schema, "optimiser:\n  lr: 1\n", "optimiser");
    }

    private static void assertFlags(Schema schema, String yamlText, String key) {
        List<Error> errors = schema.validate(yaml(yamlText));
        assertTrue(!errors.isEmpty(), "no error for: " + yamlText);
        assertTrue(errors.stream().anyMatch(e -> e.toString().contains(key)), key + " not named in " + errors);
    }
}
