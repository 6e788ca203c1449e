package io.dtrain.launcher;

import io.dtrain.data.shards.Manifest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Failures a new user meets on purpose, with bad inputs (issue 14): each says what happened, what was affected and
 * what to do in one line, exits with code 2, and leaves what was already written intact. The disk-full case is
 * {@link DiskFullTest}, the stalled rank {@link DpFailureTest}.
 */
class UserFacingFailuresTest {
    static final Path DATA = Path.of(System.getProperty("dtrain.shared.data", "../shared/data")).toAbsolutePath();

    /** The one "dtrain CMD: error: ..." line of a failed command; no stack trace anywhere on the console. */
    static String errorLine(Cli r) {
        assertEquals(2, r.exitCode(), r.toString());
        List<String> lines = r.err().lines().filter(l -> l.startsWith("dtrain ")).toList();
        assertEquals(1, lines.size(), r.toString());
        assertFalse((r.out() + r.err()).contains("\tat "), "no stack trace on the console: " + r);
        System.out.println(lines.get(0));
        return lines.get(0);
    }

    private static List<String> train(String config, Path run, String... sets) {
        List<String> args = new ArrayList<>(List.of("train", "--config", config, "--set", "output.dir=" + run));
        for (String s : sets) {
            args.add("--set");
            args.add(s);
        }
        return args;
    }

    private static Cli run(List<String> args) {
        return Cli.run(args.toArray(String[]::new));
    }

    private static String[] microShort() {
        return new String[] {"training.steps=1", "schedule.warmup_steps=0", "training.eval_interval=0",
                "training.checkpoint_interval=0", "metrics.trace=false"};
    }

    private static List<String> with(List<String> args, String... more) {
        List<String> out = new ArrayList<>(args);
        for (String s : more) {
            out.add("--set");
            out.add(s);
        }
        return out;
    }

    // ---- 2. a model that does not fit in memory --------------------------------------------------------------------

    /**
     * GPT-2 small with micro-batches of 64 (the issue's run, which died with a raw OutOfMemoryError after 41 s) is
     * refused before the data is read, with the estimate and the knobs, by the default (fused) engine and by SameDiff.
     */
    @Test
    void aModelThatDoesNotFitInMemoryIsRefusedUpFrontWithTheNumbers(@TempDir Path tmp) {
        for (String engine : new String[] {"auto", "samediff"}) {
            Path run = tmp.resolve(engine);
            long t0 = System.nanoTime();
            Cli r = run(train("configs/gpt2-124m.yaml", run, "training.micro_batch=64", "model.engine=" + engine,
                    "data.train=" + DATA.resolve("pile-sample/train"), "data.val=" + DATA.resolve("pile-sample/val"),
                    "data.tokenizer_dir=" + DATA.resolve("gpt2-tokenizer")));
            String line = errorLine(r);
            assertTrue(line.startsWith("dtrain train: error: this run does not fit in memory: it needs about "), line);
            assertTrue(line.contains("parameters 474.7MiB + gradients 474.7MiB + AdamW state 949.4MiB + activations "),
                    line);
            assertTrue(line.contains((engine.equals("auto") ? "fused" : engine) + " engine, 1 set(s) for micro-batches"
                    + " of 64 sequences"), line);
            assertTrue(line.matches(".* but (javacpp\\.maxphysicalbytes|the memory this machine has available) .*"), line);
            assertTrue(line.matches(".*lower training\\.micro_batch \\(\\d+ fits: about .*"), line);
            assertTrue(line.contains("parallel.pipeline.stages"), line);
            assertTrue(line.matches(".*\\(stack trace: .*/logs/train-rank0\\.log\\)$"), line);
            assertTrue((System.nanoTime() - t0) / 1e9 < 20, "refused before reading 56 MB of text with GPT-2's BPE");
            assertFalse(Files.exists(run.resolve("checkpoints")));
        }
    }

