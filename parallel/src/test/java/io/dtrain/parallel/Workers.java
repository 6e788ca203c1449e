package io.dtrain.parallel;

import io.dtrain.parallel.spawn.WorkerJvm;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.function.IntFunction;

/** Starts real worker JVMs ({@link CollectiveWorker}) for one job and collects their exit codes and output. */
final class Workers {
    record Result(int rank, int exitCode, String stdout, String stderr, long millis) {
        List<String> lines(String prefix) {
            return stdout.lines().filter(l -> l.startsWith(prefix)).toList();
        }

        String failure() {
            return stdout.lines().filter(l -> l.startsWith("FAILED")).findFirst().orElse(null);
        }

        /**
         * The thread dump the failure names ("thread dump of rank R: FILE"), read from its file; the console gets
         * the one-line failure only.
         */
        String threadDump() {
            String failure = failure();
            java.util.regex.Matcher m = failure == null ? null
                    : java.util.regex.Pattern.compile("thread dump of rank \\d+: (\\S+)").matcher(failure);
            if (m == null || !m.find()) {
                return "";
            }
            try {
                return java.nio.file.Files.readString(java.nio.file.Path.of(m.group(1)));
            } catch (java.io.IOException e) {
                return "";
            }
        }

        @Override
        public String toString() {
            return "rank " + rank + " exit " + exitCode + " after " + millis + " ms\n--- stdout\n" + stdout + "--- stderr\n"
                    + (stderr.length() > 6000 ? stderr.substring(0, 6000) + "\n...(cut)" : stderr);
        }
    }

    private Workers() {
    }

    /** Environment of every worker of a job on this host. */
    static Map<String, String> jobEnv(int world, Path aeronDir, Duration timeout) {
        Map<String, String> env = WorkerJvm.oneHostJob("test", world);
        env.put("DTRAIN_COLLECTIVE_TIMEOUT", timeout.toMillis() + "ms");
        env.put("DTRAIN_RENDEZVOUS_TIMEOUT", "60s");
        env.put("DTRAIN_AERON_DIR", aeronDir.toString());
        env.put("DTRAIN_DRIVER_IDLE_EXIT", "5");
        return env;
    }

