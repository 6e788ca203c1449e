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
        long start = System.nanoTime();
        List<Process> processes = new ArrayList<>();
        List<CompletableFuture<String>> outs = new ArrayList<>();
        List<CompletableFuture<String>> errs = new ArrayList<>();
        for (int rank = 0; rank < world; rank++) {
            Map<String, String> rankEnv = new HashMap<>(env);
            Process p = start(commandPrefix.apply(rank), rank, scenario, rankEnv, jvmArgs.apply(rank));
            processes.add(p);
            outs.add(drain(p.getInputStream()));
            errs.add(drain(p.getErrorStream()));
        }
        List<Result> results = new ArrayList<>();
        long deadline = System.nanoTime() + limit.toNanos();
        for (int rank = 0; rank < world; rank++) {
            Process p = processes.get(rank);
            try {
                long left = deadline - System.nanoTime();
                if (!p.waitFor(Math.max(0, left), TimeUnit.NANOSECONDS)) {
                    p.descendants().forEach(ProcessHandle::destroyForcibly);
                    p.destroyForcibly();
                    p.waitFor();
                }
                results.add(new Result(rank, p.exitValue(), outs.get(rank).get(10, TimeUnit.SECONDS),
                        errs.get(rank).get(10, TimeUnit.SECONDS), (System.nanoTime() - start) / 1_000_000));
            } catch (Exception e) {
                throw new IllegalStateException("waiting for rank " + rank, e);
            }
        }
        return results;
    }

    static List<Result> run(int world, String scenario, Map<String, String> env, IntFunction<List<String>> jvmArgs, Duration limit) {
        return run(world, scenario, env, jvmArgs, rank -> List.of(), limit);
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
