package io.dtrain.metrics;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.regex.Pattern;

/**
 * A strict parser of Prometheus's text exposition format, version 0.0.4 (the Prometheus Java client has none), as
 * the format's specification states it: lines end with '\n'; {@code # HELP name text} and {@code # TYPE name type}
 * at most once per family and before its samples; a family's samples contiguous; metric and label names match the
 * specified patterns; label values use only the escapes \\, \" and \n; values are Go floats, NaN or +/-Inf; no
 * label repeated. Counters' samples are {@code <family>} (the client names counter families with their
 * {@code _total}); a histogram's are {@code _bucket} with an {@code le} label (cumulative, ending with +Inf equal to
 * {@code _count}), {@code _sum} and {@code _count}. Anything else fails with the line number.
 */
final class PrometheusText {
    private static final Pattern METRIC_NAME = Pattern.compile("[a-zA-Z_:][a-zA-Z0-9_:]*");
    private static final Pattern LABEL_NAME = Pattern.compile("[a-zA-Z_][a-zA-Z0-9_]*");
    private static final Pattern FLOAT = Pattern.compile("[+-]?(\\d+(\\.\\d*)?|\\.\\d+)([eE][+-]?\\d+)?|NaN|[+-]Inf");
    private static final List<String> TYPES = List.of("counter", "gauge", "histogram", "summary", "untyped");

    record Sample(String name, Map<String, String> labels, double value) {
    }

    record Family(String name, String type, String help, List<Sample> samples) {
        /** The value of the one sample with these labels (among others); fails if there is not exactly one. */
        double value(String sampleName, Map<String, String> having) {
            List<Sample> found = samples.stream().filter(s -> s.name().equals(sampleName)
                    && s.labels().entrySet().containsAll(having.entrySet())).toList();
            if (found.size() != 1) {
                throw new AssertionError(found.size() + " samples " + sampleName + " with " + having + " in " + samples);
            }
            return found.get(0).value();
        }
    }

    private PrometheusText() {
    }

    static Map<String, Family> parse(String text) {
        if (!text.isEmpty() && !text.endsWith("\n")) {
            throw new AssertionError("the exposition does not end with a newline");
        }
        Map<String, Family> families = new LinkedHashMap<>();
        Map<String, String> help = new TreeMap<>();
        Family current = null;
        String[] lines = text.split("\n", -1);
        for (int i = 0; i < lines.length - 1; i++) {
            String line = lines[i];
            String where = "line " + (i + 1) + ": " + line;
            if (line.isEmpty()) {
                continue;
            }
            if (line.startsWith("#")) {
                String[] parts = line.split(" ", 4);
                if (parts.length >= 3 && parts[1].equals("HELP")) {
                    require(METRIC_NAME.matcher(parts[2]).matches(), where, "bad metric name");
                    require(help.put(parts[2], parts.length == 4 ? parts[3] : "") == null, where, "second HELP");
                } else if (parts.length == 4 && parts[1].equals("TYPE")) {
                    require(METRIC_NAME.matcher(parts[2]).matches(), where, "bad metric name");
                    require(TYPES.contains(parts[3]), where, "unknown type");
                    require(!families.containsKey(parts[2]), where, "second TYPE, or TYPE after its samples");
                    current = new Family(parts[2], parts[3], help.get(parts[2]), new ArrayList<>());
                    families.put(parts[2], current);
                }
                continue;
            }
            Sample s = sample(line, where);
            require(current != null && belongs(s.name(), current), where, "sample outside its family's block");
            current.samples().add(s);
        }
        for (Family f : families.values()) {
            require(f.help() != null, f.name(), "no HELP");
            if (f.type().equals("histogram")) {
                checkHistogram(f);
            }
        }
        return families;
    }

    private static boolean belongs(String sample, Family f) {
        return switch (f.type()) {
            case "histogram" -> sample.equals(f.name() + "_bucket") || sample.equals(f.name() + "_sum")
                    || sample.equals(f.name() + "_count");
            case "summary" -> sample.equals(f.name()) || sample.equals(f.name() + "_sum") || sample.equals(f.name() + "_count");
            default -> sample.equals(f.name());
        };
    }

    private static Sample sample(String line, String where) {
        int i = 0;
        while (i < line.length() && line.charAt(i) != '{' && line.charAt(i) != ' ') {
            i++;
        }
        String name = line.substring(0, i);
        require(METRIC_NAME.matcher(name).matches(), where, "bad metric name");
        Map<String, String> labels = new LinkedHashMap<>();
        if (i < line.length() && line.charAt(i) == '{') {
            i++;
            while (line.charAt(i) != '}') {
                int eq = line.indexOf('=', i);
                require(eq > 0, where, "label without =");
                String label = line.substring(i, eq);
                require(LABEL_NAME.matcher(label).matches(), where, "bad label name " + label);
                require(line.charAt(eq + 1) == '"', where, "label value not quoted");
                StringBuilder value = new StringBuilder();
                int j = eq + 2;
                for (; line.charAt(j) != '"'; j++) {
                    char c = line.charAt(j);
                    if (c == '\\') {
                        char e = line.charAt(++j);
                        require(e == '\\' || e == '"' || e == 'n', where, "bad escape \\" + e);
                        value.append(e == 'n' ? '\n' : e);
                    } else {
                        value.append(c);
                    }
                }
                require(labels.put(label, value.toString()) == null, where, "label " + label + " repeated");
                i = j + 1;
                if (line.charAt(i) == ',') {
                    i++;
                }
            }
            i++;
        }
        require(i < line.length() && line.charAt(i) == ' ', where, "no space before the value");
        String[] rest = line.substring(i + 1).split(" ");
        require(rest.length == 1 || rest.length == 2, where, "expected a value and an optional timestamp");
        require(FLOAT.matcher(rest[0]).matches(), where, "bad value");
        double v = rest[0].equals("NaN") ? Double.NaN : rest[0].equals("+Inf") ? Double.POSITIVE_INFINITY
                : rest[0].equals("-Inf") ? Double.NEGATIVE_INFINITY : Double.parseDouble(rest[0]);
        return new Sample(name, labels, v);
    }

    /** Per label set (without le): buckets cumulative in increasing le, the last +Inf, equal to _count. */
    private static void checkHistogram(Family f) {
        Map<Map<String, String>, List<Sample>> buckets = new LinkedHashMap<>();
        for (Sample s : f.samples()) {
            if (s.name().endsWith("_bucket")) {
                Map<String, String> key = new TreeMap<>(s.labels());
                require(key.remove("le") != null, f.name(), "bucket without le");
                buckets.computeIfAbsent(key, k -> new ArrayList<>()).add(s);
            }
        }
        for (Map.Entry<Map<String, String>, List<Sample>> e : buckets.entrySet()) {
            double previousLe = Double.NEGATIVE_INFINITY;
            double previousCount = 0;
            for (Sample b : e.getValue()) {
                double le = b.labels().get("le").equals("+Inf") ? Double.POSITIVE_INFINITY : Double.parseDouble(b.labels().get("le"));
                require(le > previousLe && b.value() >= previousCount, f.name(), "buckets not cumulative: " + e.getValue());
                previousLe = le;
                previousCount = b.value();
            }
            require(previousLe == Double.POSITIVE_INFINITY, f.name(), "no +Inf bucket");
            require(previousCount == f.value(f.name() + "_count", e.getKey()), f.name(), "+Inf bucket != _count");
        }
    }

    private static void require(boolean ok, String where, String what) {
        if (!ok) {
            throw new AssertionError("not the Prometheus text format: " + what + " (" + where + ")");
        }
    }
}
