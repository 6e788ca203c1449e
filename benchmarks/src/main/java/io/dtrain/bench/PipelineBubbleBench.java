package io.dtrain.bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.dtrain.parallel.PeerLinks;
import io.dtrain.parallel.ProcessGroup;
import io.dtrain.parallel.pipeline.Op;
import io.dtrain.parallel.pipeline.PipelineSchedule;
import io.dtrain.parallel.pipeline.PipelineSimulator;
import io.dtrain.parallel.pipeline.Simulation;
import io.dtrain.parallel.spawn.WorkerJvm;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.BitSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * The pipeline bubble on synthetic stages of fixed, equal cost: P real processes (one per stage) join a
 * {@link ProcessGroup}, open {@link PeerLinks} to their neighbours and run their op lists from the schedule, with
 * FORWARD = sleep(f), BACKWARD = sleep(b) and SEND/RECV = a 16-float tensor over the link. Sleeping stages do not
 * compete for the CPU, so what is measured is the schedule and the transport, not the machine's cores.
 *
 * <p>Without {@code --worker} this is the coordinator: it starts the P stage processes on this host (torchrun-style
 * environment), collects what they measured and prints one Markdown table (or JSON lines). Per step and stage:
 * <ul>
 *   <li><b>pipeline bubble</b> = 1 - busy / (end of the step's last stage - this stage's start), the idle share of
 *       the P x makespan stage-time that (P - 1) / (M + P - 1) describes. Stages' ends are compared on
 *       {@link System#nanoTime}, which on Linux is CLOCK_MONOTONIC and shared by the processes of one host;</li>
 *   <li><b>executor bubble</b> = time in {@link PeerLinks#await} / the stage's own start-to-finish time: what the
 *       trainer's {@code StageExecutor} reports as {@code bubble_ms / (compute_ms + bubble_ms)}. It leaves out the
 *       later stages' tail (they finish before stage 0's last backward), so it is below theory by design;</li>
 *   <li><b>peak live</b> = the most micro-batches forwarded and not yet backwarded (activations a real stage holds).</li>
 * </ul>
 * A step's figure is the mean over stages; the table shows the median over the measured steps, next to the
 * theory and the exact value of {@link PipelineSimulator} for the same costs (communication free).
 */
@Command(name = "pipeline-bubble-bench", mixinStandardHelpOptions = true,
        description = "Pipeline bubble of GPipe and 1F1B on sleep-based stages, one process per stage.")
public final class PipelineBubbleBench implements Callable<Integer> {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String RESULT = "RESULT ";

    @Option(names = "--stages", description = "pipeline stages P = processes (default ${DEFAULT-VALUE})")
    int stages = 4;

    @Option(names = "--microbatches", split = ",", description = "micro-batches per step M (default 1,2,4,8,16)")
    List<Integer> microbatches = List.of(1, 2, 4, 8, 16);

    @Option(names = "--schedules", split = ",", description = "schedules (default gpipe,1f1b)")
    List<String> schedules = List.of("gpipe", "1f1b");

    @Option(names = "--forward-ms", description = "cost of one stage's forward of one micro-batch (default ${DEFAULT-VALUE})")
    double forwardMs = 20;

    @Option(names = "--backward-ms", description = "cost of one stage's backward (default ${DEFAULT-VALUE}: 2 x forward, as a real model)")
    double backwardMs = 40;

    @Option(names = "--steps", description = "steps per (schedule, M), the first --warmup discarded (default ${DEFAULT-VALUE})")
    int steps = 6;

    @Option(names = "--warmup", description = "steps discarded (default ${DEFAULT-VALUE})")
    int warmup = 1;

    @Option(names = "--format", description = "markdown or json (one line per schedule and M) (default ${DEFAULT-VALUE})")
    String format = "markdown";

    @Option(names = "--worker", hidden = true, description = "run as one stage (environment: RANK, WORLD_SIZE, ...)")
    boolean worker;

    public static void main(String[] args) {
        System.exit(new CommandLine(new PipelineBubbleBench()).execute(args));
    }

    @Override
    public Integer call() throws Exception {
        if (stages < 2 || steps <= warmup || warmup < 0 || forwardMs <= 0 || backwardMs <= 0
                || microbatches.stream().anyMatch(m -> m < 1)) {
            throw new CommandLine.ParameterException(new CommandLine(this), "need --stages >= 2, --steps > --warmup >= 0, "
                    + "positive --forward-ms/--backward-ms and every --microbatches >= 1");
        }
        if (!format.equals("markdown") && !format.equals("json")) {
            throw new CommandLine.ParameterException(new CommandLine(this), "--format must be markdown or json, got " + format);
        }
        schedules.forEach(PipelineSchedule::byName); // fails early on an unknown name
        return worker ? runStage() : coordinate();
    }

    // ------------------------------------------------------------------ one stage process

    private int runStage() {
        long forwardNanos = Math.round(forwardMs * 1e6);
        long backwardNanos = Math.round(backwardMs * 1e6);
        try (ProcessGroup world = ProcessGroup.fromEnvironment()) {
            int p = world.size();
            int stage = world.rank();
            int[] neighbours = stage == 0 ? new int[] {1}
                    : stage == p - 1 ? new int[] {stage - 1} : new int[] {stage - 1, stage + 1};
            INDArray payload = Nd4j.create(DataType.FLOAT, 16);
            try (PeerLinks links = world.peerLinks("bubble-bench", neighbours)) {
                if (stage < 2) {
                    double oneWayUs = pingPong(links, stage, payload);
                    if (stage == 0) {
                        System.out.println(RESULT + JSON.createObjectNode().put("one_way_latency_us", oneWayUs));
                    }
                }
                for (String name : schedules) {
                    PipelineSchedule schedule = PipelineSchedule.byName(name);
                    for (int m : microbatches) {
                        List<Op> program = schedule.ops(p, m, stage);
                        ObjectNode out = JSON.createObjectNode().put("schedule", name).put("stages", p)
                                .put("microbatches", m).put("stage", stage);
                        ArrayNode starts = out.putArray("start_ns");
                        ArrayNode ends = out.putArray("end_ns");
                        ArrayNode busy = out.putArray("busy_ns");
                        ArrayNode awaited = out.putArray("await_ns");
                        int peak = 0;
                        for (int step = 0; step < steps; step++) {
                            world.barrier();
                            StepTimes t = runProgram(program, links, payload, forwardNanos, backwardNanos);
                            starts.add(t.start);
                            ends.add(t.end);
                            busy.add(t.busy);
                            awaited.add(t.awaited);
                            peak = Math.max(peak, t.peakLive);
                        }
                        out.put("peak_live", peak);
                        System.out.println(RESULT + out);
                        System.out.flush();
                    }
                }
                world.barrier(); // no stage closes its links while a neighbour may still read them
            }
        }
        return 0;
    }

    /**
     * Stages 0 and 1 bounce a message 200 times (after 20 untimed): the median one-way latency of a hop, which each
     * receive on the critical path adds (two thread wake-ups: the link's receiver, then the waiting stage).
     */
    private static double pingPong(PeerLinks links, int stage, INDArray payload) {
        int warm = 20;
        int rounds = 200;
        double[] oneWay = new double[rounds];
        for (int i = 0; i < warm + rounds; i++) {
            long t0 = System.nanoTime();
            if (stage == 0) {
                links.send(1, i, payload);
                links.await(1, "ping-pong reply " + i);
            } else {
                links.await(0, "ping-pong " + i);
                links.send(0, i, payload);
            }
            if (i >= warm) {
                oneWay[i - warm] = (System.nanoTime() - t0) / 2e3;
            }
        }
        return median(oneWay);
    }

    private record StepTimes(long start, long end, long busy, long awaited, int peakLive) {
    }

    private static StepTimes runProgram(List<Op> program, PeerLinks links, INDArray payload, long forwardNanos,
                                        long backwardNanos) {
        BitSet withBackward = new BitSet();
        program.stream().filter(op -> op.kind() == Op.Kind.BACKWARD).forEach(op -> withBackward.set(op.microbatch()));
        long start = System.nanoTime();
        long busy = 0;
        long awaited = 0;
        int live = 0;
        int peak = 0;
        for (Op op : program) {
            switch (op.kind()) {
                case FORWARD -> {
                    busy += work(forwardNanos);
                    if (withBackward.get(op.microbatch())) {
                        peak = Math.max(peak, ++live);
                    }
                }
                case BACKWARD -> {
                    busy += work(backwardNanos);
                    live--;
                }
                case SEND_ACTIVATION, SEND_GRAD -> links.send(op.peer(), op.microbatch(), payload);
                case RECV_ACTIVATION, RECV_GRAD -> {
                    long w0 = System.nanoTime();
                    PeerLinks.Message message = links.await(op.peer(), op.toString());
                    awaited += System.nanoTime() - w0;
                    if (message.tag() != op.microbatch()) {
                        throw new IllegalStateException(op + " received micro-batch " + message.tag()
                                + ": the stages' programs disagree on the order");
                    }
                }
            }
        }
        return new StepTimes(start, System.nanoTime(), busy, awaited, peak);
    }

    /** A stage's compute: parks until the deadline (no CPU used); returns the time actually taken. */
    private static long work(long nanos) {
        long t0 = System.nanoTime();
        long deadline = t0 + nanos;
        for (long left = nanos; left > 0; left = deadline - System.nanoTime()) {
            LockSupport.parkNanos(left);
        }
        return System.nanoTime() - t0;
    }

    // ------------------------------------------------------------------ coordinator

    private int coordinate() throws IOException, InterruptedException {
        String loadBefore = loadAverage();
        long began = System.nanoTime();
        List<List<JsonNode>> perStage = launchStages();
        if (perStage == null) {
            return 1;
        }
        double seconds = (System.nanoTime() - began) / 1e9;
        String loadAfter = loadAverage();
        double latencyUs = Double.NaN;
        for (JsonNode r : perStage.get(0)) {
            if (r.has("one_way_latency_us")) {
                latencyUs = r.get("one_way_latency_us").asDouble();
            }
        }
        List<List<JsonNode>> runs = new ArrayList<>();
        for (List<JsonNode> results : perStage) {
            runs.add(results.stream().filter(r -> r.has("schedule")).toList());
        }
        List<ObjectNode> rows = new ArrayList<>();
        for (int i = 0; i < runs.get(0).size(); i++) {
            List<JsonNode> stageResults = new ArrayList<>();
            for (List<JsonNode> results : runs) {
                stageResults.add(results.get(i));
            }
            ObjectNode row = summarize(stageResults);
            row.put("load_before", loadBefore).put("load_after", loadAfter).put("one_way_latency_us", latencyUs);
            rows.add(row);
        }
        if (format.equals("json")) {
            rows.forEach(System.out::println);
        } else {
            printMarkdown(rows, loadBefore, loadAfter, seconds, latencyUs);
        }
        return 0;
    }

    /** Starts one process per stage, returns each stage's result lines (in order), or null if one failed. */
    private List<List<JsonNode>> launchStages() throws IOException, InterruptedException {
        Map<String, String> env = WorkerJvm.oneHostJob("pp-bench", stages);
        env.put("DTRAIN_DRIVER_IDLE_EXIT", "2");
        env.put("DTRAIN_RENDEZVOUS_TIMEOUT", "120s");
        env.put("OMP_NUM_THREADS", "1");
        List<String> args = List.of("--worker", "--stages", Integer.toString(stages), "--steps", Integer.toString(steps),
                "--warmup", Integer.toString(warmup), "--forward-ms", Double.toString(forwardMs),
                "--backward-ms", Double.toString(backwardMs), "--schedules", String.join(",", schedules),
                "--microbatches", String.join(",", microbatches.stream().map(String::valueOf).toList()));
        List<Process> processes = new ArrayList<>();
        List<CompletableFuture<List<JsonNode>>> outputs = new ArrayList<>();
        for (int rank = 0; rank < stages; rank++) {
            ProcessBuilder builder = WorkerJvm.of(PipelineBubbleBench.class)
                    .jvmOptions(List.of("-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                            "-Dorg.bytedeco.javacpp.maxbytes=512m", "-Dorg.bytedeco.javacpp.maxphysicalbytes=2g"))
                    .args(args).environment(env).processBuilder(rank, rank);
            builder.redirectError(ProcessBuilder.Redirect.INHERIT);
            Process process = builder.start();
            processes.add(process);
            int r = rank;
            outputs.add(CompletableFuture.supplyAsync(() -> readResults(process, r)));
        }
        boolean failed = false;
        for (int rank = 0; rank < stages; rank++) {
            Process p = processes.get(rank);
            if (!p.waitFor(30, TimeUnit.MINUTES) || p.exitValue() != 0) {
                System.err.println("pipeline-bubble-bench: stage " + rank + " failed"
                        + (p.isAlive() ? " (still running after 30 min)" : " with exit code " + p.exitValue()));
                failed = true;
                break;
            }
        }
        if (failed) {
            for (Process p : processes) {
                p.destroyForcibly();
            }
            return null;
        }
        List<List<JsonNode>> results = new ArrayList<>();
        for (CompletableFuture<List<JsonNode>> f : outputs) {
            results.add(f.join());
        }
        return results;
    }

    private static List<JsonNode> readResults(Process process, int rank) {
        List<JsonNode> out = new ArrayList<>();
        try (BufferedReader in = new BufferedReader(new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8))) {
            String line;
            while ((line = in.readLine()) != null) {
                if (line.startsWith(RESULT)) {
                    out.add(JSON.readTree(line.substring(RESULT.length())));
                } else {
                    System.err.println("[stage " + rank + "] " + line);
                }
            }
        } catch (IOException e) {
            throw new java.io.UncheckedIOException("reading stage " + rank + "'s output", e);
        }
        return out;
    }

    /** One (schedule, M): medians over measured steps of the stage-means, theory and simulation. */
    private ObjectNode summarize(List<JsonNode> stageResults) {
        JsonNode first = stageResults.get(0);
        String name = first.get("schedule").asText();
        int p = first.get("stages").asInt();
        int m = first.get("microbatches").asInt();
        int measured = steps - warmup;
        double[] pipelineBubble = new double[measured];
        double[] executorBubble = new double[measured];
        double[] stepMs = new double[measured];
        for (int i = 0; i < measured; i++) {
            int step = warmup + i;
            long lastEnd = Long.MIN_VALUE;
            long firstStart = Long.MAX_VALUE;
            for (JsonNode r : stageResults) {
                lastEnd = Math.max(lastEnd, r.get("end_ns").get(step).asLong());
                firstStart = Math.min(firstStart, r.get("start_ns").get(step).asLong());
            }
            double pipe = 0;
            double exec = 0;
            for (JsonNode r : stageResults) {
                long start = r.get("start_ns").get(step).asLong();
                long end = r.get("end_ns").get(step).asLong();
                pipe += 1.0 - r.get("busy_ns").get(step).asDouble() / (lastEnd - start);
                exec += r.get("await_ns").get(step).asDouble() / (end - start);
            }
            pipelineBubble[i] = pipe / p;
            executorBubble[i] = exec / p;
            stepMs[i] = (lastEnd - firstStart) / 1e6;
        }
        PipelineSchedule schedule = PipelineSchedule.byName(name);
        Simulation sim = PipelineSimulator.run(schedule.programs(p, m), PipelineSimulator.UNBOUNDED, forwardMs, backwardMs);
        double simExecutor = 0;
        for (int s = 0; s < p; s++) {
            List<io.dtrain.parallel.pipeline.TimedOp> timeline = sim.timelines().get(s);
            double end = timeline.get(timeline.size() - 1).end();
            simExecutor += 1.0 - sim.busyTime()[s] / end;
        }
        ObjectNode row = JSON.createObjectNode().put("schedule", name).put("stages", p).put("microbatches", m)
                .put("theory", (p - 1.0) / (m + p - 1.0))
                .put("simulated", sim.bubbleFraction())
                .put("pipeline_bubble", median(pipelineBubble))
                .put("executor_bubble", median(executorBubble))
                .put("simulated_executor_bubble", simExecutor / p)
                .put("step_ms", median(stepMs))
                .put("simulated_step_ms", sim.makespan());
        ArrayNode peaks = row.putArray("peak_live");
        for (JsonNode r : stageResults) {
            peaks.add(r.get("peak_live").asInt());
        }
        return row;
    }

    private void printMarkdown(List<ObjectNode> rows, String loadBefore, String loadAfter, double seconds, double latencyUs) {
        System.out.printf(Locale.ROOT, "Synthetic stages, P = %d processes: forward %.0f ms, backward %.0f ms per "
                        + "micro-batch (sleep), 16-float messages over PeerLinks (%s; one-way latency, median of 200 "
                        + "ping-pongs: %.0f us); %d steps per row, first %d discarded, median of the rest; 1-min load "
                        + "average %s before, %s after; %.0f s.%n%n",
                stages, forwardMs, backwardMs,
                "ipc".equals(System.getenv("DTRAIN_TRANSPORT")) ? "Aeron ipc" : "shared memory", latencyUs, steps, warmup, loadBefore, loadAfter, seconds);
        System.out.println("| schedule | P | M | theory (P-1)/(M+P-1) | measured bubble (window) | measured - theory | "
                + "executor's bubble (own window) | simulated, own window | step ms (ideal) | peak live micro-batches per stage |");
        System.out.println("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
        for (ObjectNode r : rows) {
            double theory = r.get("theory").asDouble();
            double measured = r.get("pipeline_bubble").asDouble();
            System.out.printf(Locale.ROOT, "| %s | %d | %d | %.1f%% | %.1f%% | %+.1f pp | %.1f%% | %.1f%% | %.0f (%.0f) | %s |%n",
                    r.get("schedule").asText(), r.get("stages").asInt(), r.get("microbatches").asInt(),
                    100 * theory, 100 * measured, 100 * (measured - theory), 100 * r.get("executor_bubble").asDouble(),
                    100 * r.get("simulated_executor_bubble").asDouble(), r.get("step_ms").asDouble(),
                    r.get("simulated_step_ms").asDouble(), r.get("peak_live").toString().replace(",", ", "));
        }
        System.out.println();
        // activation memory: 1F1B's peak (stage 0, the largest) over GPipe's, against P/M
        for (ObjectNode g : rows) {
            if (!g.get("schedule").asText().equals("gpipe")) {
                continue;
            }
            for (ObjectNode o : rows) {
                if (o.get("schedule").asText().equals("1f1b") && o.get("microbatches").equals(g.get("microbatches"))) {
                    int m = g.get("microbatches").asInt();
                    int gp = max(g.get("peak_live"));
                    int op = max(o.get("peak_live"));
                    System.out.printf(Locale.ROOT, "- M = %d: peak live micro-batches 1F1B %d vs GPipe %d = %.3f (target <= P/M = %.3f: %s)%n",
                            m, op, gp, (double) op / gp, (double) stages / m, op * m <= stages * gp ? "met" : "MISSED");
                }
            }
        }
    }

    private static int max(JsonNode array) {
        int max = 0;
        for (JsonNode n : array) {
            max = Math.max(max, n.asInt());
        }
        return max;
    }

    private static double median(double[] values) {
        double[] sorted = values.clone();
        Arrays.sort(sorted);
        int n = sorted.length;
        return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
    }

    private static String loadAverage() {
        try {
            return Files.readString(Path.of("/proc/loadavg")).split(" ")[0];
        } catch (IOException e) {
            return "?";
        }
    }
}
