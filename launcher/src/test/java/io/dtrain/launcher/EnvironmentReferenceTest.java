package io.dtrain.launcher;

import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * docs/environment.md lists every environment variable the project reads, and nothing else: the main sources of
 * every module, bin/ and the benchmark scripts are scanned for environment lookups, and each name found must be
 * in the first column of one of the page's tables; each name there must still occur in the scanned sources.
 */
class EnvironmentReferenceTest {
    static final Path REPO = DpRuns.REPO;
    static final Path PAGE = REPO.resolve("docs/environment.md");

    /** Java: System.getenv("X"), System.getenv().get[OrDefault]("X"), env.get[OrDefault]("X"), helper(env, "X"), "DTRAIN_X". */
    static final List<Pattern> JAVA_READS = List.of(
            Pattern.compile("System\\.getenv\\(\\s*\"([A-Z][A-Z0-9_]*)\""),
            Pattern.compile("getenv\\(\\)\\s*\\.get(?:OrDefault)?\\(\\s*\"([A-Z][A-Z0-9_]*)\""),
            Pattern.compile("\\benv\\.get(?:OrDefault)?\\(\\s*\"([A-Z][A-Z0-9_]*)\""),
            Pattern.compile("\\(\\s*env\\s*,\\s*\"([A-Z][A-Z0-9_]*)\""),
            Pattern.compile("\"(DTRAIN_[A-Z0-9_]+)\""));
    /** Shell: ${X:-...} and ${X-...} (a variable that may come from outside); Python: os.environ.get("X"), os.environ["X"], os.getenv("X"). */
    static final List<Pattern> SCRIPT_READS = List.of(
            Pattern.compile("\\$\\{([A-Z][A-Z0-9_]*):?-"),
            Pattern.compile("os\\.environ(?:\\.get\\(|\\[)\\s*\"([A-Z][A-Z0-9_]*)\""),
            Pattern.compile("os\\.getenv\\(\\s*\"([A-Z][A-Z0-9_]*)\""));
    static final Pattern TABLE_ROW_FIRST_CELL = Pattern.compile("^\\|([^|]*)\\|", Pattern.MULTILINE);
    static final Pattern CODE_NAME = Pattern.compile("`([A-Z][A-Z0-9_]*)`");

    static List<Path> files(Path root, String... suffixes) {
        if (!Files.isDirectory(root)) {
            return List.of();
        }
        try (Stream<Path> s = Files.walk(root)) {
            return s.filter(Files::isRegularFile)
                    .filter(p -> !p.toString().contains("/target/") && !p.toString().contains("/node_modules/"))
                    .filter(p -> suffixes.length == 0 || Stream.of(suffixes).anyMatch(x -> p.toString().endsWith(x)))
                    .sorted().toList();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Every module's main Java sources. */
    static List<Path> mainSources() throws IOException {
        List<Path> out = new ArrayList<>();
        try (Stream<Path> modules = Files.list(REPO)) {
            for (Path m : modules.filter(p -> Files.isDirectory(p.resolve("src/main/java"))).sorted().toList()) {
                out.addAll(files(m.resolve("src/main/java"), ".java"));
            }
        }
        return out;
    }

    static List<Path> scripts() {
        List<Path> out = new ArrayList<>(files(REPO.resolve("bin")));
        out.addAll(files(REPO.resolve("benchmarks"), ".sh", ".py", ".mjs"));
        return out;
    }

    /** Variable -> the first file that uses it. */
    static Map<String, String> readsIn(List<Path> files, List<Pattern> patterns) throws IOException {
        Map<String, String> found = new TreeMap<>();
        for (Path f : files) {
            String text = Files.readString(f);
            for (Pattern p : patterns) {
                Matcher m = p.matcher(text);
                while (m.find()) {
                    found.putIfAbsent(m.group(1), REPO.relativize(f).toString());
                }
            }
        }
        return found;
    }

    static TreeSet<String> documented() throws IOException {
        TreeSet<String> names = new TreeSet<>();
        Matcher row = TABLE_ROW_FIRST_CELL.matcher(Files.readString(PAGE));
        while (row.find()) {
            Matcher name = CODE_NAME.matcher(row.group(1));
            while (name.find()) {
                names.add(name.group(1));
            }
        }
        return names;
    }

    @Test
    void everyVariableReadInTheSourcesIsDocumented() throws IOException {
        Map<String, String> reads = readsIn(mainSources(), JAVA_READS);
        reads.putAll(readsIn(scripts(), SCRIPT_READS));
        assertTrue(reads.keySet().containsAll(List.of("WORLD_SIZE", "DTRAIN_COLLECTIVE_TIMEOUT", "DTRAIN_JAVA_OPTS", "PATH")),
                "the scan finds the lookups it is meant to: " + reads);
        TreeSet<String> documented = documented();
        Map<String, String> missing = new TreeMap<>(reads);
        missing.keySet().removeAll(documented);
        assertEquals(Map.of(), missing, "environment variables read but not in docs/environment.md (name -> the first"
                + " file using it); add a row for each");
    }

    @Test
    void everyDocumentedVariableIsStillUsed() throws IOException {
        StringBuilder all = new StringBuilder();
        for (Path f : mainSources()) {
            all.append(Files.readString(f)).append('\n');
        }
        for (Path f : scripts()) {
            all.append(Files.readString(f)).append('\n');
        }
        List<String> stale = new ArrayList<>();
        for (String name : documented()) {
            if (!Pattern.compile("\\b" + name + "\\b").matcher(all).find()) {
                stale.add(name);
            }
        }
        assertEquals(List.of(), stale, "docs/environment.md lists variables no source or script mentions any more");
    }

    @Test
    void theReadmeLinksThePage() throws IOException {
        assertTrue(Files.readString(REPO.resolve("README.md")).contains("(docs/environment.md)"));
    }
}
