package io.dtrain.launcher;

import picocli.CommandLine;
import picocli.CommandLine.Command;

/** The {@code dtrain} command line: one subcommand per job kind. */
@Command(name = "dtrain",
        mixinStandardHelpOptions = true,
        versionProvider = Main.Version.class,
        description = {
                "Train GPT-style language models on the JVM: one process, many processes or many machines.",
                "Run 'dtrain COMMAND --help' for a command's options."},
        subcommands = {
                TrainCommand.class,
                LaunchCommand.class,
                EvalCommand.class,
                GenerateCommand.class,
                ExportCommand.class,
                TokenizeCommand.class,
                PreprocessCommand.class,
                ReportCommand.class,
                BenchCommand.class,
                PlanCommand.class,
                CommandLine.HelpCommand.class})
public final class Main implements Runnable {

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(System.out);
    }

    public static void main(String[] args) {
        System.exit(execute(commandLine(), args));
    }

    /**
     * Runs {@code cl} and returns its exit code, also for an {@link Error} (out of memory, a class that cannot be
     * loaded), which picocli lets through: {@link #main} must reach {@code System.exit} whatever happened, or the
     * worker's non-daemon threads (the Aeron client's conductor, the communication thread) keep a dead run's JVM up
     * and its launcher waiting.
     */
    static int execute(CommandLine cl, String... args) {
        try {
            return cl.execute(args);
        } catch (Error e) {
            e.printStackTrace(cl.getErr());
            cl.getErr().println("dtrain: internal error (" + e.getClass().getSimpleName() + "), a bug in dtrain"
                    + " or a JVM limit; the stack trace is above");
            cl.getErr().flush();
            return 1;
        }
    }

    /** The configured command line (tests call this to run commands in-process). */
    public static CommandLine commandLine() {
        RunLog.reset();
        CommandLine cl = new CommandLine(new Main());
        cl.setExecutionExceptionHandler(new ErrorHandler());
        cl.setCaseInsensitiveEnumValuesAllowed(true);
        return cl;
    }

    static final class Version implements CommandLine.IVersionProvider {
        @Override
        public String[] getVersion() {
            String v = Main.class.getPackage().getImplementationVersion();
            return new String[] {"dtrain " + (v == null ? "dev" : v)};
        }
    }
}
