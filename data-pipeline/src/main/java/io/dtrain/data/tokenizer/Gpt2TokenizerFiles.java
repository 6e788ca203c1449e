package io.dtrain.data.tokenizer;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.dtrain.data.DataException;
import io.dtrain.data.fs.DataFiles;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.apache.hadoop.fs.Path;

/**
 * Reads a GPT-2 style tokenizer from disk: Hugging Face's {@code vocab.json} + {@code merges.txt}, or a
 * {@code tokenizer.json} of the same kind, into the vocabulary, the merges in rank order and the special tokens.
 * Apart from {@link Gpt2Tokenizer} because the file formats (and their one-line errors naming file and line) are a
 * different concern from tokenizing: the tokenizer checks what the vocabulary means, this class only what the files
 * say.
 */
final class Gpt2TokenizerFiles {
    private Gpt2TokenizerFiles() {
    }

    /** See {@link Gpt2Tokenizer#load(String)}. */
    static Gpt2Tokenizer load(String dirOrFile) {
        Path location = new Path(dirOrFile);
        if (DataFiles.isFile(location)) {
            return fromTokenizerJson(location);
        }
        if (!DataFiles.isDirectory(location)) {
            throw new DataException("tokenizer " + dirOrFile + " does not exist (expected a directory with"
                    + " vocab.json + merges.txt or tokenizer.json, or the path of a tokenizer.json)");
        }
        Path vocab = new Path(location, "vocab.json");
        Path merges = new Path(location, "merges.txt");
        Path json = new Path(location, "tokenizer.json");
        if (DataFiles.isFile(vocab) && DataFiles.isFile(merges)) {
            if (DataFiles.isFile(json)) {
                // Hugging Face's fast tokenizer would follow tokenizer.json: its settings must be ones we implement
                JsonNode root = readJson(json);
                refuseUnsupported(DataFiles.display(json), root, root.path("model"));
            }
            return fromVocabAndMerges(vocab, merges);
        }
        if (DataFiles.isFile(json)) {
            return fromTokenizerJson(json);
        }
        throw new DataException("tokenizer directory " + dirOrFile + " has neither vocab.json + merges.txt nor tokenizer.json");
    }

    private static Gpt2Tokenizer fromVocabAndMerges(Path vocabJson, Path mergesTxt) {
        Map<String, Integer> vocab = readVocab(vocabJson);
        List<String[]> merges = new ArrayList<>();
        String mergesName = DataFiles.display(mergesTxt);
        String[] lines = new String(DataFiles.readAllBytes(mergesTxt), StandardCharsets.UTF_8).split("\n", -1);
        for (int i = 0; i < lines.length; i++) {
            String line = lines[i].endsWith("\r") ? lines[i].substring(0, lines[i].length() - 1) : lines[i];
            if ((i == 0 && line.startsWith("#version")) || line.isEmpty()) {
                continue;
            }
            String[] pair = line.split(" ");
            if (pair.length != 2) {
                throw new DataException(mergesName + ":" + (i + 1) + ": expected two tokens separated by one space, got '"
                        + line + "'");
            }
            merges.add(pair);
        }
        Map<String, Integer> specials = new LinkedHashMap<>();
        Integer eot = vocab.get(Gpt2Tokenizer.END_OF_TEXT);
        if (eot != null) {
            specials.put(Gpt2Tokenizer.END_OF_TEXT, eot);
        }
        return new Gpt2Tokenizer(vocab, merges, specials, DataFiles.display(vocabJson.getParent()) + "/{vocab.json,merges.txt}");
    }

    private static Map<String, Integer> readVocab(Path vocabJson) {
        String name = DataFiles.display(vocabJson);
        Map<String, Integer> vocab = new HashMap<>(1 << 17);
        try (JsonParser p = new JsonFactory().createParser(DataFiles.readAllBytes(vocabJson))) {
            if (p.nextToken() != JsonToken.START_OBJECT) {
                throw new DataException(name + ": expected a JSON object mapping tokens to ids");
            }
            while (p.nextToken() == JsonToken.FIELD_NAME) {
                String token = p.currentName();
                if (p.nextToken() != JsonToken.VALUE_NUMBER_INT) {
                    throw new DataException(name + ": line " + p.currentLocation().getLineNr() + ": token '"
                            + token + "' maps to " + p.getText() + ", not an integer id");
                }
                vocab.put(token, p.getIntValue());
            }
        } catch (IOException e) {
            throw new DataException(name + ": not a valid vocab.json: " + e.getMessage(), e);
        }
        return vocab;
    }