    /**
     * Memory running out all the same is the same kind of line: here a worker with a 128 MiB heap reading 56 MB of
     * raw text into memory (the estimate cannot know the data's size before reading it).
     */
    @Test
    void runningOutOfMemoryAnywayIsOneLineWithTheKnobs(@TempDir Path tmp) {
        Cli r = Cli.run("launch", "--nproc-per-node", "1", "--memory-per-worker", "512m", "--stop-grace", "2", "--",
                "train", "--config", "configs/gpt-micro.yaml", "--set", "data.train=" + DATA.resolve("pile-sample/train"),
                "--set", "output.dir=" + tmp.resolve("run"));
        assertEquals(2, r.exitCode(), r.toString());
        List<String> lines = r.err().lines().filter(l -> l.startsWith("dtrain launch: ")).toList();
        assertEquals(1, lines.size(), r.toString());
        System.out.println(lines.get(0));
        assertTrue(lines.get(0).matches("dtrain launch: error: out of memory while reading the data \\(Java heap space\\):"
                + " the Java heap \\(-Xmx [0-9.]+MiB\\) that holds the data read into memory is full; preprocess the data"
                + " \\(dtrain preprocess: memory-mapped shards, off the heap\\) or raise -Xmx \\(DTRAIN_JAVA_OPTS\\)"
                + " \\(stack trace: .*/run/logs/train-rank0\\.log\\) \\(reported by rank 0, .*"), lines.get(0));
        assertFalse((r.out() + r.err()).contains("\tat "), "no stack trace on the console: " + r);
    }

    // ---- 4. preprocessed shards list their bad records and honour data.on_bad_record: fail -----------------------

    @Test
    void preprocessedShardsListTheirBadRecordsAndFailRefusesThem(@TempDir Path tmp) throws IOException {
        Path in = Files.createDirectories(tmp.resolve("in"));
        for (String name : new String[] {"invalid-json-line-6-of-10.jsonl", "non-string-text-lines-2-3-of-4.jsonl"}) {
            Files.copy(DATA.resolve("bad-input").resolve(name), in.resolve(name));
        }
        Path shards = tmp.resolve("shards");
        Cli pre = Cli.run("preprocess", "--input", in.toString(), "--output", shards.toString(), "--tokenizer", "byte",
                "--progress", "off");
        assertEquals(0, pre.exitCode(), pre.toString());
        byte[] manifest = Files.readAllBytes(shards.resolve(Manifest.FILE_NAME));

        List<String> args = with(train("configs/gpt-micro.yaml", tmp.resolve("run"), microShort()),
                "data.train=" + shards, "data.val=");
        Cli ok = run(args);
        assertEquals(0, ok.exitCode(), ok.toString());
        assertTrue(ok.out().contains("data train: " + shards + ": "), ok.out());
        assertTrue(ok.out().contains("data train: 3 bad record(s) skipped" + System.lineSeparator()), ok.out());
        assertTrue(ok.out().contains("invalid-json-line-6-of-10.jsonl:6: record is not valid JSON"), ok.out());
        assertTrue(ok.out().contains("non-string-text-lines-2-3-of-4.jsonl:2: "), ok.out());
        assertTrue(ok.out().contains("non-string-text-lines-2-3-of-4.jsonl:3: "), ok.out());

        String line = errorLine(run(with(args, "data.on_bad_record=fail", "output.dir=" + tmp.resolve("run-fail"))));
        assertTrue(line.startsWith("dtrain train: error: " + shards + ": 3 bad record(s) were skipped when it was"
                + " preprocessed (first: " + in.resolve("invalid-json-line-6-of-10.jsonl") + ":6: record is not valid"
                + " JSON"), line);
        assertTrue(line.contains("the bad-record policy is fail (data.on_bad_record); fix the input and run dtrain"
                + " preprocess again, or set data.on_bad_record: skip"), line);
        assertArrayEquals(manifest, Files.readAllBytes(shards.resolve(Manifest.FILE_NAME)), "the dataset is untouched");
    }

    // ---- 5. a missing data path -----------------------------------------------------------------------------------

