package io.dtrain.data.tokenizer;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/** The hand-written matcher against what GPT-2's regex does on the cases where it is easy to get wrong. */
class Gpt2PreTokenizerTest {

    private static void assertSplit(String text, String... pieces) {
        assertEquals(List.of(pieces), Gpt2PreTokenizer.split(text), "split of " + text);
    }

    @Test
    void wordsNumbersAndPunctuationTakeOneLeadingSpace() {
        assertSplit("Hello world", "Hello", " world");
        assertSplit("123abc 45.6", "123", "abc", " 45", ".", "6");
        assertSplit("f(x) += y;", "f", "(", "x", ")", " +=", " y", ";");
    }

    @Test
    void contractionsAreLowercaseOnly() {
        assertSplit("it's we'll I'M", "it", "'s", " we", "'ll", " I", "'", "M");
        assertSplit("''s", "''", "s");
        assertSplit(" 's", " '", "s");
    }

    @Test
    void whitespaceRunsLeaveTheirLastCharacterToTheNextWord() {
        assertSplit("a  b", "a", " ", " b");
        assertSplit("  end  ", " ", " end", "  ");
        assertSplit("x \n\ny", "x", " \n", "\n", "y");
        assertSplit("\n\nx", "\n", "\n", "x");
        assertSplit("\t x", "\t", " x");
    }

    @Test
    void unicodeClassesFollowUnicodeNotJava() {
        assertSplit("x\u00A0y", "x", "\u00A0", "y");               // NBSP is White_Space, but only ' ' prefixes
        assertSplit("a\u001Cb", "a", "\u001C", "b");               // Java calls U+001C whitespace; Unicode does not
        assertSplit("\uD83D\uDE00\uD83D\uDE00 x", "\uD83D\uDE00\uD83D\uDE00", " x");
        assertSplit("\u4e2d\u6587 \u2163\u00BD", "\u4e2d\u6587", " \u2163\u00BD");  // Nl and No are \p{N}
        assertSplit("caf\u00e9 na\u0308ive", "caf\u00e9", " na", "\u0308", "ive");  // a combining mark is not \p{L}
    }

    @Test
    void agreesWithJavaRegexOnRandomText() {
        // java.util.regex with UNICODE_CHARACTER_CLASS (\s = White_Space) is a slow but faithful reference.
        Pattern gpt2 = Pattern.compile("'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
                Pattern.UNICODE_CHARACTER_CLASS);
        String[] alphabet = {" ", " ", "  ", "\n", "\r\n", "\t", "\u00A0", "\u3000", "\u001C", "'", "'s", "'ll", "'re",
                "a", "Zz", "\u00e9", "\u0308", "\u4e2d", "1", "\u00BD", "\u2163", ".", ",", "-", "(", "\uD83D\uDE00",
                "\u0645\u0631", "d", "t", "ve", "m"};
        Random random = new Random(2024);
        for (int round = 0; round < 3000; round++) {
            StringBuilder sb = new StringBuilder();
            int parts = 1 + random.nextInt(12);
            for (int k = 0; k < parts; k++) {
                sb.append(alphabet[random.nextInt(alphabet.length)]);
            }
            String text = sb.toString();
            List<String> expected = new ArrayList<>();
            Matcher m = gpt2.matcher(text);
            while (m.find()) {
                expected.add(m.group());
            }
            assertEquals(expected, Gpt2PreTokenizer.split(text), "split of " + text);
        }
    }
}
