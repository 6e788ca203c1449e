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
        System.exit(commandLine().execute(args));
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
