package io.dtrain.data.shards;

import io.dtrain.data.DataException;
import io.dtrain.data.fs.DataFiles;
import io.dtrain.data.reader.BadRecordReport;
import io.dtrain.data.reader.Document;
import io.dtrain.data.reader.ShardReader;
import io.dtrain.data.tokenizer.Tokenizer;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Future;

/**
 * The documents of one input in order, tokenized ahead by the shared pool: the calling thread reads chunks of
 * documents and hands them out; at most {@code maxInFlight} chunks are pending. Apart from {@link Preprocessor}
 * because this is its worker pipeline, where the threads meet (and where a read error waits until the documents
 * before it are out); the preprocessor only cuts the documents it hands out into shards.
 */
final class DocStream {
    private static final int CHUNK_DOCS = 64;
    private static final int CHUNK_CHARS = 1 << 20;

    /** One tokenized document with the bad-record count of its file when it was read. */
    record TokenizedDoc(int[] ids, String setName, long line, long badBefore) {}

    final ShardReader reader;
    final BadRecordReport report;
    private final long resumeAfter;
    private final ExecutorService pool;
    private final int maxInFlight;
    private final Tokenizer tokenizer;
    private final Progress progress;
    private final ArrayDeque<Future<TokenizedDoc[]>> inFlight = new ArrayDeque<>();
    private TokenizedDoc[] chunk = new TokenizedDoc[0];
    private int chunkPos;
    private boolean readerDone;
    private DataException readError;  // raised once the documents read before it are handed out
    private long badBase;
    private long reportedInputBytes;

    DocStream(ShardReader reader, BadRecordReport report, long resumeAfter, ExecutorService pool, int maxInFlight,
              Tokenizer tokenizer, Progress progress) {
        this.reader = reader;
        this.report = report;
        this.resumeAfter = resumeAfter;
        this.pool = pool;
        this.maxInFlight = maxInFlight;
        this.tokenizer = tokenizer;
        this.progress = progress;
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
                inFlight.add(pool.submit(() -> {
                    TokenizedDoc[] out = new TokenizedDoc[docs.size()];
                    long bytes = 0;
                    for (int i = 0; i < out.length; i++) {
                        Document d = docs.get(i);
                        out[i] = new TokenizedDoc(tokenizer.encode(d.text()), d.pileSetName(), d.line(), bads.get(i));
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
            throw Preprocessor.rethrow(e.getCause());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new DataException("interrupted while tokenizing " + DataFiles.display(reader.file()));
        }
    }

    private static long utf8Length(String s) {
        long n = 0;
        for (int i = 0, len = s.length(); i < len; i++) {
            char c = s.charAt(i);
            n += c < 0x80 ? 1 : c < 0x800 || Character.isSurrogate(c) ? 2 : 3;  // a surrogate pair is 4 bytes
        }
        return n;
    }
}
