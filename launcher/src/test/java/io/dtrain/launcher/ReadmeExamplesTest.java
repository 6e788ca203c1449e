package io.dtrain.launcher;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * Every {@code dtrain} command README.md shows runs, for real, through the CLI (in this JVM; {@code launch} starts
 * its worker JVMs as it does for users). The README is parsed, so a new example is covered without touching this
 * test:
 * <ul>
 *   <li>where: lines of fenced code blocks, the code spans of a table's first column (the command table), and code
 *       spans in prose that carry an option ({@code `dtrain launch --nproc-per-node 2 -- train ...`}; a bare
 *       {@code `dtrain report`} names a command and is not run); {@code bin/dtrain} and {@code dtrain} alike;</li>
 *   <li>synopses: {@code [optional parts]} are left out, {@code (a | b)} runs once per alternative, a value
 *       {@code x|y} takes its first alternative that is not a placeholder, and the placeholders of
 *       {@link #PLACEHOLDERS} (the only ones known: an unknown one fails the test) are replaced, by option;</li>
 *   <li>shortening, the only changes to what the README says: every training ({@code train}, or {@code launch ... --
 *       train}) gets {@code --set training.steps=2 --set schedule.warmup_steps=0} (a warm-up longer than the run
 *       is refused) and its own {@code --set output.dir} under a temporary directory, and runs before the other
 *       commands; the first one's run directory is the checkpoint and run directory of {@code eval},
 *       {@code generate} and {@code report}. A command that would still take more than ~30 s gets the shrinking
 *       options of {@link #SHRINK} (none today); identical commands run once.</li>
 * </ul>
 * Each command must exit with 0 (trainings must also report their 2 steps). The whole test takes about a minute
 * on 2 busy cores (half of it the two 2-worker launches); it prints each command's time.
 */
class ReadmeExamplesTest {
    static final Path README = DpRuns.REPO.resolve("README.md");
    /** A training shortened to 2 steps; its warm-up must then fit in them (a rule of the config). */
    static final List<String> SHORTENED = List.of("--set", "training.steps=2", "--set", "schedule.warmup_steps=0");

    /**
     * What a placeholder of a synopsis stands for: "option PLACEHOLDER" (looked up first) or "PLACEHOLDER".
     * {run} is the first training's run directory, {tmp} this test's temporary directory.
     */
    static final Map<String, String> PLACEHOLDERS = Map.ofEntries(
            Map.entry("--config FILE", "configs/gpt-tiny.yaml"),
            Map.entry("train ...", "--config configs/gpt-tiny.yaml"),
            Map.entry("--nproc-per-node K", "2"),
            Map.entry("--checkpoint DIR", "{run}"),
            Map.entry("RUN_DIR", "{run}"),
            Map.entry("--prompt ...", "The "),
            Map.entry("--max-tokens N", "20"),
            Map.entry("--temperature T", "0.8"),
            Map.entry("--top-k K", "20"),
            Map.entry("--text ...", "Hello, world"),
            Map.entry("--input IN.jsonl", "data/pile-tiny/train/01.jsonl"),
            Map.entry("--output OUT.jsonl", "{tmp}/tokens.jsonl"),
            Map.entry("--input SHARDS", "data/pile-tiny/train"),
            Map.entry("--output DIR", "{tmp}/preprocessed"),
            Map.entry("--out DIR", "{tmp}/hf"),
            Map.entry("--out HF_DIR", "{tmp}/hf"),
            Map.entry("--nodes N", "2"),
            Map.entry("--gpus-per-node G", "8"));

    /**
     * Options added to commands that start with these words because they would otherwise take more than ~30 s.
     * None does today (measured on 2 busy cores: each training ~7-18 s at 2 steps, bench gemm ~4 s, bench
     * allreduce with its default sizes ~5 s); a slow new example gets its entry here, e.g.
     * {@code "bench allreduce", List.of("--sizes", "1MiB")}.
     */
    static final Map<String, List<String>> SHRINK = Map.of();

    static final Pattern PLACEHOLDER = Pattern.compile("\\.\\.\\.|[A-Z][A-Z0-9_]*(\\.[A-Za-z0-9]+)*");
    static final Pattern CODE_SPAN = Pattern.compile("`([^`]+)`");

    @TempDir
    Path tmp;

    /** A command as README.md shows it (after "dtrain"), and where. */
    record Example(String where, String synopsis) {
    }

    /** A word of a synopsis as written, without its quotes if it had any. */
    record Word(String text, boolean quoted) {
    }

    @Test
    void everyCommandInTheReadmeRuns() throws IOException {
        List<Example> examples = examples(Files.readAllLines(README));
        assertTrue(examples.size() >= 10, "README.md's commands: " + examples);

        Map<String, Example> trainings = new LinkedHashMap<>();
        Map<String, Example> others = new LinkedHashMap<>();
        for (Example e : examples) {
            for (List<String> args : expand(e)) {
                (isTraining(args) ? trainings : others).putIfAbsent(String.join("\u0000", args), e);
            }
        }
        assertTrue(!trainings.isEmpty(), "the README shows a training: " + examples);

        Path run = null;
        List<String> timings = new ArrayList<>();
        long start = System.nanoTime();
        int n = 0;
        for (Map.Entry<String, Example> t : trainings.entrySet()) {
            Path dir = tmp.resolve("run-" + n++);
            run = run == null ? dir : run;
            List<String> args = new ArrayList<>(List.of(t.getKey().split("\u0000")));
            args.addAll(SHORTENED);
            args.addAll(List.of("--set", "output.dir=" + dir));
            Cli cli = runTimed(args, t.getValue(), null, timings);
            assertTrue(cli.out().contains("done: 2 steps"), t.getValue() + ": trains its 2 steps\n" + cli);
        }
        for (Map.Entry<String, Example> o : others.entrySet()) {
            runTimed(List.of(o.getKey().split("\u0000")), o.getValue(), run, timings);
        }
        timings.add(String.format(Locale.ROOT, "%6.1f s  all %d commands", (System.nanoTime() - start) / 1e9,
                trainings.size() + others.size()));
        System.out.println("README examples:\n" + String.join("\n", timings));
    }

    private Cli runTimed(List<String> args, Example from, Path run, List<String> timings) {
        List<String> resolved = new ArrayList<>();
        for (String a : args) {
            resolved.add(a.replace("{tmp}", tmp.toString()).replace("{run}", String.valueOf(run)));
        }
        SHRINK.forEach((prefix, extra) -> {
            if (String.join(" ", resolved).startsWith(prefix + " ") || String.join(" ", resolved).equals(prefix)) {
                resolved.addAll(extra);
            }
        });
        long t0 = System.nanoTime();
        Cli cli = Cli.run(resolved.toArray(String[]::new));
        timings.add(String.format(Locale.ROOT, "%6.1f s  dtrain %s", (System.nanoTime() - t0) / 1e9, String.join(" ", resolved)));
        assertEquals(0, cli.exitCode(), from + " as: dtrain " + String.join(" ", resolved) + "\n" + cli);
        return cli;
    }

    static boolean isTraining(List<String> args) {
        int dashes = args.indexOf("--");
        return args.get(0).equals("train") || (args.get(0).equals("launch") && dashes >= 0 && dashes + 1 < args.size()
                && args.get(dashes + 1).equals("train"));
    }

    // ---- finding the commands -------------------------------------------------------------------------------------

    static List<Example> examples(List<String> lines) {
        List<Example> out = new ArrayList<>();
        boolean inFence = false;
        StringBuilder paragraph = new StringBuilder();
        int paragraphLine = 0;
        StringBuilder continued = new StringBuilder();
        for (int i = 0; i < lines.size(); i++) {
            String line = lines.get(i);
            String where = "README.md:" + (i + 1);
            boolean prose = !inFence && !line.strip().startsWith("```") && !line.startsWith("|") && !line.isBlank()
                    && !line.startsWith("#");
            if (!prose && paragraph.length() > 0) {
                addProseCommands(paragraph.toString(), "README.md:" + paragraphLine, out);
                paragraph.setLength(0);
            }
            if (line.strip().startsWith("```")) {
                inFence = !inFence;
            } else if (inFence) {
                continued.append(line.strip());
                if (line.endsWith("\\")) {
                    continued.setLength(continued.length() - 1);
                    continue;
                }
                String command = withoutComment(continued.toString()).strip();
                continued.setLength(0);
                String rest = afterDtrain(command);
                if (rest != null) {
                    out.add(new Example(where + " (code block)", rest));
                }
            } else if (line.startsWith("|")) {
                String[] cells = line.split("(?<!\\\\)\\|");
                Matcher span = CODE_SPAN.matcher(cells.length > 1 ? cells[1] : "");
                while (span.find()) {
                    String rest = afterDtrain(span.group(1).replace("\\|", "|"));
                    if (rest != null) {
                        out.add(new Example(where + " (table)", rest));
                    }
                }
            } else if (prose) {
                if (paragraph.length() == 0) {
                    paragraphLine = i + 1;
                }
                paragraph.append(line).append(' ');
            }
        }
        if (paragraph.length() > 0) {
            addProseCommands(paragraph.toString(), "README.md:" + paragraphLine, out);
        }
        return out;
    }

    private static void addProseCommands(String paragraph, String where, List<Example> out) {
        Matcher span = CODE_SPAN.matcher(paragraph);
        while (span.find()) {
            String rest = afterDtrain(span.group(1));
            if (rest != null && Pattern.compile("(^| )-").matcher(rest).find()) {
                out.add(new Example(where + " (text)", rest));
            }
        }
    }

    /** The words after "dtrain " or "bin/dtrain ", or null when the text is not a dtrain command. */
    static String afterDtrain(String text) {
        String t = text.strip();
        if (t.matches("[A-Z_][A-Z0-9_]*=.*") && t.matches(".*\\s(bin/)?dtrain\\s.*")) {
            fail("README command with environment assignments (not runnable in-process): " + t);
        }
        for (String prefix : new String[] {"bin/dtrain ", "dtrain "}) {
            if (t.startsWith(prefix)) {
                return t.substring(prefix.length()).strip();
            }
        }
        return null;
    }

    private static String withoutComment(String line) {
        boolean quoted = false;
        for (int i = 0; i < line.length(); i++) {
            char c = line.charAt(i);
            if (c == '"') {
                quoted = !quoted;
            } else if (c == '#' && !quoted && (i == 0 || line.charAt(i - 1) == ' ')) {
                return line.substring(0, i);
            }
        }
        return line;
    }

    // ---- synopses to argument lists -------------------------------------------------------------------------------

    /** Every runnable argument list of a synopsis: optional parts left out, one per alternative, placeholders replaced. */
    static List<List<String>> expand(Example e) {
        List<List<String>> out = new ArrayList<>();
        for (List<Word> words : alternatives(e.synopsis(), e)) {
            out.add(substitute(words, e));
        }
        return out;
    }

    /** Splits a synopsis into words, dropping [optional] groups and multiplying out (a | b) groups. */
    static List<List<Word>> alternatives(String synopsis, Example e) {
        List<List<Word>> out = new ArrayList<>();
        out.add(new ArrayList<>());
        int i = 0;
        while (i < synopsis.length()) {
            char c = synopsis.charAt(i);
            if (c == ' ') {
                i++;
            } else if (c == '[') {
                i = closing(synopsis, i, '[', ']', e) + 1;
            } else if (c == '(') {
                int end = closing(synopsis, i, '(', ')', e);
                List<List<Word>> product = new ArrayList<>();
                for (String alternative : synopsis.substring(i + 1, end).split(" \\| ")) {
                    for (List<Word> tail : alternatives(alternative, e)) {
                        for (List<Word> head : out) {
                            List<Word> both = new ArrayList<>(head);
                            both.addAll(tail);
                            product.add(both);
                        }
                    }
                }
                out = product;
                i = end + 1;
            } else if (c == '"' || c == '\'') {
                int end = synopsis.indexOf(c, i + 1);
                if (end < 0) {
                    fail(e + ": unclosed quote");
                }
                String word = synopsis.substring(i + 1, end);
                out.forEach(words -> words.add(new Word(word, true)));
                i = end + 1;
            } else {
                int end = i;
                while (end < synopsis.length() && " [(".indexOf(synopsis.charAt(end)) < 0) {
                    end++;
                }
                String word = synopsis.substring(i, end);
                out.forEach(words -> words.add(new Word(word, false)));
                i = end;
            }
        }
        return out;
    }

    private static int closing(String s, int open, char openChar, char closeChar, Example e) {
        int depth = 0;
        for (int i = open; i < s.length(); i++) {
            if (s.charAt(i) == openChar) {
                depth++;
            } else if (s.charAt(i) == closeChar && --depth == 0) {
                return i;
            }
        }
        return fail(e + ": unbalanced " + openChar + closeChar);
    }

    static List<String> substitute(List<Word> words, Example e) {
        List<String> args = new ArrayList<>();
        String previous = "";
        for (Word w : words) {
            String text = w.text();
            if (!w.quoted() && text.contains("|")) {
                // a value with alternatives (DIR|byte): the first one that is not a placeholder
                String chosen = null;
                for (String alternative : text.split("\\|")) {
                    if (chosen == null && !PLACEHOLDER.matcher(alternative).matches()) {
                        chosen = alternative;
                    }
                }
                text = chosen != null ? chosen : text.split("\\|")[0];
            }
            if (PLACEHOLDER.matcher(text).matches()) {
                String value = PLACEHOLDERS.getOrDefault(previous + " " + text, PLACEHOLDERS.get(text));
                if (value == null) {
                    fail(e + ": placeholder '" + previous + " " + text + "' has no value; add it to"
                            + " ReadmeExamplesTest.PLACEHOLDERS");
                }
                if (w.quoted()) {
                    args.add(value);
                } else {
                    args.addAll(List.of(value.split(" ")));
                }
            } else {
                args.add(text);
            }
            previous = w.text();
        }
        return args;
    }

    @Test
    void synopsesExpandAsDocumented() {
        Example e = new Example("test", "tokenize --tokenizer DIR|byte (--input IN.jsonl --output OUT.jsonl | --text \"...\")");
        assertEquals(List.of(
                List.of("tokenize", "--tokenizer", "byte", "--input", "data/pile-tiny/train/01.jsonl", "--output", "{tmp}/tokens.jsonl"),
                List.of("tokenize", "--tokenizer", "byte", "--text", "Hello, world")), expand(e));
        assertEquals(List.of(List.of("train", "--config", "configs/gpt-tiny.yaml")),
                expand(new Example("test", "train --config FILE [--set k=v ...] [--resume [DIR]] [--overwrite]")));
        assertEquals(List.of(List.of("launch", "--nproc-per-node", "2", "--", "train", "--config", "configs/gpt-tiny.yaml")),
                expand(new Example("test", "launch --nproc-per-node K [--nnodes N --rdzv HOST:PORT] -- train ...")));
        List<Example> found = examples(List.of("```bash", "bin/dtrain train --config c.yaml   # a comment", "mvn -B verify", "```",
                "| `dtrain bench gemm` / `dtrain bench allreduce [--world N]` | x \\| y |",
                "Prose: `dtrain report` names a command, `dtrain launch --nproc-per-node 2 -- train --config c.yaml` runs."));
        assertEquals(List.of("train --config c.yaml", "bench gemm", "bench allreduce [--world N]",
                "launch --nproc-per-node 2 -- train --config c.yaml"), found.stream().map(Example::synopsis).toList());
    }
}
