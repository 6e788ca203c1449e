package io.dtrain.launcher;

import io.dtrain.checkpoint.Checkpoint;
import io.dtrain.config.RunConfig;
import io.dtrain.hf.HfExport;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;

@Command(name = "export",
        mixinStandardHelpOptions = true,
        description = {
                "Write a checkpoint's model in another framework's format.",
                "--format hf: a Hugging Face GPT-2 model directory (model.safetensors in GPT-2's names, shapes and Conv1D [in, out] layout, config.json, the",
                "tokenizer files) that GPT2LMHeadModel.from_pretrained(DIR) and AutoTokenizer.from_pretrained(DIR) load.",
                "model.norm: post has no GPT-2 layout and is refused; ReLU exports as activation_function \"relu\",",
                "a model without biases with zero biases. model.init_from reads such a directory back.",
                "",
                "Example:",
                "  dtrain export --checkpoint runs/gpt-tiny --format hf --out runs/gpt-tiny/hf"})
public final class ExportCommand implements Callable<Integer> {
    enum Format { hf }

    @Mixin
    CheckpointOptions checkpoint;

    @Option(names = "--format", required = true, paramLabel = "FORMAT",
            description = "Target format: ${COMPLETION-CANDIDATES} (Hugging Face transformers' GPT-2).")
    Format format;

    @Option(names = "--out", required = true, paramLabel = "DIR", description = "Output directory (created if missing; files in it are replaced).")
    Path out;

    @Override
    public Integer call() {
        Checkpoint ck = checkpoint.load();
        RunConfig cfg = checkpoint.config(ck);
        List<Path> files = HfExport.export(ck, cfg, out);
        System.out.printf(Locale.ROOT, "exported %s (step %d) to %s: %s%n", ck.directory(), ck.step(), out,
                String.join(", ", files.stream().map(p -> p.getFileName().toString()).toList()));
        return 0;
    }
}
