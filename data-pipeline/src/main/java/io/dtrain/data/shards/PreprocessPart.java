package io.dtrain.data.shards;

import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * One part of a preprocess split across several processes ({@code dtrain preprocess --part INDEX/COUNT}, e.g. one
 * task of a Slurm array): the part takes a contiguous block of the sorted input list, so every part computes the
 * same split without talking to the others, and concatenating the parts in index order gives the inputs in order,
 * which is what makes the merged manifest identical to a single run's. Parts differ in size by at most one input; a
 * part with no inputs (more parts than inputs) is valid and writes an empty part manifest.
 *
 * @param index this part, {@code 0..count-1}
 * @param count the number of parts
 */
public record PreprocessPart(int index, int count) {
    private static final Pattern SYNTAX = Pattern.compile("\\s*(\\d{1,9})\\s*/\\s*(\\d{1,9})\\s*");

    public PreprocessPart {
        if (count < 1) {
            throw new IllegalArgumentException("--part " + index + "/" + count + ": the number of parts must be at"
                    + " least 1");
        }
        if (index < 0 || index >= count) {
            throw new IllegalArgumentException("--part " + index + "/" + count + ": the part index counts from 0 and"
                    + " must be 0.." + (count - 1) + " (a Slurm array for " + count + " parts is --array=0-"
                    + (count - 1) + ")");
        }
    }

    /** Reads {@code I/N}; a clear message for anything else. */
    public static PreprocessPart parse(String text) {
        Matcher m = SYNTAX.matcher(text == null ? "" : text);
        if (!m.matches()) {
            String hint = text != null && text.replace("/", "").isBlank()
                    ? " (empty: SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT are only set in an array job, sbatch --array)"
                    : "";
            throw new IllegalArgumentException("--part '" + text + "' must be INDEX/COUNT: this part's index from 0"
                    + " and the number of parts, e.g. --part 0/4 or --part $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT"
                    + hint);
        }
        return new PreprocessPart(Integer.parseInt(m.group(1)), Integer.parseInt(m.group(2)));
    }

    /**
     * The inputs of this part: the block {@code [ceil(index*n/count), ceil((index+1)*n/count))} of {@code all}
     * (sorted); with more parts than inputs the last parts are the empty ones.
     */
    public <T> List<T> select(List<T> all) {
        return all.subList(start(all.size()), start(all.size(), index + 1));
    }

    private int start(int n) {
        return start(n, index);
    }

    private int start(int n, int i) {
        return (int) (((long) i * n + count - 1) / count);
    }

    /** The part manifest's file name in {@code OUTPUT/parts/}: {@code 2-of-8.json}. */
    public String fileName() {
        return index + "-of-" + count + ".json";
    }

    @Override
    public String toString() {
        return index + "/" + count;
    }
}
