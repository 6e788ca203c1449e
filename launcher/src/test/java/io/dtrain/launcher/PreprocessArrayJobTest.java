package io.dtrain.launcher;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.dtrain.parallel.spawn.WorkerJvm;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * examples/slurm/preprocess.sbatch and preprocess-merge.sbatch run as Slurm would run them (bash, with the array
 * variables set), each task a real dtrain process on the same output directory: the merged directory is byte for
 * byte what one {@code dtrain preprocess} writes.
 */
class PreprocessArrayJobTest {
    private static final Path DATA = Paths.get(System.getProperty("dtrain.shared.data", "../../shared/data"));
    private static final Path ARRAY = Path.of("examples/slurm/preprocess.sbatch");
    private static final Path MERGE = Path.of("examples/slurm/preprocess-merge.sbatch");

    @Test
    void theSlurmArrayAndItsMergeGiveExactlyTheSingleRunsFiles(@TempDir Path tmp) throws Exception {
        String script = Files.readString(ARRAY);
        Matcher array = Pattern.compile("(?m)^#SBATCH --array=0-(\\d+)$").matcher(script);
        assertTrue(array.find(), "the array counts tasks from 0, as --part does");
        assertTrue(script.contains("--part \"$SLURM_ARRAY_TASK_ID/$PARTS\""), script);
        assertTrue(script.contains("sbatch --dependency=afterok:$jid examples/slurm/preprocess-merge.sbatch"), script);

        Path dtrain = wrapper(tmp);
        Path out = tmp.resolve("parts");
        Map<String, String> env = new TreeMap<>(Map.of("INPUT", DATA.resolve("pile-tiny").toString(),
                "OUTPUT", out.toString(), "TOKENIZER", DATA.resolve("gpt2-tokenizer").toString(),
                "DTRAIN", dtrain.toString(), "SLURM_CPUS_PER_TASK", "1", "SLURM_ARRAY_TASK_COUNT", "4"));
        // tasks 0, 1 and 3 of 4 side by side (4 tasks, 3 inputs: one task has nothing to do); task 2 fails to start
        List<Process> tasks = new ArrayList<>();
        for (int task : new int[] {0, 1, 3}) {
            env.put("SLURM_ARRAY_TASK_ID", Integer.toString(task));
            tasks.add(start(ARRAY, env, tmp.resolve("task-" + task + ".out")));
        }
        for (int i = 0; i < tasks.size(); i++) {
            assertEquals(0, finish(tasks.get(i)), Files.readString(tmp.resolve("task-" + new int[] {0, 1, 3}[i] + ".out")));
        }
        assertTrue(Files.readString(tmp.resolve("task-3.out")).contains("part 3/4 (0 input file(s))"),
                Files.readString(tmp.resolve("task-3.out")));

        Path mergeLog = tmp.resolve("merge.out");
        assertEquals(2, finish(start(MERGE, env, mergeLog)));
        String refused = Files.readString(mergeLog).replaceAll("WARNING: Using incubator modules.*\n", "").strip();
        assertEquals(1, refused.lines().count(), refused);
        assertTrue(refused.contains("part 2/4 has not finished (no parts/2-of-4.json)"), refused);

        // task 2 alone, as `sbatch --array=2 --export=ALL,PARTS=4` runs it
        env.put("SLURM_ARRAY_TASK_ID", "2");
        env.put("SLURM_ARRAY_TASK_COUNT", "1");
        env.put("PARTS", "4");
        assertEquals(0, finish(start(ARRAY, env, tmp.resolve("task-2.out"))), Files.readString(tmp.resolve("task-2.out")));
        assertEquals(0, finish(start(MERGE, env, mergeLog)), Files.readString(mergeLog));
        assertTrue(Files.readString(mergeLog).contains("merged 4 parts: 71 documents"), Files.readString(mergeLog));

        Path single = tmp.resolve("single");
        Cli one = Cli.run("preprocess", "--input", env.get("INPUT"), "--output", single.toString(), "--tokenizer",
                env.get("TOKENIZER"), "--progress", "off");
        assertEquals(0, one.exitCode(), one.toString());
        Map<String, byte[]> expected = files(single);
        Map<String, byte[]> actual = files(out);
        assertEquals(expected.keySet(), actual.keySet());
        assertTrue(expected.size() > 3, "shards and the manifest: " + expected.keySet());
        expected.forEach((name, bytes) -> assertArrayEquals(bytes, actual.get(name), name));

        assertEquals(0, finish(start(MERGE, env, mergeLog)), Files.readString(mergeLog));
        assertTrue(Files.readString(mergeLog).contains("already merged, nothing to do"), Files.readString(mergeLog));
    }

