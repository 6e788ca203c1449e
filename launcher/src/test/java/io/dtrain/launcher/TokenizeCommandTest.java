package io.dtrain.launcher;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.github.luben.zstd.ZstdInputStream;
import io.dtrain.data.reader.BadRecordPolicy;
import io.dtrain.data.reader.Document;
import io.dtrain.data.reader.PileReader;
import io.dtrain.data.tokenizer.Tokenizer;
import io.dtrain.data.tokenizer.Tokenizers;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

class TokenizeCommandTest {
    private static final Path DATA = Paths.get(System.getProperty("dtrain.shared.data", "../../shared/data"));
    private static final String GPT2 = DATA.resolve("gpt2-tokenizer").toString();

    private final StringWriter out = new StringWriter();
    private final StringWriter err = new StringWriter();

    private int run(String... args) {
        CommandLine cl = new CommandLine(new TokenizeCommand());
        cl.setExecutionExceptionHandler(new ErrorHandler());
        cl.setOut(new PrintWriter(out, true));
        cl.setErr(new PrintWriter(err, true));
        return cl.execute(args);
    }

    @Test
    void textPrintsTheIds() {
        assertEquals(0, run("--tokenizer", GPT2, "--text", "Hello<|endoftext|>World"));
        assertEquals("[15496, 27, 91, 437, 1659, 5239, 91, 29, 10603]", out.toString().strip());
        out.getBuffer().setLength(0);
        assertEquals(0, run("--tokenizer", GPT2, "--allow-special", "--text", "Hello<|endoftext|>World"));
        assertEquals("[15496, 50256, 10603]", out.toString().strip());
        out.getBuffer().setLength(0);
        assertEquals(0, run("--tokenizer", "byte", "--text", "h\u00e9"));
        assertEquals("[104, 195, 169]", out.toString().strip());
    }

    @Test
    void jsonlFileBecomesIdsInTheSameOrder(@TempDir Path tmp) throws Exception {
        Path input = DATA.resolve("pile-tiny/02.jsonl.zst");
        for (String name : List.of("ids.jsonl", "ids.jsonl.zst")) {
            String spec = name.endsWith(".zst") ? "byte" : GPT2;
            Path output = tmp.resolve(name);
            assertEquals(0, run("--tokenizer", spec, "--input", input.toString(), "--output", output.toString()),
                    err.toString());
            List<String> lines = new ArrayList<>();
            try (BufferedReader r = new BufferedReader(new InputStreamReader(name.endsWith(".zst")
                    ? new ZstdInputStream(Files.newInputStream(output)) : Files.newInputStream(output),
                    StandardCharsets.UTF_8))) {
                r.lines().forEach(lines::add);
            }
            Tokenizer tok = Tokenizers.open(spec);
            List<Document> docs = new ArrayList<>();
            try (PileReader reader = PileReader.open(input.toString(), BadRecordPolicy.FAIL)) {
                reader.forEachRemaining(docs::add);
            }
            assertEquals(docs.size(), lines.size());
            ObjectMapper json = new ObjectMapper();
            for (int i = 0; i < docs.size(); i++) {
                JsonNode ids = json.readTree(lines.get(i)).get("ids");
                int[] got = new int[ids.size()];
                for (int k = 0; k < got.length; k++) {
                    got[k] = ids.get(k).asInt();
                }
                assertArrayEquals(tok.encode(docs.get(i).text()), got, "document " + i);
            }
        }
        try (var files = Files.list(tmp)) {
            assertEquals(List.of("ids.jsonl", "ids.jsonl.zst"),
                    files.map(p -> p.getFileName().toString()).sorted().toList(), "temporary files left behind");
        }
    }

    @Test
    void badInputFailsWithFileAndLineAndLeavesNoOutput(@TempDir Path tmp) {
        Path output = tmp.resolve("ids.jsonl");
        String bad = DATA.resolve("bad-input/invalid-json-line-6-of-10.jsonl").toString();
        assertEquals(2, run("--tokenizer", "byte", "--input", bad, "--output", output.toString()));
        assertTrue(err.toString().contains("invalid-json-line-6-of-10.jsonl:6:"), err.toString());
        assertFalse(Files.exists(output));
        assertTrue(tmp.toFile().list().length == 0, "temporary file left behind");

        err.getBuffer().setLength(0);
        assertEquals(0, run("--tokenizer", "byte", "--bad-records", "skip", "--input", bad, "--output", output.toString()));
        assertTrue(err.toString().contains("1 bad record(s) skipped"), err.toString());
        assertTrue(err.toString().contains("9 documents"), err.toString());
    }

    @Test
    void wrongOptionCombinationsAreUsageErrors() {
        assertEquals(2, run("--tokenizer", "byte"));
        assertTrue(err.toString().contains("give either --text TEXT, or --input IN.jsonl with --output OUT.jsonl"));
        assertEquals(2, run("--tokenizer", "byte", "--input", "x.jsonl"));
        assertTrue(err.toString().contains("missing --output"), err.toString());
        assertEquals(2, run("--tokenizer", "/no/such/dir", "--text", "x"));
        assertTrue(err.toString().contains("/no/such/dir does not exist"), err.toString());
    }
}
