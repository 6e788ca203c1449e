package io.dtrain.data.shards;

import com.fasterxml.jackson.annotation.JsonProperty;
import io.dtrain.data.DataException;
import io.dtrain.data.fs.DataFiles;
import io.dtrain.data.reader.BadRecordPolicy;
import io.dtrain.data.reader.BadRecordReport;
import io.dtrain.data.tokenizer.Tokenizer;
import java.io.FileNotFoundException;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

/**
 * The parts of a preprocess split with {@code --part I/N} and their merge ({@code dtrain preprocess --merge}).
 *
 * <p>Shards are named after their input ({@code NAME-NNNNN.arrow}), so every part writes its shards straight into
 * the output directory under their final names: nothing is renamed or copied at merge time. What a part writes
 * instead of {@code manifest.json} is {@code OUTPUT/parts/I-of-N.json}, its {@link PartManifest}: the manifest of
 * its own inputs plus what the merge must check (the whole input list, the settings). The merge checks that all
 * {@code N} parts are there and agree, that every listed shard is present, concatenates the parts in index order
 * (the parts are contiguous blocks of the sorted inputs, so this is input order) into {@code manifest.json} — the
 * same bytes a single run writes — and then removes {@code parts/}. Merging again is harmless: with the parts
 * present it writes the same manifest again; once they are removed it finds the manifest and does nothing.
 */
public final class PreprocessParts {
    public static final String DIR = "parts";
    static final String FORMAT = "dtrain-token-shards-part";
    private static final Pattern PART_FILE = Pattern.compile("(\\d+)-of-(\\d+)\\.json");

    private PreprocessParts() {}

    /** What one part wrote: its inputs' manifest and the settings every part must share. */
    public record PartManifest(@JsonProperty("format") String format,
                               @JsonProperty("version") int version,
                               @JsonProperty("part") int part,
                               @JsonProperty("parts") int parts,
                               @JsonProperty("all_inputs") List<String> allInputs,
                               @JsonProperty("batch_tokens") int batchTokens,
                               @JsonProperty("bad_records") String badRecordPolicy,
                               @JsonProperty("manifest") Manifest manifest) {}

    /**
     * What the merge command was told; null fields were not given and are not checked. Given, they must match
     * what the parts used (the same command line with {@code --merge} instead of {@code --part} passes).
     */
    public record Expected(List<Path> inputs, Tokenizer tokenizer, Long shardBytes, Integer batchTokens,
                           BadRecordPolicy policy) {
        public static final Expected NOTHING = new Expected(null, null, null, null, null);
    }

    /** What a merge did; {@code alreadyMerged}: no parts were left and the manifest was there. */
    public record MergeResult(Manifest manifest, int parts, boolean alreadyMerged, BadRecordReport badRecords) {}

    static Path file(String output, PreprocessPart part) {
        return new Path(new Path(output, DIR), part.fileName());
    }

    static void write(String output, PreprocessPart part, List<Path> allInputs, Preprocessor.Options options,
                      Manifest manifest) {
        PartManifest pm = new PartManifest(FORMAT, Manifest.VERSION, part.index(), part.count(),
                allInputs.stream().map(DataFiles::display).toList(), options.batchTokens(),
                options.policy().name().toLowerCase(java.util.Locale.ROOT), manifest);
        DataFiles.writeAtomically(file(output, part), out -> out.write(Manifest.JSON.writeValueAsBytes(pm)));
    }

    /**
     * Before a part runs: its own old part manifest goes (the part is incomplete until it writes a new one), and so
     * do part manifests of another part count, left by an earlier array of another size that this one supersedes.
     */
    static void removeStale(String output, PreprocessPart part) {
        for (Map.Entry<PreprocessPart, Path> e : list(output).entrySet()) {
            if (e.getKey().equals(part) || e.getKey().count() != part.count()) {
                delete(e.getValue(), false);
            }
        }
    }

    /** A whole (unsplit) run supersedes any parts left in its output directory. */
    static void removeAll(String output) {
        delete(new Path(output, DIR), true);
    }

