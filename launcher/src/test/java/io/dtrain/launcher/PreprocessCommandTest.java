package io.dtrain.launcher;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.dtrain.data.loader.ArrowTokenDataset;
import io.dtrain.data.loader.PackedTokenDataset;
import io.dtrain.data.loader.TokenDataset;
import io.dtrain.data.loader.TokenDatasets;
import io.dtrain.data.reader.BadRecordPolicy;
import io.dtrain.data.shards.Manifest;
import io.dtrain.data.tokenizer.ByteTokenizer;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

class PreprocessCommandTest {
    private static final Path DATA = Paths.get(System.getProperty("dtrain.shared.data", "../../shared/data"));

    private final StringWriter out = new StringWriter();
    private final StringWriter err = new StringWriter();

    private int run(String... args) {
        CommandLine cl = new CommandLine(new PreprocessCommand());
        cl.setExecutionExceptionHandler(new ErrorHandler());
        cl.setOut(new PrintWriter(out, true));
        cl.setErr(new PrintWriter(err, true));
        return cl.execute(args);
    }

    @Test
    void preprocessesADirectoryIntoShardsTheLoaderReadsLikeTheRawInput(@TempDir Path tmp) {
        String input = DATA.resolve("pile-tiny").toString();
        String output = tmp.resolve("tiny-bytes").toString();
        assertEquals(0, run("--input", input, "--output", output, "--tokenizer", "byte", "--shard-size", "64KiB",
                "--workers", "2", "--progress", "lines"), err.toString());
        assertTrue(err.toString().contains("preprocess: 71 documents, 323,971 tokens (uint16) in "), err.toString());
        assertTrue(Files.exists(Path.of(output, Manifest.FILE_NAME)));
        assertTrue(Files.exists(Path.of(output, "00-00000.arrow")));
        assertTrue(Files.exists(Path.of(output, "00-00001.arrow")), "64KiB shards: 00 (200 KB of text) needs several");

        TokenDataset shards = TokenDatasets.load(output, new ByteTokenizer(), 128, BadRecordPolicy.SKIP);
        PackedTokenDataset raw = TokenDatasets.open(input, new ByteTokenizer(), 128, BadRecordPolicy.SKIP);
        assertTrue(shards instanceof ArrowTokenDataset);
        assertEquals(raw.numSamples(), shards.numSamples());
        int[] a = new int[129];
        int[] b = new int[129];
        for (long i = 0; i < raw.numSamples(); i += 7) {
            raw.window(i, a);
            shards.window(i, b);
            assertEquals(java.util.Arrays.toString(a), java.util.Arrays.toString(b), "sample " + i);
        }

        err.getBuffer().setLength(0);
        assertEquals(0, run("--input", input, "--output", output, "--tokenizer", "byte", "--shard-size", "64KiB",
                "--progress", "off"), err.toString());
        assertTrue(err.toString().contains(": 0 written, "), "the re-run keeps every shard: " + err);
    }

    @Test
    void shardSizeTakesTheCommonByteSizeUnits(@TempDir Path tmp) {
        String input = DATA.resolve("pile-tiny/01.jsonl").toString();
        String decimal = tmp.resolve("decimal").toString();
        assertEquals(0, run("--input", input, "--output", decimal, "--tokenizer", "byte", "--shard-size", "64KB",
                "--progress", "off"), err.toString());
        assertEquals(64_000, Manifest.read(decimal).shardSizeTarget(), "KB is decimal, as in every dtrain option");
        String binary = tmp.resolve("binary").toString();
        assertEquals(0, run("--input", input, "--output", binary, "--tokenizer", "byte", "--shard-size", "0.5m",
                "--progress", "off"), err.toString());
        assertEquals(512 * 1024, Manifest.read(binary).shardSizeTarget());
    }

    @Test
    void userErrorsGiveExitCode2AndSayWhatToFix(@TempDir Path tmp) {
        String output = tmp.resolve("out").toString();
        String input = DATA.resolve("pile-tiny/01.jsonl").toString();
        assertEquals(2, run("--input", input, "--output", output, "--tokenizer", "byte", "--shard-size", "lots"));
        assertTrue(err.toString().contains("--shard-size: 'lots' is not a byte size"), err.toString());
        assertEquals(2, run("--input", input, "--output", output, "--tokenizer", "byte", "--shard-size", "4GiB"));
        assertTrue(err.toString().contains("2 GiB"), err.toString());
        assertEquals(2, run("--input", input, "--output", output, "--tokenizer", "byte", "--progress", "loud"));
        assertTrue(err.toString().contains("--progress must be auto, bar, lines or off"), err.toString());

        err.getBuffer().setLength(0);
        String bad = DATA.resolve("bad-input/invalid-json-line-6-of-10.jsonl").toString();
        assertEquals(2, run("--input", bad, "--output", output, "--tokenizer", "byte", "--bad-records", "fail",
                "--progress", "off"));
        assertTrue(err.toString().contains("invalid-json-line-6-of-10.jsonl:6:"), err.toString());
        assertFalse(Files.exists(Path.of(output, Manifest.FILE_NAME)));

        err.getBuffer().setLength(0);
        assertEquals(0, run("--input", bad, "--output", output, "--tokenizer", "byte", "--progress", "off"));
        assertTrue(err.toString().contains("1 bad record(s) skipped"), err.toString());
        assertTrue(err.toString().contains("preprocess: 9 documents"), err.toString());
    }
}
