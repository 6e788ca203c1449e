package io.dtrain.launcher;

import io.dtrain.data.loader.PackedTokenDataset;
import io.dtrain.data.loader.TokenDatasets;
import io.dtrain.data.reader.BadRecordPolicy;
import io.dtrain.data.tokenizer.ByteTokenizer;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The README's first command, end to end through the CLI: gpt-tiny on the built-in sample corpus ends with a
 * validation loss below the unigram entropy of its training bytes; eval and generate then use its checkpoint.
 */
class GptTinyEndToEndTest {
    @TempDir
    static Path tmp;
    static Path runDir;
    static Cli train;

    @BeforeAll
    static void trainGptTiny() {
        runDir = tmp.resolve("gpt-tiny");
        train = Cli.run("train", "--config", "configs/gpt-tiny.yaml", "--set", "output.dir=" + runDir);
    }

    static double lastMatch(String text, String regex) {
        Matcher m = Pattern.compile(regex).matcher(text);
        double v = Double.NaN;
        while (m.find()) {
            v = Double.parseDouble(m.group(1));
        }
        return v;
    }

    @Test
    void validationLossEndsBelowTheUnigramEntropyOfTheTrainingBytes() {
        assertEquals(0, train.exitCode(), train.toString());
        PackedTokenDataset ds = TokenDatasets.open("data/pile-tiny/train", new ByteTokenizer(), 128, BadRecordPolicy.SKIP);
        long[] counts = new long[257];
        for (long i = 0; i < ds.numTokens(); i++) {
            counts[ds.token(i)]++;
        }
        double entropy = 0;
        for (long c : counts) {
            if (c > 0) {
                double p = (double) c / ds.numTokens();
                entropy -= p * Math.log(p);
            }
        }
        double val = lastMatch(train.out(), "final val loss (\\d+\\.\\d+)");
        System.out.printf("gpt-tiny: final val loss %.4f nats, unigram entropy of the training bytes %.4f nats%n", val, entropy);
        assertTrue(val < entropy, "val loss " + val + " must be below the unigram entropy " + entropy + "\n" + train);
        assertTrue(train.out().contains("resolved config"), train.out());
    }

    @Test
    void evalAndGenerateUseTheCheckpoint() {
        assertEquals(0, train.exitCode(), train.toString());
        Cli eval = Cli.run("eval", "--checkpoint", runDir.toString());
        assertEquals(0, eval.exitCode(), eval.toString());
        double evalLoss = lastMatch(eval.out(), "val loss (\\d+\\.\\d+)");
        double trainEval = lastMatch(train.out(), "final val loss (\\d+\\.\\d+)");
        assertEquals(trainEval, evalLoss, 1e-4, "eval of the final checkpoint equals the final evaluation in training");

        Cli gen = Cli.run("generate", "--checkpoint", runDir.toString(), "--prompt", "The ", "--max-tokens", "40",
                "--temperature", "0.8", "--top-k", "20", "--seed", "7");
        assertEquals(0, gen.exitCode(), gen.toString());
        assertTrue(gen.out().startsWith("The "), gen.out());
        assertTrue(gen.out().strip().length() > 10, gen.out());
        Cli again = Cli.run("generate", "--checkpoint", runDir.toString(), "--prompt", "The ", "--max-tokens", "40",
                "--temperature", "0.8", "--top-k", "20", "--seed", "7");
        assertEquals(gen.out(), again.out(), "same seed, same text");
    }

    @Test
    void aSecondFreshRunInTheSameDirectoryIsRefusedWithAHint() {
        assertEquals(0, train.exitCode(), train.toString());
        Cli again = Cli.run("train", "--config", "configs/gpt-tiny.yaml", "--set", "output.dir=" + runDir);
        assertEquals(2, again.exitCode(), again.toString());
        assertTrue(again.err().contains("already holds checkpoints: pass --resume"), again.err());
        assertTrue(Files.exists(runDir.resolve("checkpoints/latest")), "nothing was deleted");
    }
}
