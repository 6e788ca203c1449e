package io.dtrain.data.shards;

import io.dtrain.data.DataException;
import io.dtrain.data.fs.DataFiles;
import io.dtrain.data.reader.BadRecordPolicy;
import io.dtrain.data.reader.BadRecordReport;
import io.dtrain.data.reader.InputFiles;
import io.dtrain.data.reader.ShardReader;
import io.dtrain.data.tokenizer.Tokenizer;
import java.io.BufferedOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.Path;

/**
 * {@code dtrain preprocess}: Pile-format input (local or any Hadoop file system) to token shards (see
 * {@link ShardFormat}) plus {@code manifest.json}.
 *
 * <p>Input file {@code NAME.jsonl.zst} becomes shards {@code NAME-00000.arrow}, {@code NAME-00001.arrow}, ... in
 * document order, a new shard starting once {@code shardBytes} of ids are written (a document is never split).
 * Input files are read by a few threads, documents are tokenized in chunks by {@code workers} threads and written
 * back in order. Each shard is written under a temporary name and renamed when complete; its footer records which
 * input lines it holds, so a re-run keeps complete shards and continues each input after its last complete shard.
 * The manifest is written last: a directory with a manifest is a complete dataset. What a re-run keeps is decided by
 * {@link OutputDirectory}; the documents of one input arrive tokenized and in order from a {@link DocStream}; this
 * class plans the inputs, cuts the documents into shards and writes the manifest.
 */
public final class Preprocessor {
    /**
     * @param input       file, directory or glob of {@code .jsonl}/{@code .jsonl.zst} (see {@link InputFiles})
     * @param output      output directory (created; local path or Hadoop URI)
     * @param shardBytes  target bytes of ids per shard (at most 2 GiB: the loader maps a shard in one piece)
     * @param workers     tokenizer threads
     * @param batchTokens tokens per Arrow record batch
     */
    public record Options(String input, String output, Tokenizer tokenizer, long shardBytes, int workers,
                          BadRecordPolicy policy, int batchTokens) {
        public static final long DEFAULT_SHARD_BYTES = 1L << 30;
        public static final long MAX_SHARD_BYTES = (1L << 31) - (64L << 20);
        public static final int DEFAULT_BATCH_TOKENS = 1 << 22;

        public Options {
            if (shardBytes < 1 || shardBytes > MAX_SHARD_BYTES) {
                throw new IllegalArgumentException("shard size " + shardBytes + " bytes is outside [1, "
                        + MAX_SHARD_BYTES + "] (the loader maps one shard as one buffer of at most 2 GiB)");
            }
            if (workers < 1) {
                throw new IllegalArgumentException("workers must be >= 1, got " + workers);
            }
            if (batchTokens < 1) {
                throw new IllegalArgumentException("batch tokens must be >= 1, got " + batchTokens);
            }
        }

        public Options(String input, String output, Tokenizer tokenizer) {
            this(input, output, tokenizer, DEFAULT_SHARD_BYTES, Runtime.getRuntime().availableProcessors(),
                    BadRecordPolicy.FAIL, DEFAULT_BATCH_TOKENS);
        }
    }

    /** What a run did. {@code textBytes}/{@code documents} count only what this run tokenized. */
    public record Result(Manifest manifest, int shardsWritten, int shardsKept, long documents, long textBytes,
                         long inputBytes, double seconds, BadRecordReport badRecords) {}

    private final Options options;
    private final Progress progress;
    private final boolean uint16;
    private final int bytesPerToken;
    private final OutputDirectory output;

    private Preprocessor(Options options, Progress progress) {
        this.options = options;
        this.progress = progress;
        this.uint16 = ShardFormat.uint16(options.tokenizer().vocabSize());
        this.bytesPerToken = uint16 ? 2 : 4;
        this.output = new OutputDirectory(options.output(), options.tokenizer());
    }

    public static Result run(Options options, Progress progress) {
        return new Preprocessor(options, progress).run(null);
    }

    /**
     * Preprocesses only {@code part}'s share of the inputs and writes a part manifest instead of
     * {@code manifest.json}; {@link PreprocessParts#merge} joins the parts (see there).
     */
    public static Result run(Options options, PreprocessPart part, Progress progress) {
        return new Preprocessor(options, progress).run(part);
    }

