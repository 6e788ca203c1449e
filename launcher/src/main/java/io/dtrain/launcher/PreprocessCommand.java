package io.dtrain.launcher;

import io.dtrain.common.ByteSizes;
import io.dtrain.data.reader.BadRecordPolicy;
import io.dtrain.data.reader.InputFiles;
import io.dtrain.data.shards.Manifest;
import io.dtrain.data.shards.PreprocessPart;
import io.dtrain.data.shards.PreprocessParts;
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
                "",
                "On many machines (a Slurm array, shared storage or hdfs://): run the same command with --part I/N"
                        + " for I = 0..N-1, each part tokenizing its block of the sorted input files into the same"
                        + " --output; then 'dtrain preprocess --merge --output DIR' writes manifest.json, byte for byte"
                        + " what one run writes (examples/slurm/preprocess.sbatch).",
                ""})
public final class PreprocessCommand implements Callable<Integer> {
    @Option(names = "--input", paramLabel = "PATH|GLOB",
            description = "A .jsonl/.jsonl.zst file, a directory of them, or a glob (dir/*.jsonl.zst); local or a"
                    + " Hadoop URI.")
    String input;

    @Option(names = "--output", required = true, paramLabel = "DIR",
            description = "Output directory (created); local or a Hadoop URI such as hdfs://namenode:8020/pile-gpt2.")
    String output;

    @Option(names = "--tokenizer", paramLabel = "DIR|byte",
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

    @Option(names = "--part", paramLabel = "I/N",
            description = "Preprocess only part I (from 0) of N: the I-th block of the sorted input files, into the"
                    + " same --output as the other parts, e.g. --part $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT."
                    + " Writes DIR/parts/I-of-N.json instead of manifest.json; --merge joins the parts.")
    String part;

    @Option(names = "--merge",
            description = "Join the parts of --output (all N must have finished, with the same options) into"
                    + " manifest.json and remove DIR/parts. --input, --tokenizer and the shard options may be given"
                    + " to check them against the parts. Running it again is harmless.")
    boolean merge;

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public Integer call() {
        if (merge) {
            return merge();
        }
        if (input == null || tokenizer == null) {
            throw new UserError("dtrain preprocess needs --input and --tokenizer (or --merge --output DIR to join"
                    + " the parts of a preprocess run with --part)");
        }
        PreprocessPart thisPart = null;
        if (part != null) {
            try {
                thisPart = PreprocessPart.parse(part);
            } catch (IllegalArgumentException e) {
                throw new UserError(e.getMessage());
            }
        }
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
        Preprocessor.Result r = thisPart == null ? Preprocessor.run(options, shown)
                : Preprocessor.run(options, thisPart, shown);
        Manifest m = r.manifest();
        if (!r.badRecords().isEmpty()) {
            err.println(r.badRecords());
        }
        err.printf(Locale.ROOT, "preprocess%s: %,d documents, %,d tokens (%s) in %d shards at %s: %d written, %d kept"
                        + " from an earlier run; %.1f s, %.1f MB/s of text%n",
                thisPart == null ? "" : " part " + thisPart + " (" + m.inputs().size() + " input file(s))",
                m.documents(), m.tokens(), m.tokenType(), m.shards().size(), output, r.shardsWritten(), r.shardsKept(),
                r.seconds(), r.textBytes() / 1e6 / Math.max(1e-9, r.seconds()));
        if (thisPart != null) {
            err.printf(Locale.ROOT, "preprocess: when all %d parts have finished: dtrain preprocess --merge --output %s%n",
                    thisPart.count(), output);
        }
        err.flush();
        return 0;
    }

    /** {@code --merge}: the options given besides --output are checked against what the parts used. */
    private int merge() {
        if (part != null) {
            throw new UserError("--merge and --part exclude each other: run every --part I/N first, then --merge once");
        }
        CommandLine.ParseResult given = spec.commandLine().getParseResult();
        BadRecordPolicy policy = null;
        if (given.hasMatchedOption("--bad-records")) {
            try {
                policy = BadRecordPolicy.parse(badRecords);
            } catch (IllegalArgumentException e) {
                throw usage("--bad-records: " + e.getMessage());
            }
        }
        PreprocessParts.Expected expected = new PreprocessParts.Expected(
                input == null ? null : InputFiles.resolve(input),
                tokenizer == null ? null : Tokenizers.open(tokenizer),
                given.hasMatchedOption("--shard-size") ? ByteSizes.parse(shardSize, "--shard-size") : null,
                given.hasMatchedOption("--batch-tokens") ? batchTokens : null,
                policy);
        PreprocessParts.MergeResult r = PreprocessParts.merge(output, expected);
        Manifest m = r.manifest();
        PrintWriter err = spec.commandLine().getErr();
        if (!r.badRecords().isEmpty()) {
            err.println(r.badRecords());
        }
        err.printf(Locale.ROOT, "preprocess: %s: %,d documents, %,d tokens (%s) in %d shards of %d input file(s) at %s%n",
                r.alreadyMerged() ? "already merged, nothing to do" : "merged " + r.parts() + " parts",
                m.documents(), m.tokens(), m.tokenType(), m.shards().size(), m.inputs().size(), output);
        err.flush();
        return 0;
    }

    private CommandLine.ParameterException usage(String message) {
        return new CommandLine.ParameterException(spec.commandLine(), message);
    }
}
