package io.dtrain.data.reader;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.dtrain.data.DataException;
import io.dtrain.data.SharedData;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** One test per file of shared/data/bad-input: a documented skip, a clear error, or (for valid files) the right documents. */
class BadInputTest {

    private static Path bad(String name) {
        return SharedData.path("bad-input/" + name);
    }

    private static List<Document> readAll(PileReader reader) {
        List<Document> docs = new ArrayList<>();
        reader.forEachRemaining(docs::add);
        return docs;
    }

    private static List<Document> readSkipping(String name, BadRecordReport[] reportOut) {
        try (PileReader r = PileReader.open(bad(name).toString(), BadRecordPolicy.SKIP)) {
            List<Document> docs = readAll(r);
            reportOut[0] = r.badRecords();
            return docs;
        }
    }

    private static DataException failOn(String name) {
        return assertThrows(DataException.class, () -> {
            try (PileReader r = PileReader.open(bad(name).toString(), BadRecordPolicy.FAIL)) {
                readAll(r);
            }
        });
    }

    private static List<Long> lines(List<Document> docs) {
        return docs.stream().map(Document::line).toList();
    }

    @ParameterizedTest
    @ValueSource(strings = {"invalid-json-line-6-of-10.jsonl", "invalid-json-line-6-of-10.jsonl.zst"})
    void invalidJsonLineIsSkippedOrFailsNamingFileAndLine(String name) {
        BadRecordReport[] report = new BadRecordReport[1];
        List<Document> docs = readSkipping(name, report);
        assertEquals(List.of(1L, 2L, 3L, 4L, 5L, 7L, 8L, 9L, 10L), lines(docs));
        assertEquals(1, report[0].count());
        BadRecordReport.BadRecord rec = report[0].records().get(0);
        assertEquals(6, rec.line());
        assertTrue(rec.file().endsWith(name), rec.toString());
        assertTrue(rec.reason().contains("not valid JSON"), rec.reason());
        assertTrue(report[0].toString().contains(name + ":6: record is not valid JSON"), report[0].toString());

        DataException e = failOn(name);
        assertTrue(e.getMessage().contains(name + ":6:"), e.getMessage());
        assertTrue(e.getMessage().contains("not valid JSON"), e.getMessage());
    }

    @Test
    void aRecordWithoutATextFieldIsSkippedOrFailsNamingItsLine() {
        BadRecordReport[] report = new BadRecordReport[1];
        List<Document> docs = readSkipping("missing-text-field-line-3-of-5.jsonl", report);
        assertEquals(List.of(1L, 2L, 4L, 5L), lines(docs));
        assertEquals(1, report[0].count());
        assertEquals(3, report[0].records().get(0).line());
        assertTrue(report[0].records().get(0).reason().contains("no \"text\" field"));
        DataException e = failOn("missing-text-field-line-3-of-5.jsonl");
        assertTrue(e.getMessage().contains("missing-text-field-line-3-of-5.jsonl:3: record has no \"text\" field"),
                e.getMessage());
    }

    @Test
    void nullAndNumberTextAreBadRecords() {
        BadRecordReport[] report = new BadRecordReport[1];
        List<Document> docs = readSkipping("non-string-text-lines-2-3-of-4.jsonl", report);
        assertEquals(List.of(1L, 4L), lines(docs));
        assertEquals(2, report[0].count());
        assertTrue(report[0].records().get(0).reason().contains("\"text\": null instead of a string"));
        assertEquals(3, report[0].records().get(1).line());
        assertTrue(report[0].records().get(1).reason().contains("\"text\": a number instead of a string"));
        DataException e = failOn("non-string-text-lines-2-3-of-4.jsonl");
        assertTrue(e.getMessage().contains("non-string-text-lines-2-3-of-4.jsonl:2:"), e.getMessage());
    }

    @ParameterizedTest
    @ValueSource(strings = {"invalid-utf8-line-2-of-4.jsonl", "invalid-utf8-line-2-of-4.jsonl.zst"})
    void invalidUtf8IsDetected(String name) {
        BadRecordReport[] report = new BadRecordReport[1];
        List<Document> docs = readSkipping(name, report);
        assertEquals(List.of(1L, 3L, 4L), lines(docs));
        assertEquals(1, report[0].count());
        assertEquals(2, report[0].records().get(0).line());
        assertTrue(report[0].records().get(0).reason().contains("not valid UTF-8"), report[0].toString());
        DataException e = failOn(name);
        assertTrue(e.getMessage().contains(name + ":2: record is not valid UTF-8"), e.getMessage());
    }

