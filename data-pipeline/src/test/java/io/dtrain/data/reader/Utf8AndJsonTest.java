package io.dtrain.data.reader;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.dtrain.data.DataException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class Utf8AndJsonTest {

    private static int firstInvalid(int... bytes) {
        byte[] b = new byte[bytes.length];
        for (int i = 0; i < b.length; i++) {
            b[i] = (byte) bytes[i];
        }
        return Utf8.firstInvalid(b, 0, b.length);
    }

    @Test
    void wellFormedUtf8UpToU10FFFFHasNoInvalidByte() {
        byte[] ok = "plain ascii long enough for the fast path; é € 😀 中文 \u0000 end".getBytes(StandardCharsets.UTF_8);
        assertEquals(-1, Utf8.firstInvalid(ok, 0, ok.length));
        assertEquals(-1, firstInvalid(0xF4, 0x8F, 0xBF, 0xBF));  // U+10FFFF
        assertEquals(-1, firstInvalid(0xED, 0x9F, 0xBF));        // U+D7FF
    }

    @Test
    void malformedUtf8IsFoundAtItsFirstByte() {
        assertEquals(1, firstInvalid('a', 0xFF, 0xFE));           // never valid
        assertEquals(1, firstInvalid('a', 0xE2, 0x80));           // cut at the end
        assertEquals(1, firstInvalid('a', 0xE2, 0x80, 'b'));      // cut in the middle
        assertEquals(0, firstInvalid(0xC0, 0xAF));                // overlong '/'
        assertEquals(0, firstInvalid(0xC1, 0xBF));                // overlong
        assertEquals(0, firstInvalid(0xE0, 0x80, 0xAF));          // overlong 3-byte
        assertEquals(0, firstInvalid(0xF0, 0x80, 0x80, 0xAF));    // overlong 4-byte
        assertEquals(0, firstInvalid(0xED, 0xA0, 0x80));          // encoded surrogate U+D800
        assertEquals(0, firstInvalid(0xF4, 0x90, 0x80, 0x80));    // above U+10FFFF
        assertEquals(0, firstInvalid(0x80));                      // lone continuation byte
        assertEquals(9, firstInvalid('0', '1', '2', '3', '4', '5', '6', '7', '8', 0x80));
    }

    @Test
    void escapesIncludingSurrogatePairsDecode(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("escapes.jsonl");
        Files.writeString(f, "{\"text\": \"smile \\ud83d\\ude00 caf\\u00e9 tab\\tnl\\n esc\\u001b q\\\" bs\\\\\"}\n"
                + "{\"meta\": {\"other\": [1, {\"x\": 2}], \"pile_set_name\": \"Github\"}, \"extra\": {\"text\": 1},"
                + " \"text\": \"raw \u00e9\u4e2d\ud83d\ude00\"}\n"
                + "{\"text\": \"lone \\ud800 surrogate\"}\n", StandardCharsets.UTF_8);
        List<Document> docs = new ArrayList<>();
        BadRecordReport report;
        try (PileReader r = PileReader.open(f.toString(), BadRecordPolicy.SKIP)) {
            r.forEachRemaining(docs::add);
            report = r.badRecords();
        }
        assertEquals(2, docs.size());
        assertEquals("smile \uD83D\uDE00 caf\u00e9 tab\tnl\n esc\u001b q\" bs\\", docs.get(0).text());
        assertNull(docs.get(0).pileSetName());
        assertEquals("raw \u00e9\u4e2d\ud83d\ude00", docs.get(1).text());
        assertEquals("Github", docs.get(1).pileSetName());
        assertEquals(1, report.count());
        assertEquals(3, report.records().get(0).line());
        assertTrue(report.records().get(0).reason().contains("unpaired surrogate"), report.toString());
    }

    @Test
    void notAnObjectAndTrailingDataAreBadRecords(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("odd.jsonl");
        Files.writeString(f, "[\"text\"]\n{\"text\": \"a\"} {\"text\": \"b\"}\n\"text\"\n{\"text\": \"ok\"}\n");
        try (PileReader r = PileReader.open(f.toString(), BadRecordPolicy.SKIP)) {
            List<Document> docs = new ArrayList<>();
            r.forEachRemaining(docs::add);
            assertEquals(1, docs.size());
            assertEquals(4, docs.get(0).line());
            assertEquals(3, r.badRecords().count());
        }
    }

    @Test
    void longLinesGrowTheBuffer(@TempDir Path dir) throws Exception {
        String big = "x".repeat(300_000) + "\u00e9";
        Path f = dir.resolve("big.jsonl");
        Files.writeString(f, "{\"text\": \"" + big + "\"}\n{\"text\": \"" + big + big + "\"}\n", StandardCharsets.UTF_8);
        try (PileReader r = PileReader.open(f.toString(), BadRecordPolicy.FAIL)) {
            assertEquals(big, r.next().text());
            assertEquals(big + big, r.next().text());
            assertTrue(!r.hasNext());
        }
    }

    private static List<String> resolved(String pathOrGlob) {
        return InputFiles.resolve(pathOrGlob).stream().map(io.dtrain.data.fs.DataFiles::display).toList();
    }

    @Test
    void inputsResolveFromDirectoryGlobAndFile(@TempDir Path dir) throws Exception {
        for (String n : List.of("b.jsonl", "a.jsonl.zst", "c.txt", "sub/d.jsonl", "sub2/e.jsonl")) {
            Files.createDirectories(dir.resolve(n).getParent());
            Files.writeString(dir.resolve(n), "");
        }
        String d = dir.toString();
        assertEquals(List.of(d + "/a.jsonl.zst", d + "/b.jsonl"), resolved(d));
        assertEquals(List.of(d + "/b.jsonl"), resolved(d + "/*.jsonl"));
        assertEquals(List.of(d + "/sub/d.jsonl"), resolved(d + "/sub/*.jsonl"));
        assertEquals(List.of(d + "/sub/d.jsonl", d + "/sub2/e.jsonl"), resolved(d + "/*/*.jsonl"));
        assertEquals(List.of(d + "/b.jsonl", d + "/c.txt"), resolved(d + "/{b.jsonl,c.txt}"));
        assertEquals(List.of(d + "/c.txt"), resolved(d + "/c.txt"));
        assertEquals(List.of(d + "/c.txt"), resolved("file://" + d + "/c.txt"));
        DataException e = assertThrows(DataException.class, () -> InputFiles.resolve(d + "/nothing-*.jsonl"));
        assertTrue(e.getMessage().contains("matches no files"), e.getMessage());
        e = assertThrows(DataException.class, () -> InputFiles.resolve(d + "/missing.jsonl"));
        assertTrue(e.getMessage().contains("does not exist"), e.getMessage());
        e = assertThrows(DataException.class, () -> InputFiles.resolve(d + "/sub2/../c.txt/x"));
        assertTrue(e.getMessage().contains("does not exist") || e.getMessage().contains("cannot list"), e.getMessage());
    }
}