    private Result run(PreprocessPart part) {
        long t0 = System.nanoTime();
        List<Path> allInputs = InputFiles.resolve(options.input());
        OutputDirectory.checkShardNames(allInputs);
        List<Path> inputs = part == null ? allInputs : part.select(allInputs);
        // Parts share the directory: each deletes only the temporaries of its own inputs, never another's in flight.
        boolean created = output.prepare(part == null ? null : inputs);
        Map<String, String> knownHashes = output.hashesOfPreviousManifest();
        if (part == null) {
            PreprocessParts.removeAll(options.output());
        } else {
            knownHashes.putAll(output.hashesOfPartManifest(part));
            PreprocessParts.removeStale(options.output(), part);
        }
        output.removeManifest();
        List<List<ShardInfo>> kept = new ArrayList<>();
        long todoBytes = 0;
        long[] inputSizes = new long[inputs.size()];
        for (int i = 0; i < inputs.size(); i++) {
            FileStatus st = DataFiles.statusOrNull(inputs.get(i));
            inputSizes[i] = st == null ? 0 : st.getLen();
            List<ShardInfo> done = output.completeShards(inputs.get(i));
            kept.add(done);
            if (done.isEmpty() || !done.get(done.size() - 1).inputComplete()) {
                todoBytes += inputSizes[i];
            }
        }
        progress.start(todoBytes);

        int workers = options.workers();
        int fileThreads = Math.max(1, Math.min(inputs.size(), workers / 4));
        ExecutorService tokenizers = Executors.newFixedThreadPool(workers, daemon("dtrain-preprocess-tokenize"));
        ExecutorService readers = Executors.newFixedThreadPool(fileThreads, daemon("dtrain-preprocess-read"));
        List<Future<List<ShardInfo>>> tasks = new ArrayList<>();
        for (int i = 0; i < inputs.size(); i++) {
            List<ShardInfo> done = kept.get(i);
            BadRecordReport report = new BadRecordReport();
            if (!done.isEmpty() && done.get(done.size() - 1).inputComplete()) {
                tasks.add(null);
                continue;
            }
            Path input = inputs.get(i);
            long resumeAfter = done.isEmpty() ? 0 : done.get(done.size() - 1).lastLine();
            int nextIndex = done.size();
            int maxInFlight = 2 * workers / fileThreads + 2;
            tasks.add(readers.submit(() -> processInput(input, resumeAfter, nextIndex, report, tokenizers, maxInFlight)));
        }
        List<List<ShardInfo>> written = new ArrayList<>();
        try {
            for (Future<List<ShardInfo>> task : tasks) {
                written.add(task == null ? List.of() : task.get());
            }
        } catch (ExecutionException e) {
            throw rethrow(e.getCause());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new DataException("preprocess interrupted; complete shards are kept, re-run to continue");
        } finally {
            readers.shutdownNow();
            tokenizers.shutdownNow();
            awaitQuietly(readers);
            awaitQuietly(tokenizers);
            progress.close();
        }

        List<ShardInfo> shards = new ArrayList<>();
        List<Manifest.InputInfo> inputInfos = new ArrayList<>();
        Map<String, ShardInfo.SetCount> sets = new TreeMap<>();
        long documents = 0;
        long tokens = 0;
        long bad = 0;
        // Each shard's footer lists its share of its input's first bad records: complete also for kept shards.
        List<String> examples = new ArrayList<>();
        for (int i = 0; i < inputs.size(); i++) {
            List<ShardInfo> ofInput = new ArrayList<>();
            for (ShardInfo s : kept.get(i)) {
                ofInput.add(output.withHash(s, knownHashes));
            }
            ofInput.addAll(written.get(i));
            long inDocs = 0;
            long inTokens = 0;
            long inBad = 0;
            for (ShardInfo s : ofInput) {
                inDocs += s.documents();
                inTokens += s.tokens();
                inBad += s.badRecords();
                ShardInfo.addTo(sets, s.pileSetNames());
                examples.addAll(s.examples());
                shards.add(s.withoutExamples());
            }
            inputInfos.add(new Manifest.InputInfo(DataFiles.display(inputs.get(i)), inputSizes[i], inDocs, inTokens,
                    inBad, ofInput.size()));
            documents += inDocs;
            tokens += inTokens;
            bad += inBad;
        }
        if (documents == 0 && part == null) {  // a part may hold no documents; the merge checks the whole set
            output.discard(written.stream().flatMap(List::stream).toList(), created);
            throw new DataException("no documents in " + options.input() + " (" + inputs.size() + " file(s), " + bad
                    + " bad record(s) skipped" + (examples.isEmpty() ? "" : ", first: " + examples.get(0))
                    + "); this run left nothing in " + options.output() + "; check the path and the files");
        }
        BadRecordReport badRecords = BadRecordReport.restored(bad,
                examples.stream().map(BadRecordReport.BadRecord::parse).toList());
        Tokenizer tok = options.tokenizer();
        Manifest manifest = new Manifest(Manifest.FORMAT, Manifest.VERSION,
                new Manifest.TokenizerInfo(tok.identity(), tok.vocabSize(), tok.eotId()), uint16 ? "uint16" : "int32",
                documents, tokens, bad, examples.subList(0, Math.min(examples.size(), BadRecordReport.MAX_KEPT)),
                options.shardBytes(), sets, inputInfos, shards);
        if (part == null) {
            manifest.write(options.output());
        } else {
            PreprocessParts.write(options.output(), part, allInputs, options, manifest);
        }
        int keptCount = kept.stream().mapToInt(List::size).sum();
        return new Result(manifest, shards.size() - keptCount, keptCount, progress.documents.get(),
                progress.textBytes.get(), todoBytes, (System.nanoTime() - t0) / 1e9, badRecords);
    }

