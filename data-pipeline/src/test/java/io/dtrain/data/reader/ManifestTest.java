package io.dtrain.data.reader;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.dtrain.data.SharedData;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** Every document of pile-tiny (plain, raw-UTF-8, zstd, multi-frame zstd) and pile-sample/val against MANIFEST.tsv. */
class ManifestTest {

    @ParameterizedTest
    @ValueSource(strings = {"pile-tiny", "pile-sample/val"})
    void everyDocumentMatchesTheManifest(String folder) throws Exception {
        Path dir = SharedData.path(folder);
        List<String[]> manifest = readManifest(dir.resolve("MANIFEST.tsv"));
        MessageDigest sha = MessageDigest.getInstance("SHA-256");
        List<Document> docs = new ArrayList<>();
        try (PileReader reader = PileReader.open(dir.toString(), BadRecordPolicy.FAIL)) {
            reader.forEachRemaining(docs::add);
            assertEquals(0, reader.badRecords().count());
        }
        assertEquals(manifest.size(), docs.size(), "document count");
        for (int i = 0; i < docs.size(); i++) {
            String[] m = manifest.get(i);
            Document d = docs.get(i);
            String where = m[0] + ":" + m[1];
            assertEquals(m[0], Path.of(d.file()).getFileName().toString(), where);
            assertEquals(Long.parseLong(m[1]), d.line(), where);
            assertEquals(m[2], d.pileSetName(), where);
            assertEquals(Long.parseLong(m[3]), d.text().codePointCount(0, d.text().length()), where + " chars");
            byte[] utf8 = d.text().getBytes(StandardCharsets.UTF_8);
            assertEquals(Long.parseLong(m[4]), utf8.length, where + " utf8 bytes");
            assertEquals(m[5], HexFormat.of().formatHex(sha.digest(utf8)), where + " sha256");
        }
    }

    private static List<String[]> readManifest(Path tsv) throws IOException, NoSuchAlgorithmException {
        List<String> lines = Files.readAllLines(tsv, StandardCharsets.UTF_8);
        assertEquals("file", lines.get(0).split("\t")[0]);
        List<String[]> rows = new ArrayList<>();
        for (String line : lines.subList(1, lines.size())) {
            if (!line.isEmpty()) {
                rows.add(line.split("\t"));
            }
        }
        return rows;
    }
}
