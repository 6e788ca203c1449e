package io.dtrain.launcher;

import picocli.CommandLine;
import picocli.CommandLine.Command;

/** Groups the micro-benchmarks; each subcommand prints a table of medians. */
@Command(name = "bench",
        mixinStandardHelpOptions = true,
        description = {"Measure this machine: GEMM FLOP/s and AllReduce bandwidth.",
                "",
                "bench gemm: fp32 GEMM FLOP/s as the fused engine runs GEMMs (the CPU peak MFU is computed against);",
                "bench allreduce: the ring AllReduce's bus bandwidth over shared memory or Aeron. Full comparisons",
                "against other tools live in benchmarks/."},
        subcommands = {BenchGemmCommand.class, BenchAllreduceCommand.class})
public final class BenchCommand implements Runnable {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(System.out);
    }
}