    static Process start(List<String> prefix, int rank, String scenario, Map<String, String> env, List<String> extraJvmArgs) {
        List<String> jvmOptions = new ArrayList<>(List.of("-Xmx256m", "-XX:+UseSerialGC"));
        jvmOptions.addAll(extraJvmArgs);
        try {
            return WorkerJvm.of(CollectiveWorker.class).prefix(prefix).jvmOptions(jvmOptions).args(List.of(scenario))
                    .environment(env).processBuilder(rank, rank).start();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Runs one job of {@code world} workers and waits for all of them (killing stragglers after {@code limit}). */
    static List<Result> run(int world, String scenario, Map<String, String> env, IntFunction<List<String>> jvmArgs,
                            IntFunction<List<String>> commandPrefix, Duration limit) {
        return startJob(world, scenario, env, jvmArgs, commandPrefix).await(limit);
    }

    static List<Result> run(int world, String scenario, Map<String, String> env, IntFunction<List<String>> jvmArgs, Duration limit) {
        return run(world, scenario, env, jvmArgs, rank -> List.of(), limit);
    }

    /** Runs one worker as {@code rank} (of the WORLD_SIZE in {@code env}), e.g. an intruder into a running job. */
    static Result runOne(int rank, String scenario, Map<String, String> env, List<String> jvmArgs, Duration limit) {
        Running one = new Running(List.of(start(List.of(), rank, scenario, new HashMap<>(env), jvmArgs)), rank);
        return one.await(limit).get(0);
    }

    static Running startJob(int world, String scenario, Map<String, String> env, IntFunction<List<String>> jvmArgs) {
        return startJob(world, scenario, env, jvmArgs, rank -> List.of());
    }

    static Running startJob(int world, String scenario, Map<String, String> env, IntFunction<List<String>> jvmArgs,
                            IntFunction<List<String>> commandPrefix) {
        List<Process> processes = new ArrayList<>();
        for (int rank = 0; rank < world; rank++) {
            processes.add(start(commandPrefix.apply(rank), rank, scenario, new HashMap<>(env), jvmArgs.apply(rank)));
        }
        return new Running(processes, 0);
    }

    /** Workers started and running: their output is collected as it comes. */
    static final class Running {
        private final List<Process> processes;
        private final int firstRank;
        private final long start = System.nanoTime();
        private final List<StringBuffer> outs = new ArrayList<>();
        private final List<CompletableFuture<Void>> outDone = new ArrayList<>();
        private final List<StringBuffer> errs = new ArrayList<>();
        private final List<CompletableFuture<Void>> errDone = new ArrayList<>();

        Running(List<Process> processes, int firstRank) {
            this.processes = processes;
            this.firstRank = firstRank;
            for (Process p : processes) {
                StringBuffer out = new StringBuffer();
                outs.add(out);
                outDone.add(collect(p.getInputStream(), out));
                StringBuffer err = new StringBuffer();
                errs.add(err);
                errDone.add(collect(p.getErrorStream(), err));
            }
        }

        private static CompletableFuture<Void> collect(InputStream stream, StringBuffer into) {
            return CompletableFuture.runAsync(() -> {
                try (var reader = new java.io.BufferedReader(new java.io.InputStreamReader(stream, StandardCharsets.UTF_8))) {
                    String line;
                    while ((line = reader.readLine()) != null) {
                        into.append(line).append('\n');
                    }
                } catch (IOException e) {
                    into.append("(read failed: ").append(e).append(")\n");
                }
            });
        }

        /** Waits until the worker of {@code rank} printed a line starting with {@code prefix} on stdout. */
        void awaitLine(int rank, String prefix, Duration limit) throws InterruptedException {
            awaitMatch(rank, outs, java.util.regex.Pattern.compile(java.util.regex.Pattern.quote(prefix) + ".*"), limit);
        }

        /** Waits until the worker of {@code rank} logged (stderr) a line matching {@code regex}; returns the match. */
        java.util.regex.Matcher awaitLog(int rank, String regex, Duration limit) throws InterruptedException {
            return awaitMatch(rank, errs, java.util.regex.Pattern.compile(".*" + regex + ".*"), limit);
        }

        private java.util.regex.Matcher awaitMatch(int rank, List<StringBuffer> streams, java.util.regex.Pattern pattern,
                                                   Duration limit) throws InterruptedException {
            long deadline = System.nanoTime() + limit.toNanos();
            StringBuffer text = streams.get(rank - firstRank);
            while (true) {
                for (String line : text.toString().split("\n")) {
                    java.util.regex.Matcher m = pattern.matcher(line);
                    if (m.matches()) {
                        return m;
                    }
                }
                if (System.nanoTime() > deadline || !processes.get(rank - firstRank).isAlive()) {
                    throw new IllegalStateException("rank " + rank + " did not print " + pattern + ": " + text);
                }
                Thread.sleep(20);
            }
        }

        /** Waits for every worker (killing stragglers after {@code limit}) and returns what each did. */
        List<Result> await(Duration limit) {
            List<Result> results = new ArrayList<>();
            long deadline = System.nanoTime() + limit.toNanos();
            for (int i = 0; i < processes.size(); i++) {
                Process p = processes.get(i);
                try {
                    long left = deadline - System.nanoTime();
                    if (!p.waitFor(Math.max(0, left), TimeUnit.NANOSECONDS)) {
                        p.descendants().forEach(ProcessHandle::destroyForcibly);
                        p.destroyForcibly();
                        p.waitFor();
                    }
                    outDone.get(i).get(10, TimeUnit.SECONDS);
                    errDone.get(i).get(10, TimeUnit.SECONDS);
                    results.add(new Result(firstRank + i, p.exitValue(), outs.get(i).toString(),
                            errs.get(i).toString(), (System.nanoTime() - start) / 1_000_000));
                } catch (Exception e) {
                    throw new IllegalStateException("waiting for rank " + (firstRank + i), e);
                }
            }
            return results;
        }

        /** Kills what still runs (a failed test's cleanup). */
        void kill() {
            for (Process p : processes) {
                p.descendants().forEach(ProcessHandle::destroyForcibly);
                p.destroyForcibly();
            }
        }
    }

    private static CompletableFuture<String> drain(InputStream in) {
        return CompletableFuture.supplyAsync(() -> {
            try {
                return new String(in.readAllBytes(), StandardCharsets.UTF_8);
            } catch (IOException e) {
                return "(read failed: " + e + ")";
            }
        });
    }

    /** Stops the test's media driver (it would exit by itself a few seconds after its last client). */
    static void stopDriver(Path aeronDir) {
        io.dtrain.parallel.transport.MediaDriverProcess.pid(aeronDir).ifPresent(pid -> ProcessHandle.of(pid).ifPresent(driver -> {
            driver.destroy();
            try {
                driver.onExit().get(15, TimeUnit.SECONDS);
            } catch (Exception e) {
                driver.destroyForcibly();
            }
        }));
    }

    /** Stops the drivers of these Aeron directories and deletes the test's job directory. */
    static void cleanUp(Path jobDir, Path... aeronDirs) {
        for (Path aeronDir : aeronDirs) {
            stopDriver(aeronDir);
        }
        if (Files.exists(jobDir)) {
            try (var paths = Files.walk(jobDir)) {
                paths.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
            } catch (IOException e) {
                // best effort
            }
        }
    }
}
