package io.dtrain.data.shards;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.dtrain.data.DataException;
import io.dtrain.data.SharedData;
import io.dtrain.data.reader.BadRecordPolicy;
import io.dtrain.data.reader.BadRecordReport;
import io.dtrain.data.tokenizer.ByteTokenizer;
import io.dtrain.data.tokenizer.Tokenizer;
import io.dtrain.data.tokenizer.Tokenizers;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code --part I/N} + {@code --merge} give exactly the output of one run, and a merge refuses what is not whole. */
class PreprocessPartsTest {
    @TempDir
    static Path inputs;

    /** pile-tiny's three inputs, bad-input files and two inputs of 80 bad records each (more than the 100 listed). */
    @BeforeAll
    static void inputs() throws IOException {
        Path tiny = SharedData.path("pile-tiny");
        for (String f : List.of("00.jsonl.zst", "01.jsonl", "02.jsonl.zst")) {
            Files.copy(tiny.resolve(f), inputs.resolve(f));
        }
        Path bad = SharedData.path("bad-input");
        Files.copy(bad.resolve("invalid-json-line-6-of-10.jsonl"), inputs.resolve("03-json.jsonl"));
        Files.copy(bad.resolve("empty-zero-bytes.jsonl.zst"), inputs.resolve("04-empty.jsonl.zst"));
        Files.copy(bad.resolve("invalid-utf8-line-2-of-4.jsonl.zst"), inputs.resolve("05-utf8.jsonl.zst"));
        for (String name : List.of("06-broken.jsonl", "07-broken.jsonl")) {
            StringBuilder text = new StringBuilder();
            for (int i = 0; i < 80; i++) {
                text.append(i % 2 == 0 ? "not json " + i : "{\"text\": \"doc " + i + " of " + name + "\"}").append('\n');
                text.append("{\"meta\": {}}\n");
            }
            Files.writeString(inputs.resolve(name), text, StandardCharsets.UTF_8);
        }
    }

