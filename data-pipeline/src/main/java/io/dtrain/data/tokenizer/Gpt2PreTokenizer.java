package io.dtrain.data.tokenizer;

/**
 * GPT-2's pre-tokenizer, hand-written: splits text exactly like the regex
 * {@code 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+}
 * (as tiktoken runs it: {@code \s} is Unicode White_Space) without java.util.regex's backtracking cost.
 */
final class Gpt2PreTokenizer {
    static final byte LETTER = 0;
    static final byte NUMBER = 1;
    static final byte SPACE = 2;
    static final byte OTHER = 3;

    private static final byte[] ASCII = new byte[128];

    static {
        for (int c = 0; c < 128; c++) {
            ASCII[c] = classifySlow(c);
        }
    }

    private Gpt2PreTokenizer() {}

    /** The pieces of {@code text} as consecutive substrings (for tests and tools; the tokenizer uses {@link #pieceEnd}). */
    static java.util.List<String> split(String text) {
        char[] s = text.toCharArray();
        java.util.List<String> pieces = new java.util.ArrayList<>();
        int i = 0;
        while (i < s.length) {
            int end = pieceEnd(s, i, s.length);
            pieces.add(new String(s, i, end - i));
            i = end;
        }
        return pieces;
    }

    /** End (exclusive) of the piece that starts at {@code i}; the text ends at {@code n}. */
    static int pieceEnd(char[] s, int i, int n) {
        char c = s[i];
        if (c == '\'' && i + 1 < n) {
            char c1 = s[i + 1];
            if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') {
                return i + 2;
            }
            if (i + 2 < n) {
                char c2 = s[i + 2];
                if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) {
                    return i + 3;
                }
            }
        }
        int cp = Character.codePointAt(s, i, n);
        byte cls = classify(cp);
        if (cls != SPACE) {
            return runEnd(s, i + Character.charCount(cp), n, cls);
        }
        if (c == ' ' && i + 1 < n) {
            int next = Character.codePointAt(s, i + 1, n);
            byte nextCls = classify(next);
            if (nextCls != SPACE) {
                return runEnd(s, i + 1 + Character.charCount(next), n, nextCls);  // ' ?\p{L}+' and friends
            }
        }
        // Whitespace: all of a run that ends the text; otherwise all but its last character, which then prefixes
        // the next word (\s+(?!\S)); a single whitespace character before a non-space is taken alone (\s+).
        int j = i + 1;  // every White_Space character is in the BMP
        while (j < n && classify(s[j]) == SPACE) {
            j++;
        }
        if (j == n || j - i == 1) {
            return j;
        }
        return j - 1;
    }

    private static int runEnd(char[] s, int j, int n, byte cls) {
        while (j < n) {
            char c = s[j];
            if (c < 128) {
                if (ASCII[c] != cls) {
                    return j;
                }
                j++;
            } else {
                int cp = Character.codePointAt(s, j, n);
                if (classifySlow(cp) != cls) {
                    return j;
                }
                j += Character.charCount(cp);
            }
        }
        return j;
    }

    static byte classify(int cp) {
        return cp < 128 ? ASCII[cp] : classifySlow(cp);
    }

    private static byte classifySlow(int cp) {
        if (isWhiteSpace(cp)) {
            return SPACE;
        }
        switch (Character.getType(cp)) {
            case Character.UPPERCASE_LETTER, Character.LOWERCASE_LETTER, Character.TITLECASE_LETTER,
                    Character.MODIFIER_LETTER, Character.OTHER_LETTER:
                return LETTER;
            case Character.DECIMAL_DIGIT_NUMBER, Character.LETTER_NUMBER, Character.OTHER_NUMBER:
                return NUMBER;
            default:
                return OTHER;
        }
    }

    /** Unicode's White_Space property (what \s means in tiktoken's regex engine; differs from Character.isWhitespace). */
    static boolean isWhiteSpace(int cp) {
        return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680
                || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F
                || cp == 0x3000;
    }
}
