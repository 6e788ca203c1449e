package io.dtrain.data.tokenizer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.dtrain.data.DataException;
import io.dtrain.data.SharedData;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Exact ids against tiktoken's "gpt2" encoding on every reference line. */
class Gpt2TokenizerTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static Path dir;
    private static Gpt2Tokenizer tok;

    @BeforeAll
    static void load() {
        dir = SharedData.path("gpt2-tokenizer");
        tok = Gpt2Tokenizer.load(dir);
    }

    private static int[] ints(JsonNode array) {
        int[] out = new int[array.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = array.get(i).asInt();
        }
        return out;
    }

    private static void assertMatchesReferences(Gpt2Tokenizer t) throws Exception {
        List<String> lines = Files.readAllLines(dir.resolve("reference-tokens.jsonl"), StandardCharsets.UTF_8);
        int checked = 0;
        for (int i = 0; i < lines.size(); i++) {
            if (lines.get(i).isBlank()) {
                continue;
            }
            JsonNode rec = JSON.readTree(lines.get(i));
            String text = rec.get("text").asText();
            int[] expected = ints(rec.get("ids"));
            int lineNo = i + 1;
            assertArrayEquals(expected, t.encode(text), () -> "reference-tokens.jsonl line " + lineNo
                    + " text " + JSON.valueToTree(text));
            assertEquals(text, t.decode(expected), "decode of line " + (i + 1));
            checked++;
        }
        assertTrue(checked > 100, "only " + checked + " reference lines");
    }

    @Test
    void everyReferenceLineGivesTiktokensIds() throws Exception {
        assertEquals(50257, tok.vocabSize());
        assertEquals(50256, tok.eotId());
        assertMatchesReferences(tok);
    }

    @Test
    void specialTokensAsTextOrAllowed() throws Exception {
        List<String> lines = Files.readAllLines(dir.resolve("reference-special-tokens.jsonl"), StandardCharsets.UTF_8);
        for (String line : lines) {
            if (line.isBlank()) {
                continue;
            }
            JsonNode rec = JSON.readTree(line);
            String text = rec.get("text").asText();
            assertArrayEquals(ints(rec.get("ids_as_text")), tok.encode(text), "as text: " + text);
            assertArrayEquals(ints(rec.get("ids_as_text")), tok.encode(text, false), "as text: " + text);
            assertArrayEquals(ints(rec.get("ids_special_allowed")), tok.encode(text, true), "allowed: " + text);
            assertEquals(text, tok.decode(ints(rec.get("ids_special_allowed"))));
        }
    }

    @Test
    void tokenizerJsonOfTheSameModelGivesTheSameIds(@TempDir Path tmp) throws Exception {
        ObjectNode root = JSON.createObjectNode();
        root.put("version", "1.0");
        ArrayNode added = root.putArray("added_tokens");
        added.addObject().put("id", 50256).put("content", "<|endoftext|>").put("special", true);
        root.putObject("pre_tokenizer").put("type", "ByteLevel").put("add_prefix_space", false).put("use_regex", true);
        ObjectNode model = root.putObject("model");
        model.put("type", "BPE");
        model.set("vocab", JSON.readTree(dir.resolve("vocab.json").toFile()));
        ArrayNode merges = model.putArray("merges");
        List<String> mergeLines = Files.readAllLines(dir.resolve("merges.txt"), StandardCharsets.UTF_8);
        for (int i = 1; i < mergeLines.size(); i++) {
            if (!mergeLines.get(i).isEmpty()) {
                if (i % 2 == 0) {
                    merges.add(mergeLines.get(i));                        // "a b" (older files)
                } else {
                    String[] p = mergeLines.get(i).split(" ");
                    merges.addArray().add(p[0]).add(p[1]);                // ["a", "b"] (newer files)
                }
            }
        }
        Path file = tmp.resolve("tokenizer.json");
        JSON.writeValue(file.toFile(), root);
        Gpt2Tokenizer fromJson = Gpt2Tokenizer.load(tmp);
        assertEquals(tok.identity(), fromJson.identity());
        assertEquals(50256, fromJson.eotId());
        assertArrayEquals(new int[] {15496, 50256, 10603}, fromJson.encode("Hello<|endoftext|>World", true));
        assertMatchesReferences(fromJson);

        root.with("pre_tokenizer").put("type", "Metaspace");
        JSON.writeValue(file.toFile(), root);
        DataException e = assertThrows(DataException.class, () -> Gpt2Tokenizer.load(file));
        assertTrue(e.getMessage().contains("ByteLevel"), e.getMessage());
    }

    @Test
    void badTokenizerFilesGiveClearErrors(@TempDir Path tmp) throws Exception {
        DataException e = assertThrows(DataException.class, () -> Gpt2Tokenizer.load(tmp));
        assertTrue(e.getMessage().contains("neither vocab.json + merges.txt nor tokenizer.json"), e.getMessage());
        Files.copy(dir.resolve("vocab.json"), tmp.resolve("vocab.json"));
        Files.writeString(tmp.resolve("merges.txt"), "#version: 0.2\n\u0120 t\nthis line is wrong\n");
        e = assertThrows(DataException.class, () -> Gpt2Tokenizer.load(tmp));
        assertTrue(e.getMessage().contains("merges.txt:3:"), e.getMessage());
    }

    /** tokenizer.json settings this tokenizer does not implement are refused, naming the setting, never ignored. */
    @Test
    void unsupportedTokenizerJsonSettingsAreRefusedNamingThem(@TempDir Path tmp) throws Exception {
        Map<String, java.util.function.Consumer<ObjectNode>> settings = new java.util.LinkedHashMap<>();
        settings.put("normalizer \"NFC\" is not supported", r -> r.putObject("normalizer").put("type", "NFC"));
        settings.put("pre_tokenizer.use_regex=false is not supported", r -> r.with("pre_tokenizer").put("use_regex", false));
        settings.put("pre_tokenizer \"Sequence\" is not supported", r -> r.putObject("pre_tokenizer").put("type", "Sequence"));
        settings.put("pre_tokenizer.add_prefix_space=true is not supported", r -> r.with("pre_tokenizer").put("add_prefix_space", true));
        settings.put("model.dropout=0.1 (BPE dropout) is not supported", r -> r.with("model").put("dropout", 0.1));
        settings.put("model.continuing_subword_prefix=\"##\" is not supported", r -> r.with("model").put("continuing_subword_prefix", "##"));
        settings.put("model.byte_fallback=true is not supported", r -> r.with("model").put("byte_fallback", true));
        settings.put("post_processor \"TemplateProcessing\" is not supported", r -> r.putObject("post_processor").put("type", "TemplateProcessing"));
        settings.put("added token \"<pad>\" (id 3) is not special", r -> r.withArray("added_tokens").addObject()
                .put("id", 3).put("content", "<pad>").put("special", false));
        for (Map.Entry<String, java.util.function.Consumer<ObjectNode>> s : settings.entrySet()) {
            ObjectNode root = minimalTokenizerJson();
            JSON.writeValue(tmp.resolve("tokenizer.json").toFile(), root);
            Gpt2Tokenizer.load(tmp.resolve("tokenizer.json").toString());   // the plain file loads
            s.getValue().accept(root);
            JSON.writeValue(tmp.resolve("tokenizer.json").toFile(), root);
            DataException e = assertThrows(DataException.class, () -> Gpt2Tokenizer.load(tmp.resolve("tokenizer.json").toString()));
            assertTrue(e.getMessage().contains(s.getKey()), s.getKey() + " in: " + e.getMessage());
            assertTrue(e.getMessage().contains("tokenizer.json: "), "names the file: " + e.getMessage());
        }
        // Beside vocab.json + merges.txt, a tokenizer.json (which Hugging Face's fast tokenizer follows) is checked too.
        Files.copy(dir.resolve("vocab.json"), tmp.resolve("vocab.json"));
        Files.copy(dir.resolve("merges.txt"), tmp.resolve("merges.txt"));
        ObjectNode nfc = minimalTokenizerJson();
        nfc.putObject("normalizer").put("type", "NFC");
        JSON.writeValue(tmp.resolve("tokenizer.json").toFile(), nfc);
        DataException e = assertThrows(DataException.class, () -> Gpt2Tokenizer.load(tmp.toString()));
        assertTrue(e.getMessage().contains("normalizer \"NFC\""), e.getMessage());
    }

    /** A byte-level BPE of the 256 byte tokens and <|endoftext|>, no merges, and GPT-2's pre-tokenizer. */
    private static ObjectNode minimalTokenizerJson() {
        ObjectNode root = JSON.createObjectNode();
        root.putNull("normalizer");
        root.putObject("pre_tokenizer").put("type", "ByteLevel").put("add_prefix_space", false).put("trim_offsets", true)
                .put("use_regex", true);
        root.putObject("post_processor").put("type", "ByteLevel").put("trim_offsets", false);
        ObjectNode model = root.putObject("model");
        model.put("type", "BPE").putNull("dropout").putNull("continuing_subword_prefix").put("byte_fallback", false);
        ObjectNode vocab = model.putObject("vocab");
        char[] chars = Gpt2Tokenizer.byteToUnicode();
        for (int b = 0; b < 256; b++) {
            vocab.put(String.valueOf(chars[b]), b);
        }
        model.putArray("merges");
        root.putArray("added_tokens").addObject().put("id", 256).put("content", "<|endoftext|>").put("special", true);
        return root;
    }
}