    @Test
    void aMissingDataPathIsNamedWithFileLineAndKeyBeforeAnythingIsPrintedOrWritten(@TempDir Path tmp)
            throws IOException {
        Path yaml = tmp.resolve("run.yaml");
        Files.writeString(yaml, Files.readString(DpRuns.REPO.resolve("configs/gpt-micro.yaml"))
                .replace("train: data/pile-tiny/train", "train: data/does-not-exist"));
        int line = lineOf(yaml, "train: data/does-not-exist");
        Path run = tmp.resolve("run");
        Cli r = run(train(yaml.toString(), run));
        assertEquals("dtrain train: error: " + yaml + ":" + line + ": data.train: input "
                + DpRuns.REPO.resolve("data/does-not-exist") + " does not exist (expected a .jsonl/.jsonl.zst file, a"
                + " directory of them, or a glob such as dir/*.jsonl.zst); fix the path (relative paths resolve against"
                + " the working directory)", errorLine(r));
        assertEquals("", r.out(), "nothing printed before the check");
        assertFalse(Files.exists(run), "nothing written before the check");

        Cli set = run(train("configs/gpt-micro.yaml", run, "data.val=data/nowhere/*.jsonl"));
        assertEquals("dtrain train: error: --set data.val: input glob " + DpRuns.REPO.resolve("data/nowhere/*.jsonl")
                + " matches no files; fix the path (relative paths resolve against the working directory)", errorLine(set));
        assertFalse(Files.exists(run));
    }

    private static int lineOf(Path file, String text) throws IOException {
        List<String> lines = Files.readAllLines(file);
        for (int i = 0; i < lines.size(); i++) {
            if (lines.get(i).contains(text)) {
                return i + 1;
            }
        }
        throw new AssertionError(text + " not in " + file);
    }

    // ---- 6. YAML syntax errors point where the construct opened ---------------------------------------------------

    @Test
    void yamlSyntaxErrorsNameTheLineWhereTheQuoteOrBracketOpened(@TempDir Path tmp) throws IOException {
        List<String> tiny = Files.readAllLines(DpRuns.REPO.resolve("configs/gpt-tiny.yaml"));
        Path quote = tmp.resolve("quote.yaml");
        List<String> q = new ArrayList<>(tiny);
        q.set(11, q.get(11).replace("norm: pre", "norm: \"pre"));
        Files.write(quote, q);
        String line = errorLine(run(train(quote.toString(), tmp.resolve("run"))));
        assertTrue(line.startsWith("dtrain train: error: " + quote + ":12: YAML syntax error: while scanning a quoted"
                + " scalar that starts here (column 9): found unexpected end of stream at line " + (tiny.size() + 1)
                + "; close the quote on this line"), line);

        Path bracket = tmp.resolve("bracket.yaml");
        List<String> b = new ArrayList<>(tiny);
        b.set(8, b.get(8).replace("d_model: 128", "d_model: [128"));
        Files.write(bracket, b);
        line = errorLine(run(train(bracket.toString(), tmp.resolve("run"))));
        assertTrue(line.startsWith("dtrain train: error: " + bracket + ":9: YAML syntax error: while parsing a flow"
                + " sequence that starts here (column 12): expected ',' or ']', but got : at line 10; close the '['"), line);
        assertFalse(Files.exists(tmp.resolve("run")));
    }

    // ---- 7. a 0-byte .jsonl.zst in a corpus; an empty input to preprocess -----------------------------------------

    @Test
    void aZeroByteZstInACorpusIsListedOrRefusedUnderFail(@TempDir Path tmp) throws IOException {
        Path corpus = Files.createDirectories(tmp.resolve("corpus"));
        try (Stream<Path> files = Files.list(DpRuns.REPO.resolve("data/pile-tiny/train"))) {
            for (Path f : files.toList()) {
                Files.copy(f, corpus.resolve(f.getFileName()));
            }
        }
        Path empty = corpus.resolve("03.jsonl.zst");
        Files.write(empty, new byte[0]);
        List<String> args = with(train("configs/gpt-micro.yaml", tmp.resolve("run"), microShort()),
                "data.train=" + corpus);
        Cli ok = run(args);
        assertEquals(0, ok.exitCode(), ok.toString());
        assertTrue(ok.out().contains("data train: 1 bad record(s) skipped" + System.lineSeparator() + "  " + empty
                + ": 0 bytes, not a zstd stream (an interrupted download or copy?); read as no documents"), ok.out());

        String line = errorLine(run(with(args, "data.on_bad_record=fail", "output.dir=" + tmp.resolve("run-fail"))));
        assertTrue(line.startsWith("dtrain train: error: " + empty + ": 0 bytes, not a zstd stream (an interrupted"
                + " download or copy?); delete it or copy it again"), line);
    }