    /**
     * Refuses what a {@code tokenizer.json} may say that this tokenizer does not do, rather than tokenize differently
     * from Hugging Face without a word: a normalizer, a pre-tokenizer other than GPT-2's (ByteLevel with its regex and
     * no prefix space), BPE options (dropout, subword prefix or suffix, byte fallback, ignore_merges), a
     * post-processor that adds tokens, and added tokens that are not special (Hugging Face splits those out of any
     * text). Supported: GPT-2's own tokenizer.json and byte-level BPEs of the same kind.
     */
    private static void refuseUnsupported(String file, JsonNode root, JsonNode model) {
        String fix = "; dtrain implements GPT-2's byte-level BPE only (use the vocab.json + merges.txt of a GPT-2"
                + " style tokenizer, or a tokenizer.json without this setting)";
        JsonNode normalizer = root.path("normalizer");
        if (!normalizer.isMissingNode() && !normalizer.isNull()) {
            throw new DataException(file + ": normalizer " + describe(normalizer) + " is not supported: dtrain"
                    + " tokenizes the text as it is, without normalization" + fix);
        }
        JsonNode pre = root.path("pre_tokenizer");
        if (!"ByteLevel".equals(pre.path("type").asText())) {
            throw new DataException(file + ": pre_tokenizer " + describe(pre) + " is not supported: only GPT-2's"
                    + " \"ByteLevel\" pre-tokenizer is" + fix);
        }
        if (pre.path("add_prefix_space").asBoolean(false)) {
            throw new DataException(file + ": pre_tokenizer.add_prefix_space=true is not supported (GPT-2 uses false)" + fix);
        }
        if (!pre.path("use_regex").asBoolean(true)) {
            throw new DataException(file + ": pre_tokenizer.use_regex=false is not supported: dtrain always splits"
                    + " the text with GPT-2's pre-tokenizer regex" + fix);
        }
        if (model.hasNonNull("dropout") && model.path("dropout").asDouble() != 0) {
            throw new DataException(file + ": model.dropout=" + model.path("dropout") + " (BPE dropout) is not supported" + fix);
        }
        for (String key : List.of("continuing_subword_prefix", "end_of_word_suffix")) {
            if (!model.path(key).asText("").isEmpty()) {
                throw new DataException(file + ": model." + key + "=" + model.path(key) + " is not supported" + fix);
            }
        }
        for (String key : List.of("byte_fallback", "ignore_merges")) {
            if (model.path(key).asBoolean(false)) {
                throw new DataException(file + ": model." + key + "=true is not supported" + fix);
            }
        }
        JsonNode post = root.path("post_processor");
        if (!post.isMissingNode() && !post.isNull() && !"ByteLevel".equals(post.path("type").asText())) {
            throw new DataException(file + ": post_processor " + describe(post) + " is not supported: it adds tokens"
                    + " around each sequence, whereas dtrain appends only the end-of-document token" + fix);
        }
        for (JsonNode added : root.path("added_tokens")) {
            if (!added.path("special").asBoolean(false)) {
                throw new DataException(file + ": added token " + added.path("content") + " (id " + added.path("id")
                        + ") is not special: Hugging Face splits it out of any text before BPE, dtrain does not" + fix);
            }
        }
    }

    private static JsonNode readJson(Path path) {
        try {
            return new ObjectMapper().readTree(DataFiles.readAllBytes(path));
        } catch (IOException e) {
            throw new DataException(DataFiles.display(path) + ": not valid JSON: " + e.getMessage(), e);
        }
    }

    private static String describe(JsonNode node) {
        String type = node.path("type").asText("");
        return type.isEmpty() ? node.toString() : "\"" + type + "\"";
    }

    /** A Hugging Face {@code tokenizer.json} with a BPE model and the ByteLevel pre-tokenizer (GPT-2 family). */
    private static Gpt2Tokenizer fromTokenizerJson(Path path) {
        String file = DataFiles.display(path);
        JsonNode root = readJson(path);
        JsonNode model = root.path("model");
        if (!"BPE".equals(model.path("type").asText("BPE")) || !model.path("vocab").isObject()) {
            throw new DataException(file + ": model.type must be \"BPE\" with a model.vocab object (got type "
                    + model.path("type") + ")");
        }
        refuseUnsupported(file, root, model);
        Map<String, Integer> vocab = new HashMap<>(1 << 17);
        model.path("vocab").fields().forEachRemaining(e -> vocab.put(e.getKey(), e.getValue().asInt()));
        List<String[]> merges = new ArrayList<>();
        int index = 0;
        for (JsonNode m : model.path("merges")) {
            index++;
            String[] pair = m.isArray() ? new String[] {m.path(0).asText(), m.path(1).asText()} : m.asText().split(" ");
            if (pair.length != 2 || (m.isArray() && m.size() != 2)) {
                throw new DataException(file + ": model.merges[" + (index - 1) + "] is not a pair: " + m);
            }
            merges.add(pair);
        }
        Map<String, Integer> specials = new LinkedHashMap<>();
        for (JsonNode added : root.path("added_tokens")) {
            if (added.path("special").asBoolean(false)) {
                specials.put(added.path("content").asText(), added.path("id").asInt());
            }
        }
        vocab.keySet().removeAll(specials.keySet());
        return new Gpt2Tokenizer(vocab, merges, specials, file);
    }
}
