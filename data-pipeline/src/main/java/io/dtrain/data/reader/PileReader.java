package io.dtrain.data.reader;

import io.dtrain.data.DataException;
import java.util.Iterator;
import org.apache.hadoop.fs.Path;
import java.util.List;
import java.util.NoSuchElementException;

/**
 * Streams the documents of a set of Pile-format shards ({@code {"text": ..., "meta": {"pile_set_name": ...}}}
 * per line, plain or zstd) in file order, then line order, holding one line in memory at a time.
 * A set that yields no document at all is an error (a wrong path or a fully broken corpus should not train on
 * nothing); single empty files are fine.
 */
public final class PileReader implements Iterator<Document>, AutoCloseable {
    private final String input;
    private final List<Path> files;
    private final BadRecordPolicy policy;
    private final boolean requireDocuments;
    private final BadRecordReport report = new BadRecordReport();

    private int fileIndex = -1;
    private ShardReader current;
    private Document pending;
    private long documents;
    private boolean done;

    private PileReader(String input, List<Path> files, BadRecordPolicy policy, boolean requireDocuments) {
        this.input = input;
        this.files = List.copyOf(files);
        this.policy = policy;
        this.requireDocuments = requireDocuments;
    }

    /** Like {@link #open(String, BadRecordPolicy)} with the default policy {@code skip}. */
    public static PileReader open(String pathOrGlob) {
        return open(pathOrGlob, BadRecordPolicy.SKIP);
    }

    /** Reads a file, a directory ({@code *.jsonl}, {@code *.jsonl.zst}, sorted) or a glob; see {@link InputFiles}. */
    public static PileReader open(String pathOrGlob, BadRecordPolicy policy) {
        return new PileReader(pathOrGlob, InputFiles.resolve(pathOrGlob), policy, true);
    }

    /**
     * Reads the given files (paths or URIs, any Hadoop file system) in order; {@code requireDocuments=false}
     * accepts a set with no documents.
     */
    public static PileReader open(List<String> files, BadRecordPolicy policy, boolean requireDocuments) {
        return new PileReader(files.toString(), files.stream().map(Path::new).toList(), policy, requireDocuments);
    }

    public List<Path> files() {
        return files;
    }

    /** The records skipped so far (policy {@code skip}). */
    public BadRecordReport badRecords() {
        return report;
    }

    /** Documents returned so far. */
    public long documents() {
        return documents;
    }

    @Override
    public boolean hasNext() {
        if (pending != null) {
            return true;
        }
        while (!done) {
            if (current != null) {
                pending = current.next();
                if (pending != null) {
                    return true;
                }
                current.close();
                current = null;
            }
            if (++fileIndex >= files.size()) {
                done = true;
                if (requireDocuments && documents == 0) {
                    throw new DataException("no documents in " + input + " (" + files.size() + " file(s)"
                            + (report.isEmpty() ? "" : ", " + report.count() + " bad record(s) skipped, first: "
                            + report.records().get(0)) + "); check the path and the files");
                }
                break;
            }
            current = new ShardReader(files.get(fileIndex), policy, report);
        }
        return false;
    }

    @Override
    public Document next() {
        if (!hasNext()) {
            throw new NoSuchElementException();
        }
        Document d = pending;
        pending = null;
        documents++;
        return d;
    }

    @Override
    public void close() {
        done = true;
        if (current != null) {
            current.close();
            current = null;
        }
    }
}