    @Test
    void badPartSyntaxIsOneLineWithExitCode2(@TempDir Path tmp) {
        String input = DATA.resolve("pile-tiny/01.jsonl").toString();
        String output = tmp.resolve("out").toString();
        for (String[] bad : new String[][] {
                {"3/2", "--part 3/2: the part index counts from 0 and must be 0..1 (a Slurm array for 2 parts is --array=0-1)"},
                {"x", "--part 'x' must be INDEX/COUNT: this part's index from 0 and the number of parts"},
                {"/", "(empty: SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT are only set in an array job"},
                {"0/0", "--part 0/0: the number of parts must be at least 1"}}) {
            Cli r = Cli.run("preprocess", "--input", input, "--output", output, "--tokenizer", "byte", "--part", bad[0]);
            assertEquals(2, r.exitCode(), r.toString());
            assertEquals(1, r.err().strip().lines().count(), r.toString());
            assertTrue(r.err().contains(bad[1]), r.toString());
        }
        Cli both = Cli.run("preprocess", "--output", output, "--merge", "--part", "0/2");
        assertEquals(2, both.exitCode(), both.toString());
        assertTrue(both.err().contains("--merge and --part exclude each other"), both.toString());
        Cli nothing = Cli.run("preprocess", "--output", output);
        assertEquals(2, nothing.exitCode(), nothing.toString());
        assertTrue(nothing.err().contains("needs --input and --tokenizer (or --merge --output DIR"), nothing.toString());
        assertFalse(Files.exists(Path.of(output)), "nothing written");
    }

    /** What bin/dtrain runs, without its rebuild step: this JVM's class path and the project's JVM options. */
    private static Path wrapper(Path dir) throws IOException {
        List<String> java = WorkerJvm.of(Main.class).command(0);
        Path script = dir.resolve("dtrain");
        Files.writeString(script, "#!/bin/sh\nexec " + java.stream().map(a -> "'" + a.replace("'", "'\\''") + "'")
                .collect(Collectors.joining(" ")) + " \"$@\"\n");
        Files.setPosixFilePermissions(script, PosixFilePermissions.fromString("rwxr-xr-x"));
        return script;
    }

    private static Process start(Path sbatch, Map<String, String> env, Path log) throws IOException {
        ProcessBuilder pb = new ProcessBuilder("bash", sbatch.toString()).redirectErrorStream(true)
                .redirectOutput(log.toFile());
        pb.environment().keySet().removeIf(k -> k.startsWith("SLURM_") || k.equals("PARTS"));
        pb.environment().putAll(env);
        return pb.start();
    }

    private static int finish(Process p) throws InterruptedException {
        if (!p.waitFor(3, TimeUnit.MINUTES)) {
            p.destroyForcibly();
            throw new AssertionError("an array task did not finish in 3 minutes");
        }
        return p.exitValue();
    }

    private static Map<String, byte[]> files(Path dir) throws IOException {
        Map<String, byte[]> all = new TreeMap<>();
        try (Stream<Path> s = Files.walk(dir)) {
            for (Path p : s.filter(Files::isRegularFile).toList()) {
                all.put(dir.relativize(p).toString(), Files.readAllBytes(p));
            }
        }
        return all;
    }
}
