package io.dtrain.launcher;

import io.dtrain.parallel.bench.AllReduceBench;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code dtrain bench allreduce}: ring AllReduce bandwidth between worker processes on this host. */
@Command(name = "allreduce",
        mixinStandardHelpOptions = true,
        description = {"Measure AllReduce between worker processes on this host (like nccl-tests' all_reduce_perf).",
                "Prints per size the median time, algbw = size / time and busbw = algbw x 2(n-1)/n."})
public final class BenchAllreduceCommand implements Callable<Integer> {

    @Option(names = "--world", defaultValue = "2", description = "Number of worker processes (default: ${DEFAULT-VALUE}).")
    int world;

    @Option(names = "--sizes", defaultValue = "1MiB,16MiB,64MiB,256MiB",
            description = "Comma-separated buffer sizes, with optional KiB/MiB/GiB (default: ${DEFAULT-VALUE}).")
    String sizes;

    @Option(names = "--transport", defaultValue = "shm",
            description = "shm (shared-memory files between the host's workers), ipc (Aeron ipc through the host's media"
                    + " driver) or udp (Aeron udp on loopback) (default: ${DEFAULT-VALUE}).")
    String transport;

    @Option(names = "--insecure-transport",
            description = "udp frames without their MAC (to measure what authentication costs).")
    boolean insecureTransport;

    @Option(names = "--iterations", defaultValue = "10", description = "Timed iterations per size (default: ${DEFAULT-VALUE}).")
    int iterations;

    @Option(names = "--netns", split = ",", paramLabel = "NAMESPACE@ADDRESS",
            description = "Run the ranks in these network namespaces, in blocks (as root; each stands for another host:"
                    + " its own media driver, udp between them). benchmarks/allreduce/netns.sh sets them up.")
    java.util.List<String> netns = new java.util.ArrayList<>();

    @Override
    public Integer call() throws Exception {
        if (!transport.equals("shm") && !transport.equals("ipc") && !transport.equals("udp")) {
            throw new UserError("--transport must be shm, ipc or udp, got '" + transport + "'");
        }
        if (iterations < 1) {
            throw new UserError("--iterations must be >= 1");
        }
        return AllReduceBench.launch(world, AllReduceBench.parseSizes(sizes), transport, insecureTransport, iterations,
                netns.stream().map(AllReduceBench.NamespaceHost::parse).toList(), System.out);
    }
}
