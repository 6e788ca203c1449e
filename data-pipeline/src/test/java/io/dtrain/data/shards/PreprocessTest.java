package io.dtrain.data.shards;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.dtrain.common.AtomicFiles;
import io.dtrain.data.DataException;
import io.dtrain.data.SharedData;
import io.dtrain.data.loader.ArrowTokenDataset;
import io.dtrain.data.loader.BatchLoader;
import io.dtrain.data.loader.PackedTokenDataset;
import io.dtrain.data.loader.TokenDataset;
import io.dtrain.data.loader.TokenDatasets;
import io.dtrain.data.reader.BadRecordPolicy;
import io.dtrain.data.reader.Document;
import io.dtrain.data.reader.PileReader;
import io.dtrain.data.tokenizer.ByteTokenizer;
import io.dtrain.data.tokenizer.Tokenizer;
import io.dtrain.data.tokenizer.Tokenizers;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

public class PreprocessTest {
    private static final String TINY = SharedData.path("pile-tiny").toString();

    /** Small shards and batches so that windows cross batch and shard boundaries often. */
    static Preprocessor.Result preprocess(String input, Path out, Tokenizer tok, long shardBytes) {
        return Preprocessor.run(new Preprocessor.Options(input, out.toString(), tok, shardBytes, 2,
                BadRecordPolicy.FAIL, 3000), Progress.off());
    }

    public static void assertSameWindows(TokenDataset expected, TokenDataset actual) {
        assertSameWindows(expected, actual, 1);
    }

    /** Every {@code stride}-th sample, and the last one. */
    public static void assertSameWindows(TokenDataset expected, TokenDataset actual, int stride) {
        assertEquals(expected.numTokens(), actual.numTokens());
        assertEquals(expected.numSamples(), actual.numSamples());
        assertEquals(expected.numDocuments(), actual.numDocuments());
        int[] e = new int[expected.seqLen() + 1];
        int[] a = new int[actual.seqLen() + 1];
        long last = expected.numSamples() - 1;
        for (long i = 0; i <= last; i = i == last ? last + 1 : Math.min(i + stride, last)) {
            expected.window(i, e);
            actual.window(i, a);
            assertArrayEquals(e, a, "sample " + i);
        }
    }

