package io.dtrain.data.tokenizer;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.dtrain.data.DataException;
import io.dtrain.data.fs.DataFiles;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.apache.hadoop.fs.Path;

/**
 * GPT-2's byte-level BPE, giving the same ids as OpenAI's tiktoken "gpt2" encoding: text is split by GPT-2's
 * pre-tokenizer, each piece's UTF-8 bytes become one-byte tokens, and adjacent pairs are merged lowest merge rank
 * first until no listed merge applies. Loads Hugging Face's {@code vocab.json} + {@code merges.txt} or a
 * {@code tokenizer.json} of the same kind. {@code <|endoftext|>} (50256 for GPT-2) is a special token: it is only
 * produced by {@link #encode(String, boolean)} with {@code allowSpecial}; plain {@link #encode(String)} treats its
 * spelling as ordinary text, like tiktoken's {@code encode_ordinary} and nanoGPT's data preparation.
 */
public final class Gpt2Tokenizer implements Tokenizer {
    public static final String END_OF_TEXT = "<|endoftext|>";

    private final byte[][] tokenBytes;        // id -> its bytes
    private final int[] byteToId = new int[256];
    private final PairRanks pairRanks;        // (left id, right id) -> merge rank
    private final int[] mergedId;             // merge rank -> id of the merged token
    private final Map<String, Integer> specialTokens;
    private final int eotId;
    private final String identity;
    private final ThreadLocal<PieceCache> cache = ThreadLocal.withInitial(PieceCache::new);

    private Gpt2Tokenizer(Map<String, Integer> vocab, List<String[]> merges, Map<String, Integer> specials, String source) {
        int[] unicodeToByte = unicodeToByte();
        int size = 0;
        for (int id : vocab.values()) {
            size = Math.max(size, id + 1);
        }
        for (int id : specials.values()) {
            size = Math.max(size, id + 1);
        }
        tokenBytes = new byte[size][];
        Map<String, Integer> ids = new HashMap<>(vocab);
        for (Map.Entry<String, Integer> e : vocab.entrySet()) {
            tokenBytes[e.getValue()] = toBytes(e.getKey(), unicodeToByte, source);
        }
        for (Map.Entry<String, Integer> e : specials.entrySet()) {
            tokenBytes[e.getValue()] = e.getKey().getBytes(StandardCharsets.UTF_8);
        }
        for (int id = 0; id < size; id++) {
            if (tokenBytes[id] == null) {
                throw new DataException(source + ": no token has id " + id + " (ids must be 0.." + (size - 1) + ")");
            }
        }
        char[] byteToUnicode = byteToUnicode();
        for (int b = 0; b < 256; b++) {
            Integer id = vocab.get(String.valueOf(byteToUnicode[b]));
            if (id == null) {
                throw new DataException(source + ": the vocabulary lacks the single-byte token for byte " + b
                        + " ('" + byteToUnicode[b] + "'); is this a byte-level BPE vocabulary?");
            }
            byteToId[b] = id;
        }
        pairRanks = new PairRanks(merges.size());
        mergedId = new int[merges.size()];
        for (int rank = 0; rank < merges.size(); rank++) {
            String[] m = merges.get(rank);
            Integer left = ids.get(m[0]);
            Integer right = ids.get(m[1]);
            Integer merged = ids.get(m[0] + m[1]);
            if (left == null || right == null || merged == null) {
                throw new DataException(source + ": merge " + (rank + 1) + " '" + m[0] + " " + m[1]
                        + "' uses or makes a token that is not in the vocabulary");
            }
            pairRanks.putIfAbsent(left, right, rank);
            mergedId[rank] = merged;
        }
        specialTokens = Map.copyOf(specials);
        Integer eot = specials.get(END_OF_TEXT);
        if (eot == null) {
            eot = vocab.get(END_OF_TEXT);
        }
        if (eot == null) {
            throw new DataException(source + ": no " + END_OF_TEXT + " token; GPT-2 style vocabularies need one");
        }
        eotId = eot;
        identity = "gpt2-bpe:vocab=" + size + ":merges=" + merges.size() + ":eot=" + eotId + ":sha256="
                + fingerprint(merges);
    }

    // ---- loading -------------------------------------------------------------------------------------------