    private static Preprocessor.Options options(Path out, Tokenizer tok, long shardBytes) {
        return new Preprocessor.Options(inputs.toString(), out.toString(), tok, shardBytes, 2, BadRecordPolicy.SKIP,
                3000);
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

    static void assertSameFiles(Path expected, Path actual) throws IOException {
        Map<String, byte[]> e = files(expected);
        Map<String, byte[]> a = files(actual);
        assertEquals(e.keySet(), a.keySet(), "the same files, no parts/ left");
        e.forEach((name, bytes) -> assertArrayEquals(bytes, a.get(name), name + " differs"));
    }

    @Test
    void partsMergedAreByteIdenticalToOneRunForAnyPartCount(@TempDir Path tmp) throws Exception {
        Tokenizer tok = new ByteTokenizer();
        Path single = tmp.resolve("single");
        Preprocessor.Result whole = Preprocessor.run(options(single, tok, 40_000), Progress.off());
        assertEquals(8, whole.manifest().inputs().size());
        assertTrue(whole.manifest().badRecords() > BadRecordReport.MAX_KEPT, "examples are cut at 100");
        assertEquals(BadRecordReport.MAX_KEPT, whole.manifest().badRecordExamples().size());

        for (int n : new int[] {1, 3, 8, 11}) {  // 11 parts for 8 inputs: three parts have nothing to do
            Path out = tmp.resolve("parts-" + n);
            for (int i = n - 1; i >= 0; i--) {  // any order: each part only knows its own share
                Preprocessor.run(options(out, tok, 40_000), new PreprocessPart(i, n), Progress.off());
            }
            assertFalse(Files.exists(out.resolve(Manifest.FILE_NAME)), "no manifest before the merge");
            PreprocessParts.MergeResult merged = PreprocessParts.merge(out.toString(),
                    new PreprocessParts.Expected(null, tok, 40_000L, 3000, BadRecordPolicy.SKIP));
            assertEquals(n, merged.parts());
            assertEquals(whole.manifest().badRecords(), merged.badRecords().count());
            assertSameFiles(single, out);

            PreprocessParts.MergeResult again = PreprocessParts.merge(out.toString(), PreprocessParts.Expected.NOTHING);
            assertTrue(again.alreadyMerged(), "merging again is a no-op");
            assertSameFiles(single, out);
        }
    }

    @Test
    void partsRunSideBySideInOneDirectoryWithGpt2(@TempDir Path tmp) throws Exception {
        Tokenizer tok = Tokenizers.open(SharedData.path("gpt2-tokenizer").toString());
        Path single = tmp.resolve("single");
        Preprocessor.run(options(single, tok, 20_000), Progress.off());
        Path out = tmp.resolve("parts");
        int n = 4;
        ExecutorService pool = Executors.newFixedThreadPool(n);
        try {
            List<Future<Preprocessor.Result>> parts = new ArrayList<>();
            for (int i = 0; i < n; i++) {
                PreprocessPart part = new PreprocessPart(i, n);
                parts.add(pool.submit(() -> Preprocessor.run(options(out, tok, 20_000), part, Progress.off())));
            }
            for (Future<Preprocessor.Result> f : parts) {
                f.get();
            }
        } finally {
            pool.shutdown();
        }
        PreprocessParts.merge(out.toString(), PreprocessParts.Expected.NOTHING);
        assertSameFiles(single, out);
    }

    @Test
    void mergeNamesWhatIsMissingOrInconsistent(@TempDir Path tmp) throws Exception {
        Tokenizer tok = new ByteTokenizer();
        String out = tmp.resolve("out").toString();
        DataException none = assertThrows(DataException.class,
                () -> PreprocessParts.merge(out, PreprocessParts.Expected.NOTHING));
        assertTrue(none.getMessage().contains("no part manifests in"), none.getMessage());

        Preprocessor.run(options(Path.of(out), tok, 40_000), new PreprocessPart(0, 3), Progress.off());
        Preprocessor.run(options(Path.of(out), tok, 40_000), new PreprocessPart(2, 3), Progress.off());
        DataException missing = assertThrows(DataException.class,
                () -> PreprocessParts.merge(out, PreprocessParts.Expected.NOTHING));
        assertTrue(missing.getMessage().contains("part 1/3 has not finished (no parts/1-of-3.json)"),
                missing.getMessage());

        // part 1 with another shard size: its shards differ from what one run would write
        Preprocessor.run(options(Path.of(out), tok, 50_000), new PreprocessPart(1, 3), Progress.off());
        DataException differs = assertThrows(DataException.class,
                () -> PreprocessParts.merge(out, PreprocessParts.Expected.NOTHING));
        assertTrue(differs.getMessage().contains("part 1/3 was run with --shard-size 50000 rather than part 0/3"),
                differs.getMessage());
        // the re-run would keep part 1's complete shards, whatever their size: delete them as a user would
        for (String f : list(Path.of(out))) {
            if (f.startsWith("03-") || f.startsWith("04-") || f.startsWith("05-")) {  // part 1/3's inputs
                Files.delete(Path.of(out, f));
            }
        }
        Preprocessor.run(options(Path.of(out), tok, 40_000), new PreprocessPart(1, 3), Progress.off());

        DataException tokenizer = assertThrows(DataException.class, () -> PreprocessParts.merge(out,
                new PreprocessParts.Expected(null, Tokenizers.open(SharedData.path("gpt2-tokenizer").toString()),
                        null, null, null)));
        assertTrue(tokenizer.getMessage().contains("the parts used tokenizer byte-utf8-v1"), tokenizer.getMessage());
        DataException input = assertThrows(DataException.class, () -> PreprocessParts.merge(out,
                new PreprocessParts.Expected(List.of(new org.apache.hadoop.fs.Path(inputs.resolve("01.jsonl").toString())),
                        null, null, null, null)));
        assertTrue(input.getMessage().contains("--input now gives 1 file(s), the parts read 8"), input.getMessage());

        Path lost = Path.of(out, "03-json-00001.arrow");
        byte[] kept = Files.readAllBytes(lost);
        Files.delete(lost);
        DataException shard = assertThrows(DataException.class,
                () -> PreprocessParts.merge(out, PreprocessParts.Expected.NOTHING));
        assertTrue(shard.getMessage().contains("part 1/3 lists 03-json-00001.arrow (" + kept.length
                + " bytes), which is missing; re-run part 1/3"), shard.getMessage());
        Files.write(lost, kept);

        // a second array of another size supersedes the first one's part manifests as its parts run
        Preprocessor.run(options(Path.of(out), tok, 40_000), new PreprocessPart(0, 2), Progress.off());
        assertEquals(List.of("0-of-2.json"), list(Path.of(out, PreprocessParts.DIR)));
        Preprocessor.run(options(Path.of(out), tok, 40_000), new PreprocessPart(1, 2), Progress.off());
        assertEquals(whole(tmp, tok).badRecords(),
                PreprocessParts.merge(out, PreprocessParts.Expected.NOTHING).manifest().badRecords());
        assertSameFiles(tmp.resolve("single"), Path.of(out));
    }

    @Test
    void aKilledPartIsRerunAndKeepsItsShards(@TempDir Path tmp) throws Exception {
        Tokenizer tok = new ByteTokenizer();
        Path out = tmp.resolve("out");
        PreprocessPart part = new PreprocessPart(0, 2);
        Preprocessor.run(options(out, tok, 40_000), part, Progress.off());
        Preprocessor.run(options(out, tok, 40_000), new PreprocessPart(1, 2), Progress.off());
        // as if part 0 died writing its last shard: the shard is a temporary, the part manifest not yet written
        Files.delete(out.resolve("parts/0-of-2.json"));
        String last = list(out).stream().filter(f -> f.startsWith("00-")).reduce((a, b) -> b).orElseThrow();
        Files.move(out.resolve(last), out.resolve("." + last + ".tmp"));
        Path othersTemp = out.resolve(".06-broken-00000.arrow.tmp");
        Files.writeString(othersTemp, "part 1 writing");
        Preprocessor.Result rerun = Preprocessor.run(options(out, tok, 40_000), part, Progress.off());
        assertEquals(1, rerun.shardsWritten(), "only the lost shard is written again");
        assertTrue(Files.exists(othersTemp), "a part leaves the other parts' temporaries alone");
        Files.delete(othersTemp);
        PreprocessParts.merge(out.toString(), PreprocessParts.Expected.NOTHING);
        whole(tmp, tok);
        assertSameFiles(tmp.resolve("single"), out);
    }

    private static Manifest whole(Path tmp, Tokenizer tok) {
        return Preprocessor.run(options(tmp.resolve("single"), tok, 40_000), Progress.off()).manifest();
    }

    private static List<String> list(Path dir) throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            return s.map(p -> p.getFileName().toString()).sorted().toList();
        }
    }
}
