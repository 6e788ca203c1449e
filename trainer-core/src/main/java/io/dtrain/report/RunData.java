package io.dtrain.report;

import io.dtrain.metrics.StepFields;
import io.dtrain.metrics.SystemFields;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/**
 * The measurements of a finished (or crashed) run, read back from its {@code metrics/} directory: per rank,
 * the step records and the system samples. A last line cut off by a crash is dropped with a warning; any other
 * malformed line is an error naming file and line.
 */
public final class RunData {
    private static final Pattern FILE = Pattern.compile("(steps|system)-rank(\\d+)\\.jsonl");
    private static final ObjectMapper JSON = new ObjectMapper();

    /** One step record (fields absent in older files are NaN). */
    public record Step(long step, long wallMillis, double loss, double lr, double stepMs, double dataWaitMs,
                       double computeMs, double forwardMs, double backwardMs, double optimizerMs, double commMs,
                       double tokensPerSecond, double mfu, boolean skipped, double bubbleMs) {

        public double otherMs() {
            return Math.max(0, stepMs - dataWaitMs - computeMs - optimizerMs - (Double.isNaN(commMs) ? 0 : commMs)
                    - (Double.isNaN(bubbleMs) ? 0 : bubbleMs));
        }
    }

    /** One evaluation record: the mean validation loss after {@code step} optimizer steps. */
    public record Eval(long step, long wallMillis, double valLoss) {
    }

    /**
     * What one rank recorded: step and evaluation records (the {@code type} of a line of the steps file), system
     * samples kept as parsed JSON (fields: {@link SystemFields}).
     */
    public record Rank(int rank, List<Step> steps, List<Eval> evals, List<JsonNode> samples) {
    }

    private final Path runDir;
    private final List<Rank> ranks;
    private final List<String> warnings;

    private RunData(Path runDir, List<Rank> ranks, List<String> warnings) {
        this.runDir = runDir;
        this.ranks = ranks;
        this.warnings = warnings;
    }

    public Path runDir() {
        return runDir;
    }

    /** Ranks in order, each with at least one of steps or samples. */
    public List<Rank> ranks() {
        return ranks;
    }

    /** Lines dropped (a crash's partial last line). */
    public List<String> warnings() {
        return warnings;
    }

    public static RunData load(Path runDir) {
        Path dir = runDir.resolve("metrics");
        if (!Files.isDirectory(dir)) {
            throw new ReportException(runDir + " is not a run directory: it has no metrics/ folder (pass the "
                    + "output.dir of a training run)");
        }
        Map<Integer, List<Step>> steps = new TreeMap<>();
        Map<Integer, List<Eval>> evals = new TreeMap<>();
        Map<Integer, List<JsonNode>> samples = new TreeMap<>();
        List<String> warnings = new ArrayList<>();
        List<Path> files;
        try (Stream<Path> s = Files.list(dir)) {
            files = s.sorted().toList();
        } catch (IOException e) {
            throw new ReportException("cannot list " + dir + ": " + e.getMessage());
        }
        for (Path f : files) {
            Matcher m = FILE.matcher(f.getFileName().toString());
            if (!m.matches()) {
                continue;
            }
            int rank = Integer.parseInt(m.group(2));
            List<JsonNode> lines = readLines(f, warnings);
            if (m.group(1).equals("steps")) {
                List<Step> out = steps.computeIfAbsent(rank, r -> new ArrayList<>());
                List<Eval> evaluations = evals.computeIfAbsent(rank, r -> new ArrayList<>());
                for (JsonNode n : lines) {
                    if (StepFields.TYPE_EVAL.equals(n.path(StepFields.TYPE).asText(StepFields.TYPE_STEP))) {
                        evaluations.add(new Eval(n.path(StepFields.STEP).asLong(), n.path(StepFields.TS).asLong(),
                                num(n, StepFields.VAL_LOSS)));
                    } else {
                        out.add(step(n));
                    }
                }
            } else {
                samples.computeIfAbsent(rank, r -> new ArrayList<>()).addAll(lines);
            }
        }
        if (steps.isEmpty() && samples.isEmpty()) {
            throw new ReportException(dir + " holds no steps-rank*.jsonl or system-rank*.jsonl: nothing to report");
        }
        TreeMap<Integer, Rank> ranks = new TreeMap<>();
        for (int r : steps.keySet()) {
            ranks.put(r, new Rank(r, steps.get(r), evals.get(r), samples.getOrDefault(r, List.of())));
        }
        for (int r : samples.keySet()) {
            ranks.putIfAbsent(r, new Rank(r, List.of(), List.of(), samples.get(r)));
        }
        return new RunData(runDir, List.copyOf(ranks.values()), warnings);
    }

    private static List<JsonNode> readLines(Path f, List<String> warnings) {
        List<String> text;
        try {
            text = Files.readAllLines(f);
        } catch (IOException e) {
            throw new ReportException("cannot read " + f + ": " + e.getMessage());
        }
        List<JsonNode> out = new ArrayList<>();
        for (int i = 0; i < text.size(); i++) {
            String line = text.get(i);
            if (line.isBlank()) {
                continue;
            }
            try {
                JsonNode n = JSON.readTree(line);
                if (!n.isObject()) {
                    throw new ReportException(f + ":" + (i + 1) + ": expected a JSON object, got " + abbreviate(line));
                }
                out.add(n);
            } catch (JsonProcessingException e) {
                if (i == text.size() - 1) {
                    warnings.add(f + ":" + (i + 1) + ": incomplete last line dropped (the run was cut off while writing it)");
                } else {
                    throw new ReportException(f + ":" + (i + 1) + ": not a JSON line (" + e.getOriginalMessage()
                            + "): " + abbreviate(line) + "; the file is damaged: fix or delete the line");
                }
            }
        }
        return out;
    }

    private static String abbreviate(String s) {
        return s.length() <= 80 ? s : s.substring(0, 77) + "...";
    }

    private static Step step(JsonNode n) {
        return new Step(n.path(StepFields.STEP).asLong(), n.path(StepFields.TS).asLong(), num(n, StepFields.LOSS),
                num(n, StepFields.LR), num(n, StepFields.STEP_MS), num(n, StepFields.DATA_WAIT_MS),
                num(n, StepFields.COMPUTE_MS), num(n, StepFields.FORWARD_MS), num(n, StepFields.BACKWARD_MS),
                num(n, StepFields.OPTIMIZER_MS), num(n, StepFields.COMM_MS), num(n, StepFields.TOKENS_PER_S),
                num(n, StepFields.MFU), n.path(StepFields.SKIPPED).asBoolean(false), num(n, StepFields.BUBBLE_MS));
    }

    /** A number field; NaN when absent, null or a string such as "NaN". */
    static double num(JsonNode n, String field) {
        JsonNode v = n.get(field);
        if (v == null || v.isNull()) {
            return Double.NaN;
        }
        if (v.isNumber()) {
            return v.asDouble();
        }
        try {
            return Double.parseDouble(v.asText());
        } catch (NumberFormatException e) {
            return Double.NaN;
        }
    }
}