    @Test
    void eachInvalidSequenceOfTheBadLineIsCaughtOnItsOwn() throws Exception {
        // Line 2 holds FF FE, a cut E2 80 and an overlong C0 AF: remove them one kind at a time and the rest must
        // still be caught (Jackson alone lets the overlong form through).
        byte[] line = java.nio.file.Files.readAllLines(bad("invalid-utf8-line-2-of-4.jsonl"),
                java.nio.charset.StandardCharsets.ISO_8859_1).get(1).getBytes(java.nio.charset.StandardCharsets.ISO_8859_1);
        String latin = new String(line, java.nio.charset.StandardCharsets.ISO_8859_1);
        assertTrue(latin.contains("\u00FF\u00FE") && latin.contains("\u00E2\u0080") && latin.contains("\u00C0\u00AF"));
        for (String keep : List.of("\u00FF\u00FE", "\u00E2\u0080", "\u00C0\u00AF")) {
            String only = latin;
            for (String other : List.of("\u00FF\u00FE", "\u00E2\u0080", "\u00C0\u00AF")) {
                if (!other.equals(keep)) {
                    only = only.replace(other, "ok");
                }
            }
            byte[] b = only.getBytes(java.nio.charset.StandardCharsets.ISO_8859_1);
            int at = Utf8.firstInvalid(b, 0, b.length);
            assertEquals(only.indexOf(keep), at, "sequence " + keep.chars().mapToObj(Integer::toHexString).toList());
        }
    }

    @Test
    void truncatedZstdStreamNamesFileAndProgress() {
        DataException e = assertThrows(DataException.class, () -> {
            try (PileReader r = PileReader.open(bad("truncated-stream.jsonl.zst").toString(), BadRecordPolicy.SKIP)) {
                readAll(r);
            }
        });
        String m = e.getMessage();
        assertTrue(m.contains("truncated-stream.jsonl.zst"), m);
        assertTrue(m.contains("truncated or corrupt after 0 decoded bytes (0 complete lines, 0 documents)"), m);
    }

    @Test
    void plainTextWithZstdNameIsRejectedWithAHint() {
        DataException e = failOn("not-zstd-plain-text.jsonl.zst");
        assertTrue(e.getMessage().contains("not-zstd-plain-text.jsonl.zst: not a zstd file"), e.getMessage());
        assertTrue(e.getMessage().contains("starts with 7B 22"), e.getMessage());
        assertTrue(e.getMessage().contains("rename it to .jsonl"), e.getMessage());
    }

    /**
     * A 0-byte .zst is not a zstd stream (even an empty one has a frame header): read as no documents but listed with
     * the bad records under skip, refused naming the file under fail.
     */
    @Test
    void aZeroByteZstFileIsListedWithTheBadRecordsOrRefusedUnderFail() {
        String name = "empty-zero-bytes.jsonl.zst";
        BadRecordReport[] report = new BadRecordReport[1];
        try (PileReader r = PileReader.open(List.of(bad(name).toString(), bad("missing-text-field-line-3-of-5.jsonl")
                .toString()), BadRecordPolicy.SKIP, true)) {
            assertEquals(4, readAll(r).size());
            report[0] = r.badRecords();
        }
        assertEquals(2, report[0].count());
        BadRecordReport.BadRecord empty = report[0].records().get(0);
        assertEquals(0, empty.line());
        assertTrue(empty.toString().endsWith(name + ": 0 bytes, not a zstd stream (an interrupted download or copy?);"
                + " read as no documents"), empty.toString());
        assertEquals(empty, BadRecordReport.BadRecord.parse(empty.toString()), "a manifest's examples read back");
        BadRecordReport.BadRecord line3 = report[0].records().get(1);
        assertEquals(line3, BadRecordReport.BadRecord.parse(line3.toString()));

        DataException e = assertThrows(DataException.class, () -> {
            try (PileReader r = PileReader.open(List.of(bad(name).toString()), BadRecordPolicy.FAIL, false)) {
                readAll(r);
            }
        });
        assertTrue(e.getMessage().contains(name + ": 0 bytes, not a zstd stream") && e.getMessage().contains("skip"),
                e.getMessage());
    }

    @ParameterizedTest
    @ValueSource(strings = {"empty.jsonl", "empty-valid-frame.jsonl.zst"})
    void emptyFileHasZeroDocumentsButAnEmptyInputSetIsAnError(String name) {
        try (PileReader r = PileReader.open(List.of(bad(name).toString()), BadRecordPolicy.FAIL, false)) {
            assertEquals(0, readAll(r).size());
        }
        DataException e = failOn(name);
        assertTrue(e.getMessage().contains("no documents in") && e.getMessage().contains(name), e.getMessage());
        // Next to a file with documents, the empty one is simply read as zero documents.
        try (PileReader r = PileReader.open(List.of(bad(name).toString(), bad("missing-text-field-line-3-of-5.jsonl").toString()),
                BadRecordPolicy.SKIP, true)) {
            assertEquals(4, readAll(r).size());
        }
    }

    @Test
    void crlfBlankLinesAndNoFinalNewlineGiveFourDocuments() {
        List<Document> docs;
        try (PileReader r = PileReader.open(bad("valid-crlf-blank-lines-no-final-newline.jsonl").toString(),
                BadRecordPolicy.FAIL)) {
            docs = readAll(r);
        }
        assertEquals(4, docs.size());
        List<Document> reference;
        try (PileReader r = PileReader.open(bad("invalid-json-line-6-of-10.jsonl").toString(), BadRecordPolicy.SKIP)) {
            reference = readAll(r).subList(0, 4);
        }
        for (int i = 0; i < 4; i++) {
            assertEquals(reference.get(i).text(), docs.get(i).text(), "document " + i);
            assertEquals(reference.get(i).pileSetName(), docs.get(i).pileSetName());
        }
    }
}
