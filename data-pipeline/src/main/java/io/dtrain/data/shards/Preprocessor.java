package io.dtrain.data.shards;

import io.dtrain.data.DataException;
import io.dtrain.data.fs.DataFiles;
import io.dtrain.data.reader.BadRecordPolicy;
import io.dtrain.data.reader.BadRecordReport;
import io.dtrain.data.reader.Document;
import io.dtrain.data.reader.InputFiles;
import io.dtrain.data.reader.ShardReader;
import io.dtrain.data.tokenizer.Tokenizer;
import java.io.BufferedOutputStream;
import java.io.FilterOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayDeque;
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
import org.apache.hadoop.fs.FileSystem;
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
 * The manifest is written last: a directory with a manifest is a complete dataset.
 */
public final class Preprocessor {
    private static final int CHUNK_DOCS = 64;
    private static final int CHUNK_CHARS = 1 << 20;

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
    private final Path outDir;

    private Preprocessor(Options options, Progress progress) {
        this.options = options;
        this.progress = progress;
        this.uint16 = ShardFormat.uint16(options.tokenizer().vocabSize());
        this.bytesPerToken = uint16 ? 2 : 4;
        this.outDir = new Path(options.output());
    }

    public static Result run(Options options, Progress progress) {
        return new Preprocessor(options, progress).run();
    }

