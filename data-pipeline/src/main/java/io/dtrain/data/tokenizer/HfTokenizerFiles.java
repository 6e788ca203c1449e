package io.dtrain.data.tokenizer;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import io.dtrain.common.AtomicFiles;
import io.dtrain.data.DataException;
import io.dtrain.data.fs.DataFiles;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A tokenizer's files as Hugging Face's {@code GPT2Tokenizer} / {@code AutoTokenizer} load them from a model
 * directory. GPT-2 BPE: the files it was loaded from ({@code vocab.json} + {@code merges.txt}, and/or
 * {@code tokenizer.json}), copied. The byte tokenizer: a byte-level BPE with no merges, whose {@code vocab.json}
 * maps GPT-2's printable character of byte b to id b and {@code <|endoftext|>} to 256, which gives exactly dtrain's
 * byte ids (each byte one token). Both get a {@code tokenizer_config.json} and {@code special_tokens_map.json}
 * naming {@code <|endoftext|>} as the BOS, EOS and unknown token, as GPT-2's do.
 */
public final class HfTokenizerFiles {
    private static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);

    /** What was written, and the end-of-text id (config.json's bos/eos_token_id). */
    public record Written(List<Path> files, int eotId) {
    }

    private HfTokenizerFiles() {
    }

    /**
     * @param kind        {@code data.tokenizer}: "byte" or "gpt2"
     * @param source      {@code data.tokenizer_dir} for gpt2: a directory or a tokenizer.json
     * @param maxLength   the model's context length (tokenizer_config's model_max_length)
     */
    public static Written write(String kind, String source, int maxLength, Path outDir) throws IOException {
        List<Path> files = new ArrayList<>();
        int eot;
        if (kind.equals("byte")) {
            eot = new ByteTokenizer().eotId();
            Map<String, Integer> vocab = new LinkedHashMap<>();
            char[] chars = Gpt2Tokenizer.byteToUnicode();
            for (int b = 0; b < 256; b++) {
                vocab.put(String.valueOf(chars[b]), b);
            }
            vocab.put(Gpt2Tokenizer.END_OF_TEXT, eot);
            files.add(write(outDir.resolve("vocab.json"), JSON.writeValueAsString(vocab) + "\n"));
            files.add(write(outDir.resolve("merges.txt"), "#version: 0.2\n"));
        } else {
            Gpt2Tokenizer tok = Gpt2Tokenizer.load(source);
            eot = tok.eotId();
            org.apache.hadoop.fs.Path location = new org.apache.hadoop.fs.Path(source);
            if (DataFiles.isFile(location)) {
                files.add(copy(location, outDir.resolve("tokenizer.json")));
            } else {
                for (String name : List.of("vocab.json", "merges.txt", "tokenizer.json")) {
                    org.apache.hadoop.fs.Path f = new org.apache.hadoop.fs.Path(location, name);
                    if (DataFiles.isFile(f)) {
                        files.add(copy(f, outDir.resolve(name)));
                    }
                }
            }
            if (!tok.decode(new int[] {eot}).equals(Gpt2Tokenizer.END_OF_TEXT)) {
                throw new DataException("tokenizer " + source + ": its end-of-document token (id " + eot + ") is not "
                        + Gpt2Tokenizer.END_OF_TEXT + ", which the exported tokenizer_config.json names");
            }
        }
        Map<String, Object> special = new LinkedHashMap<>();
        special.put("bos_token", Gpt2Tokenizer.END_OF_TEXT);
        special.put("eos_token", Gpt2Tokenizer.END_OF_TEXT);
        special.put("unk_token", Gpt2Tokenizer.END_OF_TEXT);
        Map<String, Object> config = new LinkedHashMap<>();
        config.put("tokenizer_class", "GPT2Tokenizer");
        config.put("model_max_length", maxLength);
        config.put("add_prefix_space", false);
        config.putAll(special);
        files.add(write(outDir.resolve("tokenizer_config.json"), JSON.writeValueAsString(config) + "\n"));
        files.add(write(outDir.resolve("special_tokens_map.json"), JSON.writeValueAsString(special) + "\n"));
        return new Written(files, eot);
    }

    private static Path copy(org.apache.hadoop.fs.Path from, Path to) throws IOException {
        AtomicFiles.write(to, DataFiles.readAllBytes(from));
        return to;
    }

    private static Path write(Path to, String text) throws IOException {
        AtomicFiles.writeString(to, text);
        return to;
    }
}
