package io.dtrain.data.tokenizer;

import io.dtrain.data.DataException;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;

/**
 * GPT-2's byte-level BPE, giving the same ids as OpenAI's tiktoken "gpt2" encoding: text is split by GPT-2's
 * pre-tokenizer, each piece's UTF-8 bytes become one-byte tokens, and adjacent pairs are merged lowest merge rank
 * first until no listed merge applies. Loads Hugging Face's {@code vocab.json} + {@code merges.txt} or a
 * {@code tokenizer.json} of the same kind ({@link Gpt2TokenizerFiles}); the merge rules and their loop are
 * {@link BpeMerges}, the per-thread piece cache {@link PieceCache}. {@code <|endoftext|>} (50256 for GPT-2) is a
 * special token: it is only produced by {@link #encode(String, boolean)} with {@code allowSpecial}; plain
 * {@link #encode(String)} treats its spelling as ordinary text, like tiktoken's {@code encode_ordinary} and nanoGPT's
 * data preparation.
 */
public final class Gpt2Tokenizer implements Tokenizer {
    public static final String END_OF_TEXT = "<|endoftext|>";

    private final byte[][] tokenBytes;        // id -> its bytes
    private final int[] byteToId = new int[256];
    private final BpeMerges merges;
    private final Map<String, Integer> specialTokens;
    private final int eotId;
    private final String identity;
    private final ThreadLocal<PieceCache> cache = ThreadLocal.withInitial(PieceCache::new);

    /** Checks that what the files say ({@link Gpt2TokenizerFiles}) is a byte-level BPE; {@code source} names them in errors. */
    Gpt2Tokenizer(Map<String, Integer> vocab, List<String[]> mergeList, Map<String, Integer> specials, String source) {
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
        merges = new BpeMerges(ids, mergeList, byteToId, source);
        specialTokens = Map.copyOf(specials);
        Integer eot = specials.get(END_OF_TEXT);
        if (eot == null) {
            eot = vocab.get(END_OF_TEXT);
        }
        if (eot == null) {
            throw new DataException(source + ": no " + END_OF_TEXT + " token; GPT-2 style vocabularies need one");
        }
        eotId = eot;
        identity = "gpt2-bpe:vocab=" + size + ":merges=" + mergeList.size() + ":eot=" + eotId + ":sha256="
                + fingerprint(mergeList);
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
        return Gpt2TokenizerFiles.load(dirOrFile);
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
                    ids = merges.apply(memo.utf8(s, i, end), memo.utf8Length);
                    memo.put(s, i, end, ids);
                }
                out.addAll(ids);
            }
            i = end;
        }
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
