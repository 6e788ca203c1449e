package io.dtrain.config;

import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ConfigReferenceTest {

    private static final Path REFERENCE = ShippedConfigsTest.repoRoot().resolve("docs/config-reference.md");

    /** Regenerate with: mvn -o -pl trainer-core test -Dtest=ConfigReferenceTest -Ddtrain.regenerate.docs=true */
    @Test
    void checkedInReferenceMatchesTheSchema() throws IOException {
        if (Boolean.getBoolean("dtrain.regenerate.docs")) {
            ConfigReference.write(REFERENCE);
        }
        assertTrue(Files.exists(REFERENCE), REFERENCE + " is missing");
        assertEquals(ConfigReference.markdown(), Files.readString(REFERENCE),
                "docs/config-reference.md is out of date with ConfigSchema; regenerate it: mvn -o -pl trainer-core test"
                        + " -Dtest=ConfigReferenceTest -Ddtrain.regenerate.docs=true");
    }

    @Test
    void referenceListsEveryKey() {
        String md = ConfigReference.markdown();
        for (ConfigSchema.Entry e : ConfigSchema.entries()) {
            assertTrue(md.contains("| `" + e.key() + "` |"), e.key());
        }
        assertTrue(md.contains("| `model.norm` | string | `pre` | pre \\| post |"), md);
        assertTrue(md.contains("| `model.dropout` | number | `0.0` | [0, 1) |"), md);
        for (ConfigSchema.DeprecatedKey d : ConfigSchema.deprecatedKeys()) {
            assertTrue(md.contains("| `" + d.key() + "` | `" + d.replacement() + "` |"), d.key());
            assertTrue(!md.contains("| `" + d.key() + "` | integer"), d.key() + " is not in the tables of current keys");
        }
    }

    @Test
    void schemaDefaultsAreValidValues() {
        // Every default, written as YAML and read back through the validating path, is accepted unchanged.
        RunConfig d = ConfigLoader.fromMap(java.util.Map.of("data.train", "/abs/corpus", "training.steps", 1));
        RunConfig defaults = ConfigSchema.defaults();
        assertEquals(defaults.model(), d.model());
        assertEquals(defaults.optimizer(), d.optimizer());
        assertEquals(defaults.schedule(), d.schedule());
        assertEquals(ModelConfig.defaults(), defaults.model());
        assertEquals(List.of("model", "optimizer", "schedule", "data", "training", "output", "metrics", "parallel"),
                ConfigSchema.sections().stream().map(ConfigSchema.Section::name).toList());
        assertEquals("d_model", ConfigSchema.snakeCase("dModel"));
        assertEquals("decay_biases_and_norms", ConfigSchema.snakeCase("decayBiasesAndNorms"));
    }
}