    private Result run() {
        long t0 = System.nanoTime();
        List<Path> inputs = InputFiles.resolve(options.input());
        Map<String, Path> stems = new HashMap<>();
        for (Path p : inputs) {
            Path clash = stems.put(ShardFormat.stem(p.getName()), p);
            if (clash != null) {
                throw new DataException("inputs " + DataFiles.display(clash) + " and " + DataFiles.display(p)
                        + " would both write shards named " + ShardFormat.stem(p.getName()) + "-NNNNN.arrow;"
                        + " preprocess them into separate output directories");
            }
        }
        prepareOutputDirectory();
        Map<String, String> knownHashes = hashesOfPreviousManifest();
        FileSystem fs = DataFiles.fileSystem(outDir);
        try {
            fs.delete(new Path(outDir, Manifest.FILE_NAME), false);  // the dataset is incomplete until we finish
        } catch (IOException e) {
            throw new DataException(DataFiles.display(outDir) + ": cannot remove the old manifest: " + e.getMessage(), e);
        }

        List<List<ShardInfo>> kept = new ArrayList<>();
        long todoBytes = 0;
        long[] inputSizes = new long[inputs.size()];
        for (int i = 0; i < inputs.size(); i++) {
            FileStatus st = DataFiles.statusOrNull(inputs.get(i));
            inputSizes[i] = st == null ? 0 : st.getLen();
            List<ShardInfo> done = completeShards(inputs.get(i));
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
        List<BadRecordReport> reports = new ArrayList<>();
        for (int i = 0; i < inputs.size(); i++) {
            List<ShardInfo> done = kept.get(i);
            BadRecordReport report = new BadRecordReport();
            reports.add(report);
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
        for (int i = 0; i < inputs.size(); i++) {
            List<ShardInfo> ofInput = new ArrayList<>();
            for (ShardInfo s : kept.get(i)) {
                ofInput.add(withHash(s, knownHashes));
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
            }
            inputInfos.add(new Manifest.InputInfo(DataFiles.display(inputs.get(i)), inputSizes[i], inDocs, inTokens,
                    inBad, ofInput.size()));
            shards.addAll(ofInput);
            documents += inDocs;
            tokens += inTokens;
            bad += inBad;
        }
        if (documents == 0) {
            throw new DataException("no documents in " + options.input() + " (" + inputs.size() + " file(s), " + bad
                    + " bad record(s) skipped); check the path and the files");
        }
        List<BadRecordReport.BadRecord> examples = new ArrayList<>();
        reports.forEach(r -> examples.addAll(r.records()));
        BadRecordReport badRecords = BadRecordReport.restored(bad, examples);
        Tokenizer tok = options.tokenizer();
        Manifest manifest = new Manifest(Manifest.FORMAT, Manifest.VERSION,
                new Manifest.TokenizerInfo(tok.identity(), tok.vocabSize(), tok.eotId()), uint16 ? "uint16" : "int32",
                documents, tokens, bad, badRecords.records().stream().map(Object::toString).toList(),
                options.shardBytes(), sets, inputInfos, shards);
        manifest.write(options.output());
        int keptCount = kept.stream().mapToInt(List::size).sum();
        return new Result(manifest, shards.size() - keptCount, keptCount, progress.documents.get(),
                progress.textBytes.get(), todoBytes, (System.nanoTime() - t0) / 1e9, badRecords);
    }

    private void prepareOutputDirectory() {
        FileSystem fs = DataFiles.fileSystem(outDir);
        try {
            if (fs.exists(outDir) && !fs.getFileStatus(outDir).isDirectory()) {
                throw new DataException("output " + options.output() + " is a file; give a directory");
            }
            fs.mkdirs(outDir);
            for (FileStatus st : fs.listStatus(outDir)) {
                String name = st.getPath().getName();
                if (DataFiles.isTemporary(name)) {
                    fs.delete(st.getPath(), false);  // left by an interrupted run; never a complete file
                }
            }
        } catch (IOException e) {
            throw new DataException(DataFiles.display(outDir) + ": cannot prepare the output directory: "
                    + e.getMessage(), e);
        }
    }

    private Map<String, String> hashesOfPreviousManifest() {
        Map<String, String> hashes = new HashMap<>();
        if (Manifest.existsIn(options.output())) {
            try {
                for (ShardInfo s : Manifest.read(options.output()).shards()) {
                    hashes.put(s.file() + "/" + s.bytes(), s.sha256());
                }
            } catch (DataException e) {
                // an unreadable old manifest only costs re-hashing the shards
            }
        }
        return hashes;
    }

    /** The complete shards a previous run left for {@code input}: consecutive from index 0, readable, same tokenizer. */
    private List<ShardInfo> completeShards(Path input) {
        String stem = ShardFormat.stem(input.getName());
        List<ShardInfo> done = new ArrayList<>();
        for (int index = 0; ; index++) {
            Path shard = new Path(outDir, ShardFormat.shardName(stem, index));
            if (!DataFiles.isFile(shard)) {
                return done;
            }
            ShardFormat.Layout layout;
            try {
                layout = ShardFormat.readLayout(shard);
            } catch (DataException e) {
                return done;  // not a complete shard: it is written again
            }
            if (!options.tokenizer().identity().equals(layout.tokenizerIdentity())) {
                throw new DataException(DataFiles.display(shard) + " was made with tokenizer "
                        + layout.tokenizerIdentity() + ", this run uses " + options.tokenizer().identity()
                        + "; use another --output directory or delete the old shards");
            }
            String source = new Path(layout.info().source()).getName();
            if (!source.equals(input.getName())) {
                throw new DataException(DataFiles.display(shard) + " holds documents of " + layout.info().source()
                        + ", not of " + DataFiles.display(input) + "; use another --output directory");
            }
            done.add(layout.info().withFile(layout.fileBytes(), null));
            if (layout.info().inputComplete()) {
                return done;
            }
        }
    }

    private ShardInfo withHash(ShardInfo s, Map<String, String> known) {
        String sha = known.get(s.file() + "/" + s.bytes());
        if (sha == null) {
            MessageDigest digest = sha256();
            Path path = new Path(outDir, s.file());
            try (InputStream in = DataFiles.open(path, 1 << 20)) {
                byte[] buf = new byte[1 << 20];
                for (int n; (n = in.read(buf)) > 0; ) {
                    digest.update(buf, 0, n);
                }
            } catch (IOException e) {
                throw new DataException(DataFiles.display(path) + ": read failed: " + e.getMessage(), e);
            }
            sha = HexFormat.of().formatHex(digest.digest());
        }
        return s.withFile(s.bytes(), sha);
    }

    /** Writes the shards of one input from line {@code resumeAfter + 1} on, starting at shard {@code nextIndex}. */
    private List<ShardInfo> processInput(Path input, long resumeAfter, int nextIndex, BadRecordReport report,
                                         ExecutorService tokenizers, int maxInFlight) {
        String stem = ShardFormat.stem(input.getName());
        List<ShardInfo> out = new ArrayList<>();
        try (ShardReader reader = new ShardReader(input, options.policy(), report)) {
            DocStream docs = new DocStream(reader, report, resumeAfter, tokenizers, maxInFlight);
            int index = nextIndex;
            while (true) {
                String name = ShardFormat.shardName(stem, index++);
                ShardInfo[] made = new ShardInfo[1];
                DataFiles.writeAtomically(new Path(outDir, name), stream -> made[0] = writeShard(stream, name, docs));
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
                TokenizedDoc d = docs.next();
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
            long badEnd = complete ? report(docs) : docs.peekBadBefore();
            writer.flush();
            info = new ShardInfo(name, DataFiles.display(docs.reader.file()), firstLine, lastLine, documents, tokens,
                    writer.batches(), complete, badEnd - badBase, sets, null, null);
            docs.setBadBase(badEnd);
            writer.finish(Manifest.JSON.writeValueAsString(info));
        }
        buffered.flush();
        return info.withFile(hashed.count, HexFormat.of().formatHex(hashed.digest.digest()));
    }

    private static long report(DocStream docs) {
        return docs.report.count();
    }

    /** One tokenized document with the bad-record count of its file when it was read. */
    record TokenizedDoc(int[] ids, String setName, long line, long badBefore) {}

    /**
     * The documents of one input in order, tokenized ahead by the shared pool: the calling thread reads chunks of
     * documents and hands them out; at most {@code maxInFlight} chunks are pending.
     */
    private final class DocStream {
        final ShardReader reader;
        final BadRecordReport report;
        private final long resumeAfter;
        private final ExecutorService pool;
        private final int maxInFlight;
        private final ArrayDeque<Future<TokenizedDoc[]>> inFlight = new ArrayDeque<>();
        private TokenizedDoc[] chunk = new TokenizedDoc[0];
        private int chunkPos;
        private boolean readerDone;
        private DataException readError;  // raised once the documents read before it are handed out
        private long badBase;
        private long reportedInputBytes;

        DocStream(ShardReader reader, BadRecordReport report, long resumeAfter, ExecutorService pool, int maxInFlight) {
            this.reader = reader;
            this.report = report;
            this.resumeAfter = resumeAfter;
            this.pool = pool;
            this.maxInFlight = maxInFlight;
        }

        long badBase() {
            return badBase;
        }

        void setBadBase(long base) {
            badBase = base;
        }

        boolean hasNext() {
            while (chunkPos == chunk.length) {
                fill();
                if (inFlight.isEmpty()) {
                    if (readError != null) {
                        throw readError;
                    }
                    return false;
                }
                chunk = await(inFlight.poll());
                chunkPos = 0;
            }
            return true;
        }

        TokenizedDoc next() {
            if (!hasNext()) {
                throw new IllegalStateException("no more documents");
            }
            return chunk[chunkPos++];
        }

        /** Bad records of this file before the next document (call after hasNext() returned true). */
        long peekBadBefore() {
            return chunk[chunkPos].badBefore();
        }

        private void fill() {
            while (!readerDone && inFlight.size() < maxInFlight) {
                List<Document> docs = new ArrayList<>(CHUNK_DOCS);
                List<Long> bads = new ArrayList<>(CHUNK_DOCS);
                long chars = 0;
                while (docs.size() < CHUNK_DOCS && chars < CHUNK_CHARS) {
                    Document d;
                    try {
                        d = reader.next();
                    } catch (DataException e) {
                        readError = e;
                        readerDone = true;
                        break;
                    }
                    if (d == null) {
                        readerDone = true;
                        break;
                    }
                    if (d.line() <= resumeAfter) {
                        badBase = report.count();  // bad records up to here belong to the kept shards
                        continue;
                    }
                    docs.add(d);
                    bads.add(report.count());
                    chars += d.text().length();
                }
                long read = reader.fileBytesRead();
                progress.inputBytes.addAndGet(read - reportedInputBytes);
                reportedInputBytes = read;
                if (!docs.isEmpty()) {
                    Tokenizer tok = options.tokenizer();
                    inFlight.add(pool.submit(() -> {
                        TokenizedDoc[] out = new TokenizedDoc[docs.size()];
                        long bytes = 0;
                        for (int i = 0; i < out.length; i++) {
                            Document d = docs.get(i);
                            out[i] = new TokenizedDoc(tok.encode(d.text()), d.pileSetName(), d.line(), bads.get(i));
                            bytes += utf8Length(d.text());
                        }
                        progress.documents.addAndGet(out.length);
                        progress.textBytes.addAndGet(bytes);
                        return out;
                    }));
                }
            }
        }

        private TokenizedDoc[] await(Future<TokenizedDoc[]> f) {
            try {
                return f.get();
            } catch (ExecutionException e) {
                throw rethrow(e.getCause());
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new DataException("interrupted while tokenizing " + DataFiles.display(reader.file()));
            }
        }
    }

    static long utf8Length(String s) {
        long n = 0;
        for (int i = 0, len = s.length(); i < len; i++) {
            char c = s.charAt(i);
            n += c < 0x80 ? 1 : c < 0x800 || Character.isSurrogate(c) ? 2 : 3;  // a surrogate pair is 4 bytes
        }
        return n;
    }

    private static RuntimeException rethrow(Throwable cause) {
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

    private static MessageDigest sha256() {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    /** Passes bytes through while counting them and feeding a SHA-256. */
    private static final class HashingOutputStream extends FilterOutputStream {
        final MessageDigest digest = sha256();
        long count;

        HashingOutputStream(OutputStream out) {
            super(out);
        }

        @Override
        public void write(int b) throws IOException {
            out.write(b);
            digest.update((byte) b);
            count++;
        }

        @Override
        public void write(byte[] b, int off, int len) throws IOException {
            out.write(b, off, len);
            digest.update(b, off, len);
            count += len;
        }

        @Override
        public void close() throws IOException {
            flush();  // the caller closes the underlying stream
        }
    }
}