    /** {@link #load(String)} for a local path. */
    public static Gpt2Tokenizer load(java.nio.file.Path dirOrFile) {
        return load(dirOrFile.toString());
    }

    /**
     * Loads {@code dir/vocab.json} + {@code dir/merges.txt} if both exist, else {@code dir/tokenizer.json}; also
     * accepts the path of a tokenizer.json. A local path or any Hadoop URI.
     */
    public static Gpt2Tokenizer load(String dirOrFile) {
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
        if (DataFiles.isFile(vocab) && DataFiles.isFile(merges)) {
            return fromVocabAndMerges(vocab, merges);
        }
        Path json = new Path(location, "tokenizer.json");
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
        Integer eot = vocab.get(END_OF_TEXT);
        if (eot != null) {
            specials.put(END_OF_TEXT, eot);
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

    /** A Hugging Face {@code tokenizer.json} with a BPE model and the ByteLevel pre-tokenizer (GPT-2 family). */
    private static Gpt2Tokenizer fromTokenizerJson(Path path) {
        String file = DataFiles.display(path);
        JsonNode root;
        try {
            root = new ObjectMapper().readTree(DataFiles.readAllBytes(path));
        } catch (IOException e) {
            throw new DataException(file + ": not valid JSON: " + e.getMessage(), e);
        }
        JsonNode model = root.path("model");
        if (!"BPE".equals(model.path("type").asText("BPE")) || !model.path("vocab").isObject()) {
            throw new DataException(file + ": model.type must be \"BPE\" with a model.vocab object (got type "
                    + model.path("type") + ")");
        }
        JsonNode pre = root.path("pre_tokenizer");
        if (!"ByteLevel".equals(pre.path("type").asText())) {
            throw new DataException(file + ": pre_tokenizer.type is " + pre.path("type")
                    + ", but only GPT-2 style \"ByteLevel\" tokenizers are supported");
        }
        if (pre.path("add_prefix_space").asBoolean(false)) {
            throw new DataException(file + ": pre_tokenizer.add_prefix_space=true is not supported (GPT-2 uses false)");
        }
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

    // ---- encoding ------------------------------------------------------------------------------------------

    @Override
    public int[] encode(String text) {
        IntList out = new IntList(Math.max(16, text.length() / 3));
        encodeOrdinary(text.toCharArray(), 0, text.length(), out);
        return out.toArray();
    }

    /** With {@code allowSpecial}, special-token spellings such as {@code <|endoftext|>} become their ids. */
    public int[] encode(String text, boolean allowSpecial) {
        if (!allowSpecial) {
            return encode(text);
        }
        IntList out = new IntList(Math.max(16, text.length() / 3));
        char[] chars = text.toCharArray();
        int from = 0;
        while (from < text.length()) {
            int best = -1;
            String bestToken = null;
            for (String special : specialTokens.keySet()) {
                int at = text.indexOf(special, from);
                if (at >= 0 && (best < 0 || at < best || (at == best && special.length() > bestToken.length()))) {
                    best = at;
                    bestToken = special;
                }
            }
            if (best < 0) {
                break;
            }
            encodeOrdinary(chars, from, best, out);
            out.add(specialTokens.get(bestToken));
            from = best + bestToken.length();
        }
        encodeOrdinary(chars, from, text.length(), out);
        return out.toArray();
    }

    private void encodeOrdinary(char[] s, int from, int to, IntList out) {
        PieceCache memo = cache.get();
        int i = from;
        while (i < to) {
            int end = Gpt2PreTokenizer.pieceEnd(s, i, to);
            if (end - i == 1 && s[i] < 128) {
                out.add(byteToId[s[i]]);
            } else {
                int[] ids = memo.get(s, i, end);
                if (ids == null) {
                    ids = bpe(memo.utf8(s, i, end), memo.utf8Length);
                    memo.put(s, i, end, ids);
                }
                out.addAll(ids);
            }
            i = end;
        }
    }

    /** Merges the piece's byte tokens, always the adjacent pair of lowest merge rank first (leftmost on ties). */
    int[] bpe(byte[] bytes, int length) {
        int len = length;
        int[] ids = new int[len];
        for (int k = 0; k < len; k++) {
            ids[k] = byteToId[bytes[k] & 0xFF];
        }
        if (len < 2) {
            return ids;
        }
        int[] ranks = new int[len - 1];  // ranks[k] = rank of merging ids[k] and ids[k + 1]
        for (int k = 0; k < len - 1; k++) {
            ranks[k] = pairRanks.get(ids[k], ids[k + 1]);
        }
        while (len > 1) {
            int best = 0;
            for (int k = 1; k < len - 1; k++) {
                if (ranks[k] < ranks[best]) {
                    best = k;
                }
            }
            int rank = ranks[best];
            if (rank == Integer.MAX_VALUE) {
                break;
            }
            ids[best] = mergedId[rank];
            System.arraycopy(ids, best + 2, ids, best + 1, len - best - 2);
            System.arraycopy(ranks, best + 1, ranks, best, len - best - 2);
            len--;
            if (best > 0) {
                ranks[best - 1] = pairRanks.get(ids[best - 1], ids[best]);
            }
            if (best < len - 1) {
                ranks[best] = pairRanks.get(ids[best], ids[best + 1]);
            }
        }
        return len == ids.length ? ids : Arrays.copyOf(ids, len);
    }

    // ---- decoding and metadata -----------------------------------------------------------------------------

    @Override
    public String decode(int[] ids) {
        ByteArrayOutputStream out = new ByteArrayOutputStream(ids.length * 4);
        for (int id : ids) {
            if (id < 0 || id >= tokenBytes.length) {
                throw new IllegalArgumentException("token id " + id + " is outside the vocabulary 0.." + (tokenBytes.length - 1));
            }
            out.writeBytes(tokenBytes[id]);
        }
        return out.toString(StandardCharsets.UTF_8);
    }

    /** The bytes of one token (a UTF-8 fragment for byte-level tokens). */
    public byte[] tokenBytes(int id) {
        return tokenBytes[id].clone();
    }

    @Override
    public int vocabSize() {
        return tokenBytes.length;
    }

    @Override
    public int eotId() {
        return eotId;
    }

    public Map<String, Integer> specialTokens() {
        return specialTokens;
    }

    @Override
    public String identity() {
        return identity;
    }

    @Override
    public String toString() {
        return identity;
    }

    private String fingerprint(List<String[]> merges) {
        try {
            MessageDigest sha = MessageDigest.getInstance("SHA-256");
            for (byte[] t : tokenBytes) {
                sha.update((byte) t.length);
                sha.update(t);
            }
            for (String[] m : merges) {
                sha.update((m[0] + " " + m[1] + "\n").getBytes(StandardCharsets.UTF_8));
            }
            return HexFormat.of().formatHex(sha.digest(), 0, 8);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    // ---- GPT-2's byte <-> printable-character table --------------------------------------------------------

    /** GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the rest to U+0100 upwards. */
    static char[] byteToUnicode() {
        char[] map = new char[256];
        int next = 256;
        for (int b = 0; b < 256; b++) {
            boolean printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            map[b] = (char) (printable ? b : next++);
        }
        return map;
    }

    private static int[] unicodeToByte() {
        int[] inverse = new int[512];
        Arrays.fill(inverse, -1);
        char[] forward = byteToUnicode();
        for (int b = 0; b < 256; b++) {
            inverse[forward[b]] = b;
        }
        return inverse;
    }

    private static byte[] toBytes(String token, int[] unicodeToByte, String source) {
        byte[] out = new byte[token.length()];
        for (int k = 0; k < token.length(); k++) {
            char c = token.charAt(k);
            int b = c < unicodeToByte.length ? unicodeToByte[c] : -1;
            if (b < 0) {
                throw new DataException(source + ": token '" + token + "' has character U+"
                        + String.format("%04X", (int) c) + ", which is not in GPT-2's byte alphabet; this is not a"
                        + " byte-level BPE vocabulary");
            }
            out[k] = (byte) b;
        }
        return out;
    }

    /** Open-addressing map from an id pair to a merge rank; {@code Integer.MAX_VALUE} when absent. */
    private static final class PairRanks {
        private final long[] keys;
        private final int[] values;
        private final int mask;

        PairRanks(int expected) {
            int cap = Integer.highestOneBit(Math.max(4, expected * 2)) << 1;
            keys = new long[cap];
            values = new int[cap];
            mask = cap - 1;
            Arrays.fill(keys, -1L);
        }

        private static long key(int left, int right) {
            return (long) left << 32 | (right & 0xFFFFFFFFL);
        }

        private int slot(long key) {
            long h = key * 0x9E3779B97F4A7C15L;
            return (int) (h ^ (h >>> 29)) & mask;
        }

        void putIfAbsent(int left, int right, int rank) {
            long k = key(left, right);
            int s = slot(k);
            while (keys[s] != -1L) {
                if (keys[s] == k) {
                    return;  // a repeated merge line keeps its first (lowest) rank
                }
                s = (s + 1) & mask;
            }
            keys[s] = k;
            values[s] = rank;
        }

        int get(int left, int right) {
            long k = key(left, right);
            int s = slot(k);
            while (true) {
                long at = keys[s];
                if (at == k) {
                    return values[s];
                }
                if (at == -1L) {
                    return Integer.MAX_VALUE;
                }
                s = (s + 1) & mask;
            }
        }
    }

    /**
     * Piece -> ids, direct-mapped (a colliding piece replaces the old one): no per-lookup allocation and no
     * clearing pauses; common words stay because they are looked up again soon. Also holds the UTF-8 scratch buffer.
     */
    private static final class PieceCache {
        private static final int SLOTS = 1 << 18;
        private final char[][] keys = new char[SLOTS][];
        private final int[][] values = new int[SLOTS][];
        private byte[] scratch = new byte[256];
        int utf8Length;

        private static int hash(char[] s, int from, int to) {
            int h = 0x811C9DC5;
            for (int k = from; k < to; k++) {
                h = (h ^ s[k]) * 0x01000193;
            }
            return (h ^ (h >>> 15)) & (SLOTS - 1);
        }

        int[] get(char[] s, int from, int to) {
            int slot = hash(s, from, to);
            char[] key = keys[slot];
            if (key == null || !Arrays.equals(key, 0, key.length, s, from, to)) {
                return null;
            }
            return values[slot];
        }

        void put(char[] s, int from, int to, int[] ids) {
            int slot = hash(s, from, to);
            keys[slot] = Arrays.copyOfRange(s, from, to);
            values[slot] = ids;
        }

        /** UTF-8 of {@code s[from, to)} in a reused buffer (length in {@link #utf8Length}); lone surrogates become '?' as in String.getBytes. */
        byte[] utf8(char[] s, int from, int to) {
            int need = (to - from) * 3;
            if (scratch.length < need) {
                scratch = new byte[Math.max(need, scratch.length * 2)];
            }
            byte[] b = scratch;
            int n = 0;
            for (int k = from; k < to; k++) {
                char c = s[k];
                if (c < 0x80) {
                    b[n++] = (byte) c;
                } else if (c < 0x800) {
                    b[n++] = (byte) (0xC0 | c >> 6);
                    b[n++] = (byte) (0x80 | (c & 0x3F));
                } else if (Character.isHighSurrogate(c) && k + 1 < to && Character.isLowSurrogate(s[k + 1])) {
                    int cp = Character.toCodePoint(c, s[++k]);
                    b[n++] = (byte) (0xF0 | cp >> 18);
                    b[n++] = (byte) (0x80 | ((cp >> 12) & 0x3F));
                    b[n++] = (byte) (0x80 | ((cp >> 6) & 0x3F));
                    b[n++] = (byte) (0x80 | (cp & 0x3F));
                } else if (Character.isSurrogate(c)) {
                    b[n++] = '?';
                } else {
                    b[n++] = (byte) (0xE0 | c >> 12);
                    b[n++] = (byte) (0x80 | ((c >> 6) & 0x3F));
                    b[n++] = (byte) (0x80 | (c & 0x3F));
                }
            }
            utf8Length = n;
            return b;
        }
    }

    /** A growable int array. */
    private static final class IntList {
        private int[] a;
        private int size;

        IntList(int capacity) {
            a = new int[capacity];
        }

        void add(int v) {
            if (size == a.length) {
                a = Arrays.copyOf(a, a.length * 2);
            }
            a[size++] = v;
        }

        void addAll(int[] vs) {
            if (size + vs.length > a.length) {
                a = Arrays.copyOf(a, Math.max(a.length * 2, size + vs.length));
            }
            System.arraycopy(vs, 0, a, size, vs.length);
            size += vs.length;
        }

        int[] toArray() {
            return Arrays.copyOf(a, size);
        }
    }
}