    /** Merges the parts in {@code output} into {@code manifest.json}; see the class comment. */
    public static MergeResult merge(String output, Expected expected) {
        Map<PreprocessPart, Path> found = list(output);
        if (found.isEmpty()) {
            if (Manifest.existsIn(output)) {
                Manifest m = Manifest.read(output);
                return new MergeResult(m, 0, true, restoredReport(m));
            }
            throw new DataException("no part manifests in " + new Path(output, DIR) + " and no manifest.json in "
                    + output + "; run `dtrain preprocess --part I/N` for every part I of N first");
        }
        TreeSet<Integer> counts = new TreeSet<>();
        found.keySet().forEach(p -> counts.add(p.count()));
        if (counts.size() > 1) {
            throw new DataException(output + "/" + DIR + " holds parts of " + counts.size() + " different part counts ("
                    + counts.stream().map(c -> "*-of-" + c + ".json").toList() + "); delete the files of the count"
                    + " you did not use last, re-run its missing parts if any, then merge again");
        }
        int n = counts.first();
        List<String> missing = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            if (!found.containsKey(new PreprocessPart(i, n))) {
                missing.add(i + "/" + n);
            }
        }
        if (!missing.isEmpty()) {
            throw new DataException(output + ": " + (missing.size() == 1 ? "part " + missing.get(0) + " has"
                    : "parts " + String.join(", ", missing) + " have") + " not finished (no " + DIR + "/" + missing.get(0).replace("/", "-of-") + ".json); run or re-run"
                    + " `dtrain preprocess --part " + missing.get(0) + "` with the same options, then merge again");
        }
        List<PartManifest> parts = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            parts.add(read(found.get(new PreprocessPart(i, n))));
        }
        check(output, parts, expected);
        Manifest merged = concatenate(output, parts);
        merged.write(output);
        removeAll(output);
        return new MergeResult(merged, n, false, restoredReport(merged));
    }

    private static void check(String output, List<PartManifest> parts, Expected expected) {
        PartManifest first = parts.get(0);
        for (PartManifest p : parts) {
            String name = "part " + p.part() + "/" + p.parts();
            String differs = differs(first, p);
            if (differs != null) {
                throw new DataException(output + ": " + name + " was run with " + differs + " than part 0/"
                        + p.parts() + "; re-run " + name + " with the same options as the others, then merge again");
            }
            List<String> own = new PreprocessPart(p.part(), p.parts()).select(p.allInputs());
            List<String> listed = p.manifest().inputs().stream().map(Manifest.InputInfo::file).toList();
            if (!own.equals(listed)) {
                throw new DataException(output + ": " + name + " holds inputs " + listed + " but its share of the"
                        + " input list is " + own + "; re-run " + name + ", then merge again");
            }
            for (ShardInfo s : p.manifest().shards()) {
                Path shard = new Path(output, s.file());
                FileStatus st = DataFiles.statusOrNull(shard);
                if (st == null || st.getLen() != s.bytes()) {
                    throw new DataException(output + ": " + name + " lists " + s.file() + " (" + s.bytes()
                            + " bytes), which is " + (st == null ? "missing" : st.getLen() + " bytes") + "; re-run "
                            + name + " (it keeps its complete shards), then merge again");
                }
            }
        }
        Manifest m = first.manifest();
        if (expected.inputs() != null) {
            List<String> given = expected.inputs().stream().map(DataFiles::display).toList();
            if (!given.equals(first.allInputs())) {
                throw new DataException(output + ": --input now gives " + given.size() + " file(s), the parts read "
                        + first.allInputs().size() + " (" + firstDifference(given, first.allInputs())
                        + "); merge with the --input the parts used, or re-run the parts");
            }
        }
        if (expected.tokenizer() != null && !expected.tokenizer().identity().equals(m.tokenizer().identity())) {
            throw new DataException(output + ": the parts used tokenizer " + m.tokenizer().identity() + ", --tokenizer"
                    + " gives " + expected.tokenizer().identity() + "; merge with the parts' tokenizer");
        }
        mustMatch(output, "--shard-size", expected.shardBytes(), m.shardSizeTarget());
        mustMatch(output, "--batch-tokens", expected.batchTokens(), first.batchTokens());
        mustMatch(output, "--bad-records", expected.policy() == null ? null
                : expected.policy().name().toLowerCase(java.util.Locale.ROOT), first.badRecordPolicy());
    }

    private static void mustMatch(String output, String option, Object given, Object used) {
        if (given != null && !given.equals(used)) {
            throw new DataException(output + ": the parts used " + option + " " + used + ", the merge was given "
                    + given + "; merge with the parts' options (or leave " + option + " out)");
        }
    }

    /** What makes part {@code p} incompatible with {@code first}, or null. */
    private static String differs(PartManifest first, PartManifest p) {
        if (!first.allInputs().equals(p.allInputs())) {
            return "another input list (" + firstDifference(p.allInputs(), first.allInputs()) + ")";
        }
        Manifest a = first.manifest();
        Manifest b = p.manifest();
        if (!a.tokenizer().equals(b.tokenizer())) {
            return "tokenizer " + b.tokenizer().identity() + " rather";
        }
        if (a.shardSizeTarget() != b.shardSizeTarget()) {
            return "--shard-size " + b.shardSizeTarget() + " rather";
        }
        if (first.batchTokens() != p.batchTokens()) {
            return "--batch-tokens " + p.batchTokens() + " rather";
        }
        if (!first.badRecordPolicy().equals(p.badRecordPolicy())) {
            return "--bad-records " + p.badRecordPolicy() + " rather";
        }
        return null;
    }

    private static String firstDifference(List<String> a, List<String> b) {
        for (int i = 0; i < Math.min(a.size(), b.size()); i++) {
            if (!a.get(i).equals(b.get(i))) {
                return "file " + (i + 1) + ": " + a.get(i) + " vs " + b.get(i);
            }
        }
        return a.size() + " vs " + b.size() + " files";
    }

    /** The parts' manifests in index order as one: what a single run over all inputs writes. */
    private static Manifest concatenate(String output, List<PartManifest> parts) {
        Manifest first = parts.get(0).manifest();
        List<Manifest.InputInfo> inputs = new ArrayList<>();
        List<ShardInfo> shards = new ArrayList<>();
        List<String> examples = new ArrayList<>();
        Map<String, ShardInfo.SetCount> sets = new TreeMap<>();
        long documents = 0;
        long tokens = 0;
        long bad = 0;
        for (PartManifest p : parts) {
            Manifest m = p.manifest();
            inputs.addAll(m.inputs());
            shards.addAll(m.shards());
            examples.addAll(m.badRecordExamples());
            ShardInfo.addTo(sets, m.pileSetNames());
            documents += m.documents();
            tokens += m.tokens();
            bad += m.badRecords();
        }
        if (documents == 0) {
            throw new DataException("no documents in the " + inputs.size() + " input file(s) of " + output + " ("
                    + bad + " bad record(s) skipped" + (examples.isEmpty() ? "" : ", first: " + examples.get(0))
                    + "); check the input path and the files");
        }
        return new Manifest(Manifest.FORMAT, Manifest.VERSION, first.tokenizer(), first.tokenType(), documents, tokens,
                bad, examples.subList(0, Math.min(examples.size(), BadRecordReport.MAX_KEPT)), first.shardSizeTarget(),
                sets, inputs, shards);
    }

    private static BadRecordReport restoredReport(Manifest m) {
        return BadRecordReport.restored(m.badRecords(),
                m.badRecordExamples().stream().map(BadRecordReport.BadRecord::parse).toList());
    }

    private static PartManifest read(Path path) {
        PartManifest pm;
        try {
            pm = Manifest.JSON.readValue(DataFiles.readAllBytes(path), PartManifest.class);
        } catch (IOException e) {
            throw new DataException(DataFiles.display(path) + ": not a valid part manifest: " + e.getMessage()
                    + "; re-run that part", e);
        }
        if (!FORMAT.equals(pm.format()) || pm.version() != Manifest.VERSION || pm.manifest() == null
                || !Objects.equals(pm.part() + "-of-" + pm.parts() + ".json", path.getName())) {
            throw new DataException(DataFiles.display(path) + ": not a part manifest of this dtrain (format "
                    + pm.format() + " version " + pm.version() + "); re-run that part");
        }
        return pm;
    }

    /** The part manifests in {@code OUTPUT/parts/} by part. */
    private static Map<PreprocessPart, Path> list(String output) {
        Path dir = new Path(output, DIR);
        FileSystem fs = DataFiles.fileSystem(dir);
        Map<PreprocessPart, Path> found = new TreeMap<>((a, b) -> a.count() != b.count()
                ? Integer.compare(a.count(), b.count()) : Integer.compare(a.index(), b.index()));
        try {
            for (FileStatus st : fs.listStatus(dir)) {
                Matcher m = PART_FILE.matcher(st.getPath().getName());
                if (st.isFile() && m.matches()) {
                    int i = Integer.parseInt(m.group(1));
                    int n = Integer.parseInt(m.group(2));
                    if (n >= 1 && i < n) {
                        found.put(new PreprocessPart(i, n), st.getPath());
                    }
                }
            }
        } catch (FileNotFoundException e) {
            return found;
        } catch (IOException e) {
            throw new DataException(DataFiles.display(dir) + ": cannot list the part manifests: " + e.getMessage(), e);
        }
        return found;
    }

    private static void delete(Path path, boolean recursive) {
        try {
            DataFiles.fileSystem(path).delete(path, recursive);
        } catch (IOException e) {
            throw new DataException(DataFiles.display(path) + ": cannot delete: " + e.getMessage(), e);
        }
    }
}
