package io.dtrain.parallel.spawn;

import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;

/**
 * How every dtrain worker JVM is started ({@code dtrain launch}, {@code dtrain bench allreduce}, the pipeline bubble
 * benchmark): this JVM's {@code java} and class path; the project's JVM options (the one list in {@code jvm.properties},
 * packaged as {@code dtrain-jvm.options}), then the caller's, which win; {@code -Ddtrain.rank=R} (so that ps and
 * tests tell the workers apart) and this JVM's {@code dtrain.home}; the main class and its arguments. The worker's
 * environment is this process's, plus the caller's, plus {@code RANK} and {@code LOCAL_RANK}; its standard input is
 * empty. Where the output goes is the caller's choice, on the returned {@link ProcessBuilder}.
 *
 * <pre>{@code
 * Map<String, String> job = WorkerJvm.oneHostJob("bench", world);
 * for (int rank = 0; rank < world; rank++) {
 *     processes.add(WorkerJvm.of(MyWorker.class).jvmOptions(List.of("-Xmx512m")).environment(job)
 *             .processBuilder(rank, rank).start());
 * }
 * }</pre>
 */
public final class WorkerJvm {
    private static final String OPTIONS_RESOURCE = "/dtrain-jvm.options";
    private static volatile List<String> projectOptions;

    private final String mainClass;
    private final List<String> prefix = new ArrayList<>();
    private final List<String> jvmOptions = new ArrayList<>();
    private final List<String> args = new ArrayList<>();
    private final Map<String, String> environment = new HashMap<>();

    private WorkerJvm(String mainClass) {
        this.mainClass = mainClass;
    }

    public static WorkerJvm of(Class<?> mainClass) {
        return new WorkerJvm(mainClass.getName());
    }

    /** A command the JVM runs under, e.g. {@code taskset -c 0,1}. */
    public WorkerJvm prefix(List<String> command) {
        prefix.addAll(command);
        return this;
    }

    /** JVM options after the project's (a later {@code -Xmx} or {@code -D} wins). */
    public WorkerJvm jvmOptions(List<String> options) {
        jvmOptions.addAll(options);
        return this;
    }

    /** Arguments of the main class. */
    public WorkerJvm args(List<String> arguments) {
        args.addAll(arguments);
        return this;
    }

    /** Variables set in the worker's environment, on top of this process's. */
    public WorkerJvm environment(Map<String, String> variables) {
        environment.putAll(variables);
        return this;
    }

    /** The command line of the worker of {@code rank}. */
    public List<String> command(int rank) {
        List<String> command = new ArrayList<>(prefix);
        command.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        command.addAll(projectOptions());
        command.addAll(jvmOptions);
        command.add("-Ddtrain.rank=" + rank);
        String home = System.getProperty("dtrain.home");
        if (home != null) {
            command.add("-Ddtrain.home=" + home);
        }
        command.add("-cp");
        command.add(System.getProperty("java.class.path"));
        command.add(mainClass);
        command.addAll(args);
        return command;
    }

    /** Ready to start the worker of {@code rank} ({@code localRank} on this host). */
    public ProcessBuilder processBuilder(int rank, int localRank) {
        ProcessBuilder builder = new ProcessBuilder(command(rank))
                .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")));
        builder.environment().putAll(environment);
        builder.environment().put("RANK", Integer.toString(rank));
        builder.environment().put("LOCAL_RANK", Integer.toString(localRank));
        return builder;
    }

    /**
     * The torchrun-style environment of a job whose {@code worldSize} workers all run on this host, with rank 0
     * hosting the rendezvous store: {@code WORLD_SIZE}, {@code MASTER_ADDR} (loopback), {@code MASTER_PORT} (a free
     * port), a fresh {@code DTRAIN_JOB_ID} starting with {@code jobPrefix} and a random {@code DTRAIN_JOB_SECRET}.
     */
    public static Map<String, String> oneHostJob(String jobPrefix, int worldSize) {
        Map<String, String> env = new HashMap<>();
        env.put("WORLD_SIZE", Integer.toString(worldSize));
        env.put("MASTER_ADDR", "127.0.0.1");
        env.put("MASTER_PORT", Integer.toString(freePort()));
        env.put("DTRAIN_JOB_ID", jobPrefix + "-" + UUID.randomUUID().toString().substring(0, 8));
        env.put("DTRAIN_JOB_SECRET", UUID.randomUUID().toString());
        return env;
    }

    private static int freePort() {
        try (ServerSocket socket = new ServerSocket(0)) {
            return socket.getLocalPort();
        } catch (IOException e) {
            throw new UncheckedIOException("no free TCP port for the rendezvous store", e);
        }
    }

    /** The project's JVM options: jvm.properties, filtered into this module's jar by the build. */
    public static List<String> projectOptions() {
        List<String> options = projectOptions;
        if (options == null) {
            options = readProjectOptions();
            projectOptions = options;
        }
        return options;
    }

    private static List<String> readProjectOptions() {
        try (InputStream in = WorkerJvm.class.getResourceAsStream(OPTIONS_RESOURCE)) {
            if (in == null) {
                throw new IllegalStateException(OPTIONS_RESOURCE + " is missing from the class path; rebuild dtrain");
            }
            String text = new String(in.readAllBytes(), StandardCharsets.UTF_8).strip();
            if (text.contains("${")) {
                throw new IllegalStateException(OPTIONS_RESOURCE + " was not filtered by the build: " + text);
            }
            return text.isEmpty() ? List.of() : List.of(text.split("\\s+"));
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + OPTIONS_RESOURCE, e);
        }
    }
}
