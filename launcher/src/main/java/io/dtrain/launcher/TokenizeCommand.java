package io.dtrain.launcher;

import com.github.luben.zstd.ZstdOutputStream;
import io.dtrain.data.fs.DataFiles;
import io.dtrain.data.reader.BadRecordPolicy;
import io.dtrain.data.reader.PileReader;
import io.dtrain.data.tokenizer.Gpt2Tokenizer;
import io.dtrain.data.tokenizer.Tokenizer;
import io.dtrain.data.tokenizer.Tokenizers;
import io.dtrain.metrics.JsonLines;
import java.io.BufferedOutputStream;
import java.io.OutputStream;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import org.apache.hadoop.fs.Path;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code dtrain tokenize}: text or a JSON Lines file to token ids, with the tokenizer training would use. */
@Command(name = "tokenize",
        mixinStandardHelpOptions = true,
        sortOptions = false,
        description = {
                "Turn text into token ids with the byte or a GPT-2 BPE tokenizer.",
                "",
                "Examples:",
                "  dtrain tokenize --tokenizer data/gpt2 --text \"Hello world\"",
                "  dtrain tokenize --tokenizer byte --input docs.jsonl.zst --output ids.jsonl",
                "",
                "With --input, each {\"text\": ...} line becomes {\"ids\": [...]} in the same order. The output is"
                        + " written to a temporary file and renamed when complete; an output name ending in .zst is"
                        + " zstd-compressed.",
                ""})
public final class TokenizeCommand implements Callable<Integer> {

    @Option(names = "--tokenizer", required = true, paramLabel = "DIR|byte",
            description = "'byte' (UTF-8 bytes, end-of-document 256), or a directory with vocab.json + merges.txt"
                    + " (or tokenizer.json) of a GPT-2 style byte-level BPE, or the path of a tokenizer.json.")
    String tokenizer;

    @Option(names = "--text", paramLabel = "TEXT", description = "Text to tokenize; the ids are printed as a list.")
    String text;

    @Option(names = "--input", paramLabel = "IN.jsonl",
            description = "JSON Lines file (.jsonl or .jsonl.zst) with a \"text\" field per line; a local path or"
                    + " a Hadoop URI such as hdfs://namenode:8020/data/in.jsonl.zst.")
    String input;

    @Option(names = "--output", paramLabel = "OUT.jsonl",
            description = "Where to write one {\"ids\": [...]} line per input document (.zst: compressed);"
                    + " a local path or a Hadoop URI.")
    String output;

    @Option(names = "--allow-special",
            description = "Encode special-token spellings such as <|endoftext|> as their ids (GPT-2 only);"
                    + " by default they are ordinary text, as in training data preparation.")
    boolean allowSpecial;

    @Option(names = "--bad-records", defaultValue = "fail", paramLabel = "skip|fail",
            description = "Input lines that are not JSON, lack a string \"text\" or are not UTF-8: 'fail' stops"
                    + " naming file and line (default), 'skip' leaves them out and lists them on stderr.")
    String badRecords;

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public Integer call() {
        boolean fileMode = input != null || output != null;
        if ((text == null) == !fileMode) {
            throw new CommandLine.ParameterException(spec.commandLine(),
                    "give either --text TEXT, or --input IN.jsonl with --output OUT.jsonl");
        }
        if (fileMode && (input == null || output == null)) {
            throw new CommandLine.ParameterException(spec.commandLine(),
                    "--input and --output go together (missing " + (input == null ? "--input" : "--output") + ")");
        }
        BadRecordPolicy policy;
        try {
            policy = BadRecordPolicy.parse(badRecords);
        } catch (IllegalArgumentException e) {
            throw new CommandLine.ParameterException(spec.commandLine(), "--bad-records: " + e.getMessage());
        }
        Tokenizer tok = Tokenizers.open(tokenizer);
        if (allowSpecial && !(tok instanceof Gpt2Tokenizer)) {
            throw new CommandLine.ParameterException(spec.commandLine(),
                    "--allow-special needs a GPT-2 tokenizer; the byte tokenizer has no special-token spellings");
        }
        PrintWriter out = spec.commandLine().getOut();
        if (text != null) {
            out.println(format(encode(tok, text)));
            out.flush();
            return 0;
        }
        return tokenizeFile(tok, policy);
    }

    private int[] encode(Tokenizer tok, String s) {
        return allowSpecial ? ((Gpt2Tokenizer) tok).encode(s, true) : tok.encode(s);
    }

    private int tokenizeFile(Tokenizer tok, BadRecordPolicy policy) {
        long[] counts = new long[2];  // documents, tokens
        long t0 = System.nanoTime();
        PileReader reader = PileReader.open(List.of(input), policy, false);
        try (reader) {
            DataFiles.writeAtomically(new Path(output), file -> {
                try (OutputStream raw = output.endsWith(".zst") ? new ZstdOutputStream(file, 3) : file;
                     OutputStream sink = new BufferedOutputStream(raw, 1 << 16)) {
                    while (reader.hasNext()) {
                        int[] ids = encode(tok, reader.next().text());
                        sink.write(JsonLines.line(Map.of("ids", ids)).getBytes(StandardCharsets.UTF_8));
                        sink.write('\n');
                        counts[0]++;
                        counts[1] += ids.length;
                    }
                }
            });
        }
        PrintWriter err = spec.commandLine().getErr();
        if (!reader.badRecords().isEmpty()) {
            err.println(reader.badRecords());
        }
        double seconds = (System.nanoTime() - t0) / 1e9;
        err.printf("tokenize: %,d documents -> %,d tokens in %s (%.1f s)%n", counts[0], counts[1], output, seconds);
        err.flush();
        return 0;
    }

    static String format(int[] ids) {
        StringBuilder sb = new StringBuilder();
        appendList(sb, ids);
        return sb.toString();
    }

    private static void appendList(StringBuilder sb, int[] ids) {
        sb.append('[');
        for (int i = 0; i < ids.length; i++) {
            if (i > 0) {
                sb.append(", ");
            }
            sb.append(ids[i]);
        }
        sb.append(']');
    }
}
