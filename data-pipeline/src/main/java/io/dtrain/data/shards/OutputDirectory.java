package io.dtrain.data.shards;

import io.dtrain.data.DataException;
import io.dtrain.data.fs.DataFiles;
import io.dtrain.data.tokenizer.Tokenizer;
import java.io.IOException;
import java.io.InputStream;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

/**
 * The output directory of {@link Preprocessor} as a re-run finds it: which shards an earlier run completed (kept, not
 * rewritten), their hashes, the temporaries and the manifest it must remove first. Apart from the preprocessor
 * because this is what makes a re-run safe (nothing complete is rewritten, nothing half-written is trusted) and the
 * part to read when a resume goes wrong; the preprocessor only asks what is done and writes the rest.
 */
final class OutputDirectory {
    private final String output;
    private final Path outDir;
    private final Tokenizer tokenizer;

    /** {@code output} as the user gave it (named in errors); {@code tokenizer}: kept shards must have been made with it. */
    OutputDirectory(String output, Tokenizer tokenizer) {
        this.output = output;
        this.outDir = new Path(output);
        this.tokenizer = tokenizer;
    }

    /** Input {@code NAME.jsonl.zst} writes shards {@code NAME-NNNNN.arrow}: two inputs must not share a NAME. */
    static void checkShardNames(List<Path> inputs) {
        Map<String, Path> stems = new HashMap<>();
        for (Path p : inputs) {
            Path clash = stems.put(ShardFormat.stem(p.getName()), p);
            if (clash != null) {
                throw new DataException("inputs " + DataFiles.display(clash) + " and " + DataFiles.display(p)
                        + " would both write shards named " + ShardFormat.stem(p.getName()) + "-NNNNN.arrow;"
                        + " preprocess them into separate output directories");
            }
        }
    }

    Path shard(String name) {
        return new Path(outDir, name);
    }

    /**
     * Creates the directory and deletes the temporaries an interrupted run left (never a complete file): all of them,
     * or with {@code onlyOf} non-null only those of these inputs' shards (parts running side by side); returns
     * whether the directory is new.
     */
    boolean prepare(List<Path> onlyOf) {
        Set<String> stems = onlyOf == null ? null
                : onlyOf.stream().map(p -> ShardFormat.stem(p.getName())).collect(Collectors.toSet());
        FileSystem fs = DataFiles.fileSystem(outDir);
        try {
            boolean existed = fs.exists(outDir);
            if (existed && !fs.getFileStatus(outDir).isDirectory()) {
                throw new DataException("output " + output + " is a file; give a directory");
            }
            fs.mkdirs(outDir);
            for (FileStatus st : fs.listStatus(outDir)) {
                String name = st.getPath().getName();
                if (DataFiles.isTemporary(name) && (stems == null || stems.contains(temporaryStem(name)))) {
                    fs.delete(st.getPath(), false);  // left by an interrupted run; never a complete file
                }
            }
            return !existed;
        } catch (IOException e) {
            throw new DataException(DataFiles.display(outDir) + ": cannot prepare the output directory: "
                    + e.getMessage(), e);
        }
    }

    /** The input stem of a shard temporary ({@code .00-00003.arrow.tmp-12-1} -> {@code 00}), or "" for others. */
    private static String temporaryStem(String name) {
        Matcher m = SHARD_TEMPORARY.matcher(name);
        return m.matches() ? m.group(1) : "";
    }

    private static final Pattern SHARD_TEMPORARY = Pattern.compile("\\.(.+)-\\d{5,}\\.arrow\\.tmp.*");

    /** The SHA-256 of each shard the previous manifest lists, by file name and size: kept shards need no re-hash. */
    Map<String, String> hashesOfPreviousManifest() {
        Map<String, String> hashes = new HashMap<>();
        if (Manifest.existsIn(output)) {
            try {
                addHashes(hashes, Manifest.read(output));
            } catch (DataException e) {
                // an unreadable old manifest only costs re-hashing the shards
            }
        }
        return hashes;
    }

    /** The same from a part's earlier part manifest (a part re-run before the merge). */
    Map<String, String> hashesOfPartManifest(PreprocessPart part) {
        Map<String, String> hashes = new HashMap<>();
        Path file = PreprocessParts.file(output, part);
        if (DataFiles.isFile(file)) {
            try {
                Manifest m = Manifest.JSON.readValue(DataFiles.readAllBytes(file),
                        PreprocessParts.PartManifest.class).manifest();
                if (m != null) {
                    addHashes(hashes, m);
                }
            } catch (IOException | DataException e) {
                // as above: only costs re-hashing
            }
        }
        return hashes;
    }

    private static void addHashes(Map<String, String> hashes, Manifest m) {
        for (ShardInfo s : m.shards()) {
            hashes.put(s.file() + "/" + s.bytes(), s.sha256());
        }
    }

    /** The complete shards a previous run left for {@code input}: consecutive from index 0, readable, same tokenizer. */
    List<ShardInfo> completeShards(Path input) {
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
            if (!tokenizer.identity().equals(layout.tokenizerIdentity())) {
                throw new DataException(DataFiles.display(shard) + " was made with tokenizer "
                        + layout.tokenizerIdentity() + ", this run uses " + tokenizer.identity()
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

    /** {@code s} with its SHA-256: from {@code known} (the previous manifest) or read again. */
    ShardInfo withHash(ShardInfo s, Map<String, String> known) {
        String sha = known.get(s.file() + "/" + s.bytes());
        if (sha == null) {
            MessageDigest digest = HashingOutputStream.sha256();
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

    /**
     * A run that produced nothing usable leaves nothing behind: deletes the shards it wrote, and the directory too
     * when the run created it and it is empty now. Best effort: the run is failing anyway.
     */
    void discard(List<ShardInfo> written, boolean created) {
        FileSystem fs = DataFiles.fileSystem(outDir);
        try {
            for (ShardInfo s : written) {
                fs.delete(new Path(outDir, s.file()), false);
            }
            if (created && fs.listStatus(outDir).length == 0) {
                fs.delete(outDir, false);
            }
        } catch (IOException e) {
            // what is left is named by the error the caller throws
        }
    }

    /** The dataset is incomplete until this run writes a new manifest. */
    void removeManifest() {
        FileSystem fs = DataFiles.fileSystem(outDir);
        try {
            fs.delete(new Path(outDir, Manifest.FILE_NAME), false);
        } catch (IOException e) {
            throw new DataException(DataFiles.display(outDir) + ": cannot remove the old manifest: " + e.getMessage(), e);
        }
    }
}
