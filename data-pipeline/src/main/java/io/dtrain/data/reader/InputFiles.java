package io.dtrain.data.reader;

import io.dtrain.data.DataException;
import io.dtrain.data.fs.DataFiles;
import java.io.FileNotFoundException;
import java.io.IOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

/** Turns a file, a directory or a glob (local or any Hadoop file system) into the sorted list of shards to read. */
public final class InputFiles {
    private InputFiles() {}

    /** True for the shard names the reader understands: {@code *.jsonl}, {@code *.jsonl.zst}. */
    public static boolean isShardName(String name) {
        return name.endsWith(".jsonl") || name.endsWith(".jsonl.zst") || name.endsWith(".jsonl.zstd");
    }

    /**
     * A file is taken as is (whatever its name; {@code .zst} means zstd); a directory gives its {@code *.jsonl} /
     * {@code *.jsonl.zst} files (not recursive) in name order; anything with {@code * ? [ {} is a Hadoop glob
     * (per path component: {@code data/train/*.jsonl.zst}, {@code data/{train,extra}/*.zst}) in sorted path order.
     * Paths may carry a scheme ({@code hdfs://nn:8020/pile/train}).
     */
    public static List<Path> resolve(String pathOrGlob) {
        if (pathOrGlob == null || pathOrGlob.isBlank()) {
            throw new DataException("no input given: pass a .jsonl/.jsonl.zst file, a directory of them, or a glob");
        }
        Path path = new Path(pathOrGlob);
        FileSystem fs = DataFiles.fileSystem(path);
        try {
            if (hasGlob(pathOrGlob)) {
                FileStatus[] matches = fs.globStatus(path);
                List<Path> files = files(matches == null ? new FileStatus[0] : matches, false);
                if (files.isEmpty()) {
                    throw new DataException("input glob " + pathOrGlob + " matches no files");
                }
                return files;
            }
            FileStatus status;
            try {
                status = fs.getFileStatus(path);
            } catch (FileNotFoundException e) {
                throw new DataException("input " + pathOrGlob + " does not exist (expected a .jsonl/.jsonl.zst file,"
                        + " a directory of them, or a glob such as dir/*.jsonl.zst)");
            }
            if (!status.isDirectory()) {
                return List.of(path);
            }
            List<Path> files = files(fs.listStatus(path), true);
            if (files.isEmpty()) {
                throw new DataException("input directory " + pathOrGlob + " holds no *.jsonl or *.jsonl.zst files");
            }
            return files;
        } catch (IOException e) {
            throw new DataException("cannot list input " + pathOrGlob + ": " + e.getMessage(), e);
        }
    }

    private static boolean hasGlob(String s) {
        return s.indexOf('*') >= 0 || s.indexOf('?') >= 0 || s.indexOf('[') >= 0 || s.indexOf('{') >= 0;
    }

    private static List<Path> files(FileStatus[] statuses, boolean shardNamesOnly) {
        List<Path> out = new ArrayList<>();
        Arrays.stream(statuses)
                .filter(FileStatus::isFile)
                .map(FileStatus::getPath)
                .filter(p -> !shardNamesOnly || isShardName(p.getName()))
                .sorted(Comparator.comparing(Path::toString))
                .forEach(out::add);
        return out;
    }
}
