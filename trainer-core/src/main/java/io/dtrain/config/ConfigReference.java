package io.dtrain.config;

import io.dtrain.common.AtomicFiles;

import java.io.IOException;
import java.nio.file.Path;
import java.util.List;

/**
 * Generates docs/config-reference.md from {@link ConfigSchema}, so the reference cannot drift from the code
 * (ConfigReferenceTest fails when the checked-in file differs).
 * Run: {@code java -cp <trainer-core classes + deps> io.dtrain.config.ConfigReference docs/config-reference.md}.
 */
public final class ConfigReference {

    private ConfigReference() {
    }

    /** The message the loader gives for this file text and these overrides: the reference quotes real errors. */
    static String exampleError(String yaml, List<String> overrides) {
        try {
            ConfigLoader.fromYaml(yaml, "run.yaml", overrides, Path.of("/"), line -> { });
        } catch (ConfigException e) {
            return e.getMessage();
        }
        throw new IllegalStateException("the example config is valid: " + yaml + " " + overrides);
    }

    public static String markdown() {
        StringBuilder sb = new StringBuilder();
        sb.append("# Configuration reference\n\n");
        sb.append("<!-- Generated from io.dtrain.config.ConfigSchema by io.dtrain.config.ConfigReference; do not edit. -->\n\n");
        sb.append("A run is one YAML file plus `--set a.b.c=value` overrides (applied after the file, in order; values are\n")
                .append("YAML scalars, validated like the file's). Keys are snake_case and addressed by their dotted path.\n")
                .append("Keys left out take the default below. Relative paths resolve against the working directory and are\n")
                .append("stored absolute; URIs such as `hdfs://...` are kept as written. Integers may be written `300_000_000` or\n")
                .append("`3e8`. Errors name the file, line and key, e.g. (from a file `run.yaml` and from `--set`)\n")
                .append('`').append(exampleError("data:\n  train: corpus\nmodel:\n  n_head: four\n", List.of()))
                .append("`,\n`").append(exampleError("data:\n  train: corpus\nmodel:\n  n_heads: 4\n", List.of()))
                .append("` or\n`").append(exampleError("data:\n  train: corpus\n", List.of("model.n_heads=4")))
                .append("`.\n\n");
        sb.append("The resolved configuration (every key) is printed at start and stored with each checkpoint.\n\n");
        sb.append("Editor support: [config.schema.json](config.schema.json) is a JSON Schema of these files, generated from\n")
                .append("the same table. With VS Code's YAML extension, put\n")
                .append("`# yaml-language-server: $schema=../docs/config.schema.json` on the first line of a config (or map\n")
                .append("`docs/config.schema.json` to `configs/*.yaml` under `yaml.schemas` in the settings) to get key\n")
                .append("completion, descriptions and checks of types, choices and ranges while editing.\n\n");
        sb.append("Sections: ");
        for (int i = 0; i < ConfigSchema.sections().size(); i++) {
            ConfigSchema.Section s = ConfigSchema.sections().get(i);
            sb.append(i == 0 ? "" : ", ").append('[').append(s.name()).append("](#").append(s.name()).append(')');
        }
        sb.append(".\n");
        for (ConfigSchema.Section s : ConfigSchema.sections()) {
            sb.append("\n## ").append(s.name()).append("\n\n").append(capitalize(s.doc())).append(".\n\n");
            sb.append("| key | type | default | allowed | description |\n");
            sb.append("|---|---|---|---|---|\n");
            for (ConfigSchema.Entry e : ConfigSchema.entries(s.name())) {
                sb.append("| `").append(e.key()).append("` | ").append(e.type().description()).append(" | ")
                        .append(defaultText(e)).append(" | ").append(cell(e.describeAllowed())).append(" | ")
                        .append(cell(e.doc())).append(" |\n");
            }
        }
        sb.append("\n## Rules between keys\n\nChecked when the configuration is loaded:\n\n");
        for (String rule : ConfigSchema.RULES) {
            sb.append("- ").append(rule).append('\n');
        }
        sb.append("\n## Deprecated keys\n\n")
                .append("Still accepted in files, `--set` and stored configurations: the value is read as the replacement's\n")
                .append("and one line says so (`warning: FILE:LINE: KEY: deprecated, use NEW (read as NEW: VALUE)`). Giving\n")
                .append("both keys is an error. A conversion by a key that is 0 (automatic) is refused: give the new key.\n\n");
        sb.append("| deprecated key | replaced by | value | why |\n");
        sb.append("|---|---|---|---|\n");
        for (ConfigSchema.DeprecatedKey d : ConfigSchema.deprecatedKeys()) {
            sb.append("| `").append(d.key()).append("` | `").append(d.replacement()).append("` | ")
                    .append(d.multiplier().isEmpty() ? "unchanged" : "x `" + d.multiplier() + "`").append(" | ")
                    .append(cell(d.reason())).append(" |\n");
        }
        return sb.toString();
    }

    /** Writes the reference to {@code args[0]} (default docs/config-reference.md): a temporary file, then a rename. */
    public static void main(String[] args) throws IOException {
        Path target = Path.of(args.length > 0 ? args[0] : "docs/config-reference.md").toAbsolutePath();
        write(target);
        System.out.println("wrote " + target);
    }

    static void write(Path target) throws IOException {
        AtomicFiles.writeString(target, markdown());
    }

    private static String defaultText(ConfigSchema.Entry e) {
        Object d = e.defaultValue();
        if (d instanceof String s) {
            return s.isEmpty() ? (e.required() ? "(none)" : "`\"\"`") : "`" + s + "`";
        }
        return "`" + (d instanceof Double x ? Double.toString(x).replace('E', 'e') : d) + "`";
    }

    private static String cell(String text) {
        return text.replace("|", "\\|");
    }

    private static String capitalize(String s) {
        return Character.toUpperCase(s.charAt(0)) + s.substring(1);
    }
}