    /** Writes the shards of one input from line {@code resumeAfter + 1} on, starting at shard {@code nextIndex}. */
    private List<ShardInfo> processInput(Path input, long resumeAfter, int nextIndex, BadRecordReport report,
                                         ExecutorService tokenizers, int maxInFlight) {
        String stem = ShardFormat.stem(input.getName());
        List<ShardInfo> out = new ArrayList<>();
        try (ShardReader reader = new ShardReader(input, options.policy(), report)) {
            DocStream docs = new DocStream(reader, report, resumeAfter, tokenizers, maxInFlight, options.tokenizer(),
                    progress);
            int index = nextIndex;
            while (true) {
                String name = ShardFormat.shardName(stem, index++);
                ShardInfo[] made = new ShardInfo[1];
                DataFiles.writeAtomically(output.shard(name), stream -> made[0] = writeShard(stream, name, docs));
                out.add(made[0]);
                if (made[0].inputComplete()) {
                    return out;
                }
            }
        }
    }

    private ShardInfo writeShard(OutputStream target, String name, DocStream docs) throws IOException {
        HashingOutputStream hashed = new HashingOutputStream(target);
        OutputStream buffered = new BufferedOutputStream(hashed, 1 << 20);
        Map<String, ShardInfo.SetCount> sets = new HashMap<>();
        long documents = 0;
        long tokens = 0;
        long firstLine = 0;
        long lastLine = 0;
        long badBase = docs.badBase();
        ShardInfo info;
        try (ShardWriter writer = new ShardWriter(buffered, uint16, options.tokenizer().identity(),
                options.batchTokens())) {
            int eot = options.tokenizer().eotId();
            while (tokens * bytesPerToken < options.shardBytes() && docs.hasNext()) {
                DocStream.TokenizedDoc d = docs.next();
                writer.add(d.ids(), eot, d.setName(), d.line());
                long n = d.ids().length + 1L;
                documents++;
                tokens += n;
                firstLine = firstLine == 0 ? d.line() : firstLine;
                lastLine = d.line();
                sets.merge(d.setName() == null ? ShardFormat.NO_SET_NAME : d.setName(),
                        new ShardInfo.SetCount(1, n), ShardInfo.SetCount::plus);
            }
            boolean complete = !docs.hasNext();
            long badEnd = complete ? docs.report.count() : docs.peekBadBefore();
            writer.flush();
            List<BadRecordReport.BadRecord> listed = docs.report.records();
            List<String> examples = listed.subList((int) Math.min(badBase, listed.size()),
                    (int) Math.min(badEnd, listed.size())).stream().map(Object::toString).toList();
            info = new ShardInfo(name, DataFiles.display(docs.reader.file()), firstLine, lastLine, documents, tokens,
                    writer.batches(), complete, badEnd - badBase, sets, null, null, examples);
            docs.setBadBase(badEnd);
            writer.finish(Manifest.JSON.writeValueAsString(info));
        }
        buffered.flush();
        return info.withFile(hashed.count, HexFormat.of().formatHex(hashed.digest.digest()));
    }

    static RuntimeException rethrow(Throwable cause) {
        if (cause instanceof RuntimeException re) {
            return re;
        }
        if (cause instanceof Error err) {
            throw err;
        }
        return new DataException("preprocess failed: " + cause, cause);
    }

    private static void awaitQuietly(ExecutorService pool) {
        try {
            pool.awaitTermination(1, TimeUnit.MINUTES);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static ThreadFactory daemon(String prefix) {
        AtomicInteger n = new AtomicInteger();
        return r -> {
            Thread t = new Thread(r, prefix + "-" + n.incrementAndGet());
            t.setDaemon(true);
            return t;
        };
    }
}
