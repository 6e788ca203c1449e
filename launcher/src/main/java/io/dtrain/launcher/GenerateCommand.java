package io.dtrain.launcher;

import io.dtrain.checkpoint.Checkpoint;
import io.dtrain.config.RunConfig;
import io.dtrain.data.tokenizer.Tokenizer;
import io.dtrain.model.GptModel;
import io.dtrain.train.Generator;
import io.dtrain.train.TrainTokenizer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.Callable;

@Command(name = "generate",
        mixinStandardHelpOptions = true,
        description = {
                "Continue a prompt with a trained model.",
                "",
                "Autoregressive sampling (the context is cropped to model.seq_len). Prints the prompt followed by the",
                "generated text.",
                "",
                "Example:",
                "  dtrain generate --checkpoint runs/gpt-tiny --prompt \"The kernel\" --max-tokens 200 --temperature 0.8 --top-k 40"})
public final class GenerateCommand implements Callable<Integer> {
    @Mixin
    CheckpointOptions checkpoint;

    @Option(names = "--prompt", required = true, description = "Text to continue.")
    String prompt;

    @Option(names = "--max-tokens", defaultValue = "200", paramLabel = "N", description = "Tokens to generate (default: ${DEFAULT-VALUE}).")
    int maxTokens;

    @Option(names = "--temperature", defaultValue = "0.8", paramLabel = "T",
            description = "Sampling temperature; 0 picks the most likely token (default: ${DEFAULT-VALUE}).")
    double temperature;

    @Option(names = "--top-k", defaultValue = "40", paramLabel = "K",
            description = "Sample among the K most likely tokens; 0 = all (default: ${DEFAULT-VALUE}).")
    int topK;

    @Option(names = "--seed", defaultValue = "1", description = "Sampling seed (default: ${DEFAULT-VALUE}).")
    long seed;

    @Override
    public Integer call() {
        if (maxTokens < 0 || temperature < 0 || topK < 0) {
            throw new UserError("--max-tokens, --temperature and --top-k must be >= 0");
        }
        Checkpoint ck = checkpoint.load();
        RunConfig cfg = checkpoint.config(ck);
        Tokenizer tok = TrainTokenizer.forConfig(cfg);
        int[] ids = tok.encode(prompt);
        if (ids.length == 0) {
            ids = new int[] {tok.eotId()};
        }
        PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
        try (GptModel model = new GptModel(cfg.model())) {
            var params = model.newFlatBuffer();
            ck.readParams(model.layout(), params);
            model.setParams(params);
            int[] all = new Generator(model).generate(ids, maxTokens, temperature, topK, seed, null);
            out.println(tok.decode(all));
        }
        return 0;
    }
}
