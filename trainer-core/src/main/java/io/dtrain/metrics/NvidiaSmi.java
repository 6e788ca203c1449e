package io.dtrain.metrics;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;

/**
 * GPU readings from {@code nvidia-smi --query-gpu=... --format=csv -lms N}: one long-running child process whose
 * CSV lines a daemon thread parses, keeping the newest reading of every GPU for the sampler to pick up.
 *
 * <p>The parser accepts the header line or none, and values with units ({@code 97 %}, {@code 15210 MiB},
 * {@code 243.51 W}) or without ({@code --format=csv,noheader,nounits}); columns are matched by the header's names
 * when there is one, else taken in the order of {@link #QUERY}.
 */
public final class NvidiaSmi implements AutoCloseable {
    /** The fields queried, in this order. */
    public static final List<String> QUERY = List.of("timestamp", "index", "name", "utilization.gpu",
            "utilization.memory", "memory.used", "memory.total", "power.draw", "temperature.gpu");

    private final Process process;
    private final Thread reader;
    private final Map<Integer, GpuSample> latest = new ConcurrentHashMap<>();

    private NvidiaSmi(Process process) {
        this.process = process;
        this.reader = new Thread(this::readLines, "nvidia-smi-reader");
        reader.setDaemon(true);
        reader.start();
    }

    /** nvidia-smi on {@code pathEnv} (a PATH value), if any. */
    public static Optional<Path> find(String pathEnv) {
        if (pathEnv == null) {
            return Optional.empty();
        }
        for (String dir : pathEnv.split(java.io.File.pathSeparator)) {
            if (dir.isEmpty()) {
                continue;
            }
            Path p = Path.of(dir, "nvidia-smi");
            if (Files.isRegularFile(p) && Files.isExecutable(p)) {
                return Optional.of(p);
            }
        }
        return Optional.empty();
    }

    /** Starts {@code executable} sampling every {@code intervalMs}. */
    public static NvidiaSmi start(Path executable, int intervalMs) throws IOException {
        ProcessBuilder pb = new ProcessBuilder(executable.toString(), "--query-gpu=" + String.join(",", QUERY),
                "--format=csv", "-lms", Integer.toString(Math.max(1, intervalMs)));
        pb.redirectErrorStream(true);
        return new NvidiaSmi(pb.start());
    }

    /** The newest reading of each GPU, by index. */
    public List<GpuSample> latest() {
        return new ArrayList<>(new TreeMap<>(latest).values());
    }

    private void readLines() {
        Parser parser = new Parser();
        try (BufferedReader r = new BufferedReader(new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8))) {
            for (String line; (line = r.readLine()) != null; ) {
                parser.parse(line).ifPresent(s -> latest.put(s.index(), s));
            }
        } catch (IOException | RuntimeException e) {
            // The process was closed or printed something unexpected: keep the last readings, stop reading.
        }
    }

    @Override
    public void close() {
        process.destroy();
        try {
            reader.join(2000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** Parses nvidia-smi CSV lines one at a time; a header line (re)defines the column order. */
    public static final class Parser {
        private List<String> columns = QUERY;

        /** The reading on {@code line}, or empty for a header, blank or unparseable line. */
        public Optional<GpuSample> parse(String line) {
            String trimmed = line.strip();
            if (trimmed.isEmpty()) {
                return Optional.empty();
            }
            List<String> cells = Arrays.stream(trimmed.split(",")).map(String::strip).toList();
            if (cells.contains("index") || cells.stream().anyMatch(c -> c.startsWith("utilization.gpu"))) {
                // "utilization.gpu [%]": the unit in brackets is dropped.
                columns = cells.stream().map(c -> c.replaceAll("\\s*\\[.*]$", "")).toList();
                return Optional.empty();
            }
            if (cells.size() != columns.size()) {
                return Optional.empty();
            }
            try {
                int index = (int) number(cell(cells, "index"));
                String name = columns.contains("name") ? cell(cells, "name") : "";
                return Optional.of(new GpuSample(index, name, number(cell(cells, "utilization.gpu")),
                        mib(cell(cells, "memory.used")), mib(cell(cells, "memory.total")),
                        number(cell(cells, "power.draw")), number(cell(cells, "temperature.gpu"))));
            } catch (NumberFormatException e) {
                return Optional.empty();
            }
        }

        private String cell(List<String> cells, String column) {
            int i = columns.indexOf(column);
            return i < 0 ? "[N/A]" : cells.get(i);
        }

        /** "97 %", "243.51 W", "64", "[N/A]" -> 97, 243.51, 64, NaN. */
        static double number(String cell) {
            if (cell.startsWith("[")) {
                return Double.NaN;
            }
            String v = cell.replaceAll("\\s*(%|MiB|W|C)$", "");
            return Double.parseDouble(v.toUpperCase(Locale.ROOT));
        }

        private static long mib(String cell) {
            double v = number(cell);
            return Double.isNaN(v) ? -1 : Math.round(v * 1024 * 1024);
        }
    }
}