    @Test
    void preprocessOfAnEmptyInputFailsAndLeavesNothingBehind(@TempDir Path tmp) {
        for (String name : new String[] {"empty.jsonl", "empty-zero-bytes.jsonl.zst"}) {
            Path out = tmp.resolve("out-" + name);
            Cli r = Cli.run("preprocess", "--input", DATA.resolve("bad-input").resolve(name).toString(), "--output",
                    out.toString(), "--tokenizer", "byte", "--progress", "off");
            String line = errorLine(r);
            assertTrue(line.startsWith("dtrain preprocess: error: no documents in " + DATA.resolve("bad-input")
                    .resolve(name) + " (1 file(s), "), line);
            assertTrue(line.contains("this run left nothing in " + out), line);
            assertFalse(Files.exists(out), "no stray shard or directory left: " + name);
        }
    }

    // ---- 8. --help and the reference's "did you mean" --------------------------------------------------------------

    @Test
    void everyCommandsSummaryInTheHelpIsAWholeSentence() {
        Cli help = Cli.run("--help");
        assertEquals(0, help.exitCode());
        List<CommandLine> commands = new ArrayList<>(Main.commandLine().getSubcommands().values());
        commands.addAll(Main.commandLine().getSubcommands().get("bench").getSubcommands().values());
        for (CommandLine c : commands) {
            String[] description = c.getCommandSpec().usageMessage().description();
            if (c.getCommandName().equals("help")) {
                continue;
            }
            String summary = description[0];
            assertTrue(summary.endsWith(".") || summary.endsWith(")") || summary.endsWith(".)"),
                    c.getCommandName() + ": " + Arrays.toString(description));
        }
        for (String cmd : new String[] {"eval", "generate", "bench"}) {
            String summary = Main.commandLine().getSubcommands().get(cmd).getCommandSpec().usageMessage().description()[0];
            String listed = help.out().substring(help.out().indexOf("  " + cmd + " ")).lines()
                    .takeWhile(l -> !l.matches("  [a-z].*") || l.startsWith("  " + cmd + " "))
                    .reduce("", (a, l) -> a + " " + l.strip()).replaceAll("\\s+", " ").strip();
            assertEquals(cmd + " " + summary, listed, "the listed summary is whole: " + help.out());
        }
    }

    @Test
    void theConfigReferenceQuotesTheErrorsTheLoaderGives(@TempDir Path tmp) throws IOException {
        Path yaml = tmp.resolve("run.yaml");
        Files.writeString(yaml, "data:\n  train: data/pile-tiny/train\nmodel:\n  n_heads: 4\n");
        String line = errorLine(run(List.of("train", "--config", yaml.toString())));
        assertEquals("dtrain train: error: " + yaml + ":4: model.n_heads: unknown key; did you mean model.n_head?", line);
        String fromSet = errorLine(run(List.of("train", "--config", "configs/gpt-micro.yaml", "--set", "model.n_heads=4")));
        assertEquals("dtrain train: error: --set model.n_heads: unknown key; did you mean model.n_head?", fromSet);
        String reference = Files.readString(DpRuns.REPO.resolve("docs/config-reference.md"));
        assertTrue(reference.contains("`run.yaml:4: model.n_heads: unknown key; did you mean model.n_head?`"), reference);
        assertTrue(reference.contains("`--set model.n_heads: unknown key; did you mean model.n_head?`"), reference);
    }
}