    @Test
    void arrowShardsGiveTheSameWindowsAsTheInMemoryDatasetByteTokenizer(@TempDir Path out) throws Exception {
        Tokenizer tok = new ByteTokenizer();
        Preprocessor.Result r = preprocess(TINY, out, tok, 40_000);
        Manifest m = r.manifest();
        assertEquals(71, m.documents());
        assertEquals(323_900 + 71, m.tokens());
        assertEquals("uint16", m.tokenType());
        assertEquals(new ShardInfo.SetCount(5, 30_823 + 5), m.pileSetNames().get("Dictionary"));
        assertEquals(new ShardInfo.SetCount(14, 86_903 + 14), m.pileSetNames().get("Fortunes"));
        assertEquals(List.of("00", "01", "02"), m.inputs().stream().map(i -> Path.of(i.file()).getFileName()
                .toString().replaceAll("\\..*", "")).toList());
        assertEquals(List.of(44L, 12L, 15L), m.inputs().stream().map(Manifest.InputInfo::documents).toList());
        assertTrue(m.shards().size() > 6, "expected several shards per input, got " + m.shards().size());
        assertEquals("00-00000.arrow", m.shards().get(0).file());
        for (ShardInfo s : m.shards()) {
            byte[] bytes = Files.readAllBytes(out.resolve(s.file()));
            assertEquals(bytes.length, s.bytes());
            assertEquals(HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(bytes)), s.sha256());
        }
        assertEquals(r.shardsWritten(), m.shards().size());
        for (int seqLen : new int[] {37, 256}) {
            PackedTokenDataset packed = TokenDatasets.open(TINY, tok, seqLen, BadRecordPolicy.FAIL);
            TokenDataset arrow = TokenDatasets.load(out.toString(), tok, seqLen, BadRecordPolicy.FAIL);
            assertTrue(arrow instanceof ArrowTokenDataset);
            assertSameWindows(packed, arrow);
            for (long i = 0; i < packed.numTokens(); i += 997) {
                assertEquals(packed.token(i), arrow.token(i));
            }
            // The loader serves the same micro-batches from either dataset.
            try (BatchLoader a = new BatchLoader(packed, 8, 2, 1, 2, 7); BatchLoader b = new BatchLoader(arrow, 8, 2, 1, 2, 7)) {
                for (long step = 0; step < 5; step++) {
                    for (int j = 0; j < a.microBatchesPerStep(); j++) {
                        assertArrayEquals(a.microBatch(step, j).windows(), b.microBatch(step, j).windows());
                    }
                }
            }
        }
    }

    @Test
    void gpt2ShardsMatchTheInMemoryDataset(@TempDir Path out) {
        Tokenizer tok = Tokenizers.open(SharedData.path("gpt2-tokenizer").toString());
        String input = SharedData.path("pile-tiny/02.jsonl.zst").toString();
        Manifest m = preprocess(input, out, tok, 8_000).manifest();
        assertEquals(tok.identity(), m.tokenizer().identity());
        assertEquals(50256, m.tokenizer().eotId());
        assertSameWindows(TokenDatasets.open(input, tok, 64, BadRecordPolicy.FAIL),
                TokenDatasets.load(out.toString(), tok, 64, BadRecordPolicy.FAIL));
        DataException e = assertThrows(DataException.class,
                () -> TokenDatasets.load(out.toString(), new ByteTokenizer(), 64, BadRecordPolicy.FAIL));
        assertTrue(e.getMessage().contains("the shards were tokenized with " + tok.identity()), e.getMessage());
        e = assertThrows(DataException.class, () -> TokenDatasets.open(out.toString(), tok, 64, BadRecordPolicy.FAIL));
        assertTrue(e.getMessage().contains("TokenDatasets.load"), e.getMessage());
    }

    /** A real tokenizer with more than 65,536 ids: bytes, end-of-document 69,999. Exercises int32 shards. */
    static final class WideByteTokenizer implements Tokenizer {
        private final ByteTokenizer bytes = new ByteTokenizer();

        @Override
        public int[] encode(String text) {
            return bytes.encode(text);
        }

        @Override
        public String decode(int[] ids) {
            return bytes.decode(ids);
        }

        @Override
        public int vocabSize() {
            return 70_000;
        }

        @Override
        public int eotId() {
            return 69_999;
        }

        @Override
        public String identity() {
            return "wide-byte-test-v1";
        }
    }

    @Test
    void vocabulariesAbove65536IdsUseInt32(@TempDir Path out) {
        Tokenizer tok = new WideByteTokenizer();
        String input = SharedData.path("pile-tiny/01.jsonl").toString();
        assertEquals("int32", preprocess(input, out, tok, 50_000).manifest().tokenType());
        assertSameWindows(TokenDatasets.open(input, tok, 100, BadRecordPolicy.FAIL),
                TokenDatasets.load(out.toString(), tok, 100, BadRecordPolicy.FAIL));
    }

    private static Map<String, FileTime> shardTimes(Path dir) throws Exception {
        Map<String, FileTime> times = new LinkedHashMap<>();
        try (Stream<Path> files = Files.list(dir)) {
            for (Path p : files.sorted().toList()) {
                times.put(p.getFileName().toString(), Files.getLastModifiedTime(p));
            }
        }
        return times;
    }

    @Test
    void reRunSkipsCompleteShards(@TempDir Path out) throws Exception {
        Tokenizer tok = new ByteTokenizer();
        Manifest first = preprocess(TINY, out, tok, 40_000).manifest();
        Map<String, FileTime> before = shardTimes(out);
        before.remove(Manifest.FILE_NAME);
        Thread.sleep(20);
        Preprocessor.Result again = preprocess(TINY, out, tok, 40_000);
        assertEquals(0, again.shardsWritten());
        assertEquals(first.shards().size(), again.shardsKept());
        assertEquals(first, again.manifest());
        Map<String, FileTime> after = shardTimes(out);
        after.remove(Manifest.FILE_NAME);
        assertEquals(before, after, "complete shards must not be rewritten");
    }

    @Test
    void killedRunLeavesEarlierShardsAndTheReRunCompletesIdentically(@TempDir Path out) throws Exception {
        Tokenizer tok = new ByteTokenizer();
        Manifest complete = preprocess(TINY, out, tok, 20_000).manifest();
        // What a kill during shard 00-00004 leaves: shards 0..3 of input 00, a temporary file, no manifest.
        List<String> of00 = complete.shards().stream().map(ShardInfo::file).filter(f -> f.startsWith("00-")).toList();
        assertTrue(of00.size() > 6, of00.toString());
        for (ShardInfo s : complete.shards()) {
            if (s.file().compareTo("00-00004.arrow") >= 0) {
                Files.delete(out.resolve(s.file()));
            }
        }
        Files.delete(out.resolve(Manifest.FILE_NAME));
        Path halfShard = AtomicFiles.temporaryFor(out.resolve("00-00004.arrow"));
        Files.write(halfShard, "half a shard".getBytes(StandardCharsets.UTF_8));
        Map<String, FileTime> kept = shardTimes(out);
        kept.remove(halfShard.getFileName().toString());
        assertFalse(TokenDatasets.isPreprocessed(out.toString()));
        Thread.sleep(20);

        Preprocessor.Result resumed = preprocess(TINY, out, tok, 20_000);
        assertEquals(4, resumed.shardsKept());
        assertEquals(complete.shards().size() - 4, resumed.shardsWritten());
        assertEquals(complete, resumed.manifest(), "same shards, byte for byte (same sha256)");
        Map<String, FileTime> now = shardTimes(out);
        kept.forEach((name, time) -> assertEquals(time, now.get(name), name + " was rewritten"));
        assertFalse(now.containsKey(halfShard.getFileName().toString()), "temporary file left behind");
        assertTrue(resumed.documents() < 71, "documents of kept shards were tokenized again: " + resumed.documents());
    }

    @Test
    void truncatedInputFailsNamingTheFileAndKeepsCompleteShards(@TempDir Path tmp) throws Exception {
        Path in = Files.createDirectory(tmp.resolve("in"));
        Path out = tmp.resolve("out");
        // Three good zstd frames (15 documents), then a stream cut in its first block.
        try (OutputStream o = Files.newOutputStream(in.resolve("cut.jsonl.zst"))) {
            o.write(Files.readAllBytes(SharedData.path("pile-tiny/02.jsonl.zst")));
            o.write(Files.readAllBytes(SharedData.path("bad-input/truncated-stream.jsonl.zst")));
        }
        DataException e = assertThrows(DataException.class, () -> preprocess(in.toString(), out, new ByteTokenizer(), 4_000));
        assertTrue(e.getMessage().contains("cut.jsonl.zst"), e.getMessage());
        assertFalse(Files.exists(out.resolve(Manifest.FILE_NAME)));
        List<String> left;
        try (Stream<Path> files = Files.list(out)) {
            left = files.map(p -> p.getFileName().toString()).sorted().toList();
        }
        assertTrue(left.size() >= 3, left.toString());
        List<Document> docs = new ArrayList<>();
        try (PileReader r = PileReader.open(SharedData.path("pile-tiny/02.jsonl.zst").toString(), BadRecordPolicy.FAIL)) {
            r.forEachRemaining(docs::add);
        }
        long line = 0;
        for (int i = 0; i < left.size(); i++) {
            assertEquals(ShardFormat.shardName("cut", i), left.get(i), "only complete shards, no temporaries");
            ShardInfo info = ShardFormat.readLayout(new org.apache.hadoop.fs.Path(out.resolve(left.get(i)).toString())).info();
            assertEquals(line + 1, info.firstLine());
            long tokens = 0;
            for (long l = info.firstLine(); l <= info.lastLine(); l++) {
                tokens += docs.get((int) l - 1).text().getBytes(StandardCharsets.UTF_8).length + 1;
            }
            assertEquals(tokens, info.tokens(), left.get(i));
            assertFalse(info.inputComplete());
            line = info.lastLine();
        }
    }

    @Test
    void badArgumentsAreClearErrors(@TempDir Path out) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> preprocess(TINY, out,
                new ByteTokenizer(), 3L << 30));
        assertTrue(e.getMessage().contains("2 GiB"), e.getMessage());
        DataException d = assertThrows(DataException.class,
                () -> preprocess(SharedData.path("no-such-dir").toString(), out, new ByteTokenizer(), 1000));
        assertTrue(d.getMessage().contains("does not exist"), d.getMessage());
    }
}
