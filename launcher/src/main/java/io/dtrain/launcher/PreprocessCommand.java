package io.dtrain.launcher;

import io.dtrain.common.ByteSizes;
import io.dtrain.data.reader.BadRecordPolicy;
import io.dtrain.data.shards.Manifest;
import io.dtrain.data.shards.Preprocessor;
import io.dtrain.data.shards.Progress;
import io.dtrain.data.tokenizer.Tokenizer;
import io.dtrain.data.tokenizer.Tokenizers;
import java.io.PrintWriter;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code dtrain preprocess}: Pile-format text to tokenized Arrow shards that training memory-maps. */
@Command(name = "preprocess",
        mixinStandardHelpOptions = true,
        sortOptions = false,
        description = {
                "Tokenize Pile-format input (.jsonl / .jsonl.zst; local or hdfs://) into Apache Arrow token shards"
                        + " plus manifest.json. Point data.train / data.val at the output directory to train on it.",
                "",
                "Examples:",
                "  dtrain preprocess --input ../shared/data/pile-sample/train --output data/pile-sample-gpt2/train \\",
                "      --tokenizer ../shared/data/gpt2-tokenizer",
                "  dtrain preprocess --input 'hdfs://nn:8020/pile/train/*.jsonl.zst' --output hdfs://nn:8020/pile-gpt2/train \\",
                "      --tokenizer data/gpt2 --shard-size 1GiB --workers 32",
                "",
                "Input NAME.jsonl.zst becomes NAME-00000.arrow, NAME-00001.arrow, ...; each shard is written under a"
                        + " temporary name and renamed when complete. Re-running the same command keeps complete"
                        + " shards and continues where an interrupted run stopped. manifest.json is written last.",
                ""})
public final class PreprocessCommand implements Callable<Integer> {
    @Option(names = "--input", required = true, paramLabel = "PATH|GLOB",
            description = "A .jsonl/.jsonl.zst file, a directory of them, or a glob (dir/*.jsonl.zst); local or a"
                    + " Hadoop URI.")
    String input;

    @Option(names = "--output", required = true, paramLabel = "DIR",
            description = "Output directory (created); local or a Hadoop URI such as hdfs://namenode:8020/pile-gpt2.")
    String output;

    @Option(names = "--tokenizer", required = true, paramLabel = "DIR|byte",
            description = "'byte', or a directory with GPT-2 style vocab.json + merges.txt (or tokenizer.json).")
    String tokenizer;

    @Option(names = "--shard-size", defaultValue = "1GiB", paramLabel = "SIZE",
            description = "Target size of token data per shard: bytes or 512MiB, 1GiB, 2GB (KiB/MiB/GiB are powers of 1024,"
                    + " KB/MB/GB of 1000; default: ${DEFAULT-VALUE};"
                    + " at most 2 GiB - 64 MiB). A shard ends after the document that reaches it.")
    String shardSize;

    @Option(names = "--workers", paramLabel = "N",
            description = "Tokenizer threads (default: all cores).")
    Integer workers;

    @Option(names = "--batch-tokens", defaultValue = "4194304", paramLabel = "N",
            description = "Tokens per Arrow record batch (default: ${DEFAULT-VALUE}).")
    int batchTokens;

    @Option(names = "--bad-records", defaultValue = "skip", paramLabel = "skip|fail",
            description = "Lines that are not valid records: 'skip' (default, as training does) leaves them out and"
                    + " counts them in the manifest; 'fail' stops naming file and line.")
    String badRecords;

    @Option(names = "--progress", defaultValue = "auto", paramLabel = "auto|bar|lines|off",
            description = "Progress on stderr: a bar on a terminal, a line every 30 s otherwise (default: auto).")
    String progress;

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public Integer call() {
        BadRecordPolicy policy;
        try {
            policy = BadRecordPolicy.parse(badRecords);
        } catch (IllegalArgumentException e) {
            throw usage("--bad-records: " + e.getMessage());
        }
        long shardBytes = ByteSizes.parse(shardSize, "--shard-size");
        int threads = workers != null ? workers : Runtime.getRuntime().availableProcessors();
        Preprocessor.Options options;
        Tokenizer tok = Tokenizers.open(tokenizer);
        try {
            options = new Preprocessor.Options(input, output, tok, shardBytes, threads, policy, batchTokens);
        } catch (IllegalArgumentException e) {
            throw usage(e.getMessage());
        }
        PrintWriter err = spec.commandLine().getErr();
        Progress shown = switch (progress.toLowerCase(Locale.ROOT)) {
            case "auto" -> Progress.auto(err);
            case "bar" -> new Progress(Progress.Mode.BAR, err, 500);
            case "lines" -> new Progress(Progress.Mode.LINES, err, 30_000);
            case "off" -> Progress.off();
            default -> throw usage("--progress must be auto, bar, lines or off, got '" + progress + "'");
        };
        Preprocessor.Result r = Preprocessor.run(options, shown);
        Manifest m = r.manifest();
        if (!r.badRecords().isEmpty()) {
            err.println(r.badRecords());
        }
        err.printf(Locale.ROOT, "preprocess: %,d documents, %,d tokens (%s) in %d shards at %s: %d written, %d kept"
                        + " from an earlier run; %.1f s, %.1f MB/s of text%n",
                m.documents(), m.tokens(), m.tokenType(), m.shards().size(), output, r.shardsWritten(), r.shardsKept(),
                r.seconds(), r.textBytes() / 1e6 / Math.max(1e-9, r.seconds()));
        err.flush();
        return 0;
    }

    private CommandLine.ParameterException usage(String message) {
        return new CommandLine.ParameterException(spec.commandLine(), message);
    }
}
