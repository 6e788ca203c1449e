package io.dtrain.config;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ConfigLoaderTest {

    /** The smallest valid file: data.train and the run's length are the only keys without a usable default. */
    private static final String MINIMAL = "data:\n  train: corpus\ntraining:\n  steps: 10\n";

    @TempDir
    Path workDir;

    private RunConfig load(String yaml, String... overrides) {
        return ConfigLoader.fromYaml(yaml, "test.yaml", List.of(overrides), workDir);
    }

    private ConfigException error(String yaml, String... overrides) {
        return assertThrows(ConfigException.class, () -> load(yaml, overrides));
    }

    private static void assertError(ConfigException e, String file, int line, String key, String message) {
        assertEquals(message, e.getMessage());
        assertEquals(file, e.file());
        assertEquals(line, e.line());
        assertEquals(key, e.key());
    }

    // ---- values, defaults, paths ------------------------------------------------------------------------------

    @Test
    void keysLeftOutTakeTheSchemaDefaults() {
        RunConfig c = load(MINIMAL);
        RunConfig d = ConfigSchema.defaults();
        assertEquals(d.model(), c.model());
        assertEquals(d.optimizer(), c.optimizer());
        assertEquals(d.schedule(), c.schedule());
        assertEquals(257, c.model().vocabSize());
        assertEquals(6e-4, c.optimizer().lr());
        assertEquals(10, c.training().steps());
        assertEquals(0, c.training().tokens());
        assertEquals(1337, c.training().seed());
        assertEquals("stop", c.training().onNonFinite());
    }

    @Test
    void valuesOfEveryTypeAreRead() {
        RunConfig c = load("""
                model:
                  d_model: 96
                  n_head: 3
                  dropout: 0.1
                  tie_embeddings: false
                  norm: POST
                optimizer:
                  lr: 3e-4
                  min_lr: 0
                data:
                  train: corpus
                  seed: -5
                training:
                  tokens: 300_000_000_000
                """);
        assertEquals(96, c.model().dModel());
        assertEquals(3, c.model().nHead());
        assertEquals(0.1, c.model().dropout());
        assertEquals(false, c.model().tieEmbeddings());
        assertEquals("post", c.model().norm(), "choices are matched case-insensitively and stored as listed");
        assertEquals(3e-4, c.optimizer().lr());
        assertEquals(0.0, c.optimizer().minLr());
        assertEquals(-5, c.data().seed());
        assertEquals(300_000_000_000L, c.training().tokens());
        assertEquals(0, c.training().steps());
        // 300e9 tokens / (8 sequences x 64 tokens) per step, rounded up
        assertEquals(585_937_500L, c.totalSteps());
    }

    @Test
    void wholeNumbersInExponentFormAreIntegers() {
        assertEquals(1_000_000_000L, load(MINIMAL, "training.steps=0", "training.tokens=1e9").training().tokens());
        assertEquals(16, load(MINIMAL, "training.global_batch=16.0").training().globalBatch());
        assertError(error(MINIMAL, "training.global_batch=16.5"), "--set", -1, "training.global_batch",
                "--set training.global_batch: expected an integer, got '16.5'");
    }

    @Test
    void relativePathsResolveAgainstTheWorkingDirectoryAndUrisAreKept() {
        RunConfig c = load("""
                data:
                  train: data/../corpus/*.jsonl.zst
                  val: /abs/val
                  tokenizer_dir: hdfs://namenode:8020/tok
                training:
                  steps: 1
                output:
                  dir: ~/runs/x
                """);
        assertEquals(workDir.resolve("corpus/*.jsonl.zst").toString(), c.data().train());
        assertEquals("/abs/val", c.data().val());
        assertEquals("hdfs://namenode:8020/tok", c.data().tokenizerDir());
        assertEquals(Path.of(System.getProperty("user.home"), "runs/x").toString(), c.output().dir());
        assertEquals(workDir.resolve("runs/default").toString(), load(MINIMAL).output().dir(), "defaults resolve too");
        assertEquals("", load(MINIMAL).data().val(), "an empty path stays empty (= none)");
    }

    @Test
    void emptySectionsAndEmptyStringValuesAreAllowed() {
        RunConfig c = load("model:\ndata:\n  train: corpus\n  val:\ntraining:\n  steps: 3\n");
        assertEquals(ConfigSchema.defaults().model(), c.model());
        assertEquals("", c.data().val());
    }

    // ---- errors: file, line, key, message -----------------------------------------------------------------------

    @Test
    void unknownKeySuggestsTheClosestKeyOfItsSection() {
        assertError(error(MINIMAL + "model:\n  d_model: 64\n  n_heads: 4\n"), "test.yaml", 7, "model.n_heads",
                "test.yaml:7: model.n_heads: unknown key; did you mean model.n_head?");
        assertError(error(MINIMAL + "schedule:\n  warmup: 4\n"), "test.yaml", 6, "schedule.warmup",
                "test.yaml:6: schedule.warmup: unknown key; did you mean schedule.warmup_steps?");
    }

    @Test
    void nestedKeysReadFromNestedMappingsDottedKeysAndOverrides() {
        RunConfig c = load(MINIMAL + "parallel:\n  dp:\n    bucket_mb: 4\n  pipeline:\n    stages: 2\n    schedule: gpipe\n",
                "parallel.pipeline.partition=1,1");
        assertEquals(4.0, c.parallel().dpBucketMb());
        assertEquals(2, c.parallel().pipelineStages());
        assertEquals("gpipe", c.parallel().pipelineSchedule());
        assertEquals("1,1", c.parallel().pipelinePartition());
        // the resolved YAML writes them as dotted keys under their section, and reads back the same
        RunConfig again = ConfigLoader.fromResolvedYaml(ConfigLoader.toYaml(c));
        assertEquals(c.parallel(), again.parallel());
        assertError(error(MINIMAL + "parallel:\n  dp_bucket_mb: 4\n"), "test.yaml", 6, "parallel.dp_bucket_mb",
                "test.yaml:6: parallel.dp_bucket_mb: unknown key; did you mean parallel.dp.bucket_mb?");
    }

    @Test
    void unknownKeyFoundInAnotherSectionIsNamedWithItsSection() {
        assertError(error("data:\n  train: corpus\ntraining:\n  steps: 10\n  lr: 0.1\n"), "test.yaml", 5, "training.lr",
                "test.yaml:5: training.lr: unknown key; did you mean optimizer.lr?");
    }

    @Test
    void unknownKeyWithoutACloseMatchListsTheValidKeys() {
        ConfigException e = error(MINIMAL + "output:\n  frobnicate: 1\n");
        assertEquals("test.yaml:6: output.frobnicate: unknown key; keys under output are dir, keep_checkpoints", e.getMessage());
    }

    @Test
    void unknownSection() {
        assertError(error(MINIMAL + "modle:\n  n_head: 4\n"), "test.yaml", 5, "modle",
                "test.yaml:5: modle: unknown section; did you mean model?");
        assertEquals("test.yaml:5: zzz: unknown section; sections are model, optimizer, schedule, data, training, output, metrics, parallel",
                error(MINIMAL + "zzz: 1\n").getMessage());
    }

    @Test
    void wrongType() {
        assertError(error(MINIMAL + "model:\n  n_head: four\n"), "test.yaml", 6, "model.n_head",
                "test.yaml:6: model.n_head: expected an integer, got 'four'");
        assertEquals("test.yaml:6: model.n_head: expected an integer, got the quoted string \"4\" (remove the quotes)",
                error(MINIMAL + "model:\n  n_head: \"4\"\n").getMessage());
        assertEquals("test.yaml:6: model.dropout: expected a number, got 'lots'",
                error(MINIMAL + "model:\n  dropout: lots\n").getMessage());
        assertEquals("test.yaml:6: model.bias: expected true or false, got 'yes'",
                error(MINIMAL + "model:\n  bias: yes\n").getMessage());
        assertEquals("test.yaml:6: model.n_layer: expected an integer, got nothing (an empty value)",
                error(MINIMAL + "model:\n  n_layer:\n").getMessage());
        assertEquals("test.yaml:6: model.n_layer: expected an integer, got a list",
                error(MINIMAL + "model:\n  n_layer: [1, 2]\n").getMessage());
        assertEquals("test.yaml:6: model.seq_len: must fit in a 32-bit integer, got 3000000000",
                error(MINIMAL + "model:\n  seq_len: 3000000000\n").getMessage());
        assertEquals("test.yaml:5: model: expected a mapping of keys under model (e.g. model.vocab_size), got '4'",
                error(MINIMAL + "model: 4\n").getMessage());
    }

    @Test
    void outOfRange() {
        assertError(error(MINIMAL + "model:\n  n_layer: -1\n"), "test.yaml", 6, "model.n_layer",
                "test.yaml:6: model.n_layer: must be >= 1, got -1");
        assertEquals("test.yaml:6: model.dropout: must be in [0, 1), got 1.0",
                error(MINIMAL + "model:\n  dropout: 1.0\n").getMessage());
        assertEquals("test.yaml:6: optimizer.lr: must be > 0, got 0",
                error(MINIMAL + "optimizer:\n  lr: 0\n").getMessage());
        assertEquals("test.yaml:6: training.micro_batch: must be >= 0, got -1",
                error("data:\n  train: corpus\ntraining:\n  steps: 10\n  global_batch: 8\n  micro_batch: -1\n").getMessage());
    }

    @Test
    void allowedValues() {
        assertError(error(MINIMAL + "model:\n  norm: middle\n"), "test.yaml", 6, "model.norm",
                "test.yaml:6: model.norm: expected pre or post, got 'middle'");
        assertEquals("test.yaml:6: schedule.decay: expected one of cosine, linear, constant, got 'step'",
                error(MINIMAL + "schedule:\n  decay: step\n").getMessage());
    }

    @Test
    void dModelNotDivisibleByNHead() {
        assertError(error(MINIMAL + "model:\n  d_model: 100\n  n_head: 3\n"), "test.yaml", 7, "model.n_head",
                "test.yaml:7: model.n_head: model.d_model (100) is not divisible by model.n_head (3);"
                        + " choose n_head dividing d_model (head size = d_model / n_head)");
        // n_head left at its default (4): the line of d_model is named
        assertError(error(MINIMAL + "model:\n  d_model: 30\n"), "test.yaml", 6, "model.d_model",
                "test.yaml:6: model.d_model: model.d_model (30) is not divisible by model.n_head (4);"
                        + " choose n_head dividing d_model (head size = d_model / n_head)");
    }

    @Test
    void globalBatchNotAMultipleOfMicroBatch() {
        assertError(error("data:\n  train: corpus\ntraining:\n  steps: 10\n  global_batch: 12\n  micro_batch: 8\n"),
                "test.yaml", 5, "training.global_batch",
                "test.yaml:5: training.global_batch: training.global_batch (12) is not a multiple of training.micro_batch (8);"
                        + " gradient-accumulation steps = global_batch / (micro_batch x data-parallel size) must be an integer");
    }

    @Test
    void exactlyOneOfStepsAndTokens() {
        assertError(error("data:\n  train: corpus\ntraining:\n  log_interval: 5\n"), "test.yaml", 3, "training.steps",
                "test.yaml:3: training.steps: the run has no length: set exactly one of training.steps or training.tokens (> 0)");
        assertError(error("data:\n  train: corpus\n"), "test.yaml", -1, "training.steps",
                "test.yaml: training.steps: the run has no length: set exactly one of training.steps or training.tokens (> 0)");
        assertError(error("data:\n  train: corpus\ntraining:\n  steps: 100\n  tokens: 1000\n"), "test.yaml", 4, "training.steps",
                "test.yaml:4: training.steps: training.steps (100) and training.tokens (1000) are both set; set exactly one (the other 0)");
    }

    @Test
    void warmupLongerThanTheRun() {
        assertError(error(MINIMAL + "schedule:\n  warmup_steps: 11\n"), "test.yaml", 6, "schedule.warmup_steps",
                "test.yaml:6: schedule.warmup_steps: schedule.warmup_steps (11) is more than the run's steps (10, training.steps)");
        assertEquals(10, load(MINIMAL + "schedule:\n  warmup_steps: 10\n").schedule().warmupSteps());
        // a token-bounded run: 8 x 64 tokens per step, 5120 tokens = 10 steps
        assertEquals("test.yaml:6: schedule.warmup_steps: schedule.warmup_steps (11) is more than the run's steps (10, from training.tokens)",
                error("data:\n  train: corpus\ntraining:\n  tokens: 5120\nschedule:\n  warmup_steps: 11\n").getMessage());
        assertEquals("test.yaml:7: schedule.decay_steps: schedule.decay_steps (5) must be 0 (= the run's last step) or more than"
                        + " schedule.warmup_steps (5)",
                error(MINIMAL + "schedule:\n  warmup_steps: 5\n  decay_steps: 5\n").getMessage());
    }

    @Test
    void tokenizerAndVocabulary() {
        assertError(error(MINIMAL + "model:\n  vocab_size: 256\n"), "test.yaml", 6, "model.vocab_size",
                "test.yaml:6: model.vocab_size: model.vocab_size (256) is too small for the byte tokenizer: it needs >= 257"
                        + " (256 byte values + end-of-document)");
        assertEquals("test.yaml:2: data.tokenizer: data.tokenizer is gpt2 but data.tokenizer_dir is not set; point it at a"
                        + " directory with vocab.json and merges.txt",
                error("data:\n  tokenizer: gpt2\n  train: corpus\ntraining:\n  steps: 10\nmodel:\n  vocab_size: 50304\n").getMessage());
        assertEquals("test.yaml:2: model.vocab_size: model.vocab_size (257) is too small for the gpt2 tokenizer: it needs"
                        + " >= 50257 (GPT-2's BPE vocabulary)",
                error("model:\n  vocab_size: 257\ndata:\n  tokenizer: gpt2\n  tokenizer_dir: tok\n  train: corpus\ntraining:\n  steps: 10\n")
                        .getMessage());
        RunConfig ok = load("model:\n  vocab_size: 50257\ndata:\n  tokenizer: gpt2\n  tokenizer_dir: tok\n  train: c\ntraining:\n  steps: 1\n");
        assertEquals(workDir.resolve("tok").toString(), ok.data().tokenizerDir());
    }

    @Test
    void missingTrainingData() {
        assertError(error("data:\n  val: v\ntraining:\n  steps: 10\n"), "test.yaml", 1, "data.train",
                "test.yaml:1: data.train: data.train is required: training input: a file, a directory or a glob of"
                        + " *.jsonl / *.jsonl.zst (or preprocessed shards)");
        assertEquals(-1, error("training:\n  steps: 10\n").line());
    }

    @Test
    void minLrAboveLr() {
        assertError(error(MINIMAL + "optimizer:\n  lr: 1e-3\n  min_lr: 1e-2\n"), "test.yaml", 7, "optimizer.min_lr",
                "test.yaml:7: optimizer.min_lr: optimizer.min_lr (0.01) is greater than optimizer.lr (0.001)");
    }

    @Test
    void duplicateKeys() {
        assertError(error(MINIMAL + "model:\n  n_head: 4\n  d_model: 64\n  n_head: 8\n"), "test.yaml", 8, "model.n_head",
                "test.yaml:8: model.n_head: duplicate key (first given at line 6); keep one");
        assertEquals("test.yaml:5: data: duplicate key (first given at line 1); keep one",
                error(MINIMAL + "data:\n  val: v\n").getMessage());
        assertEquals("test.yaml:7: model.n_head: duplicate key (first given at line 6); keep one",
                error("data:\n  train: c\ntraining:\n  steps: 1\nmodel:\n  n_head: 4\nmodel.n_head: 2\n").getMessage());
    }

    @Test
    void documentThatIsNotAMapping() {
        assertEquals("test.yaml:1: expected a mapping of sections (model, optimizer, schedule, data, training, output, metrics, parallel), got a list",
                error("- model\n- data\n").getMessage());
        assertEquals("test.yaml:1: expected a mapping of sections (model, optimizer, schedule, data, training, output, metrics, parallel), got 'hello'",
                error("hello\n").getMessage());
        assertEquals("test.yaml: the file is empty; expected sections model, optimizer, schedule, data, training, output, metrics, parallel"
                + " (see docs/config-reference.md)", error("# only a comment\n").getMessage());
    }

    @Test
    void yamlSyntaxErrorNamesTheLineWhereTheConstructOpened() {
        ConfigException e = error("data:\n  train: corpus\n  val: [unclosed\ntraining:\n  steps: 1\n");
        assertEquals("test.yaml", e.file());
        assertEquals(3, e.line(), e.getMessage());
        assertEquals("test.yaml:3: YAML syntax error: while parsing a flow sequence that starts here (column 8): expected"
                + " ',' or ']', but got : at line 4; close the '[' with ']' (items separated by ', ')", e.getMessage());

        // an unclosed quote is only noticed at the end of the file: the error names the quote's line, then the end
        ConfigException quote = error("data:\n  train: corpus\n  val: \"v\ntraining:\n  steps: 1\n\n\n");
        assertEquals(3, quote.line(), quote.getMessage());
        assertTrue(quote.getMessage().startsWith("test.yaml:3: YAML syntax error: while scanning a quoted scalar that"
                + " starts here (column 8): found unexpected end of stream at line 8; close the quote on this line"),
                quote.getMessage());

        ConfigException indent = error("data:\n  train: corpus\n   val: v\n");
        assertEquals(3, indent.line(), indent.getMessage());
        assertEquals("test.yaml:3: YAML syntax error: mapping values are not allowed here", indent.getMessage());
    }

    @Test
    void missingOrUnreadableFile() throws IOException {
        ConfigException e = assertThrows(ConfigException.class,
                () -> ConfigLoader.load(Path.of("nope.yaml"), List.of(), workDir));
        assertTrue(e.getMessage().startsWith("config file nope.yaml not found (working directory " + workDir), e.getMessage());
        Files.createDirectory(workDir.resolve("adir"));
        assertTrue(assertThrows(ConfigException.class, () -> ConfigLoader.load(Path.of("adir"), List.of(), workDir))
                .getMessage().contains("is a directory"));
    }

    @Test
    void loadsAFileRelativeToTheWorkingDirectory() throws IOException {
        Files.createDirectories(workDir.resolve("configs"));
        Files.writeString(workDir.resolve("configs/run.yaml"), MINIMAL + "model:\n  n_head: x\n");
        ConfigException e = assertThrows(ConfigException.class,
                () -> ConfigLoader.load(Path.of("configs/run.yaml"), List.of(), workDir));
        assertEquals("configs/run.yaml:6: model.n_head: expected an integer, got 'x'", e.getMessage());
        RunConfig c = ConfigLoader.load(Path.of("configs/run.yaml"), List.of("model.n_head=2"), workDir);
        assertEquals(2, c.model().nHead());
    }

    // ---- overrides ---------------------------------------------------------------------------------------------

    @Test
    void overridesReplaceFileValuesInOrder() {
        RunConfig c = load(MINIMAL + "model:\n  n_head: 4\n", "model.n_head=8", "optimizer.lr=1e-3",
                "model.norm=post", "data.val=valdir", "training.steps=20", "training.steps=30", "model.bias=false");
        assertEquals(8, c.model().nHead());
        assertEquals(1e-3, c.optimizer().lr());
        assertEquals("post", c.model().norm());
        assertEquals(workDir.resolve("valdir").toString(), c.data().val());
        assertEquals(30, c.training().steps(), "the last override of a key wins");
        assertEquals(false, c.model().bias());
        assertEquals("", load("data:\n  train: c\n  val: v\ntraining:\n  steps: 1\n", "data.val=").data().val());
    }

    @Test
    void overridesAreValidated() {
        assertError(error(MINIMAL, "model.n_head=four"), "--set", -1, "model.n_head",
                "--set model.n_head: expected an integer, got 'four'");
        assertError(error(MINIMAL, "model.n_heads=4"), "--set", -1, "model.n_heads",
                "--set model.n_heads: unknown key; did you mean model.n_head?");
        assertEquals("--set model.dropout: must be in [0, 1), got 1", error(MINIMAL, "model.dropout=1").getMessage());
        assertEquals("--set model.n_head: expected an integer, got a list", error(MINIMAL, "model.n_head=[1,2]").getMessage());
        assertEquals("--set model: model is a section; set one of its keys, e.g. --set model.vocab_size=...",
                error(MINIMAL, "model=3").getMessage());
        assertEquals("--set model.n_head: expected key=value, e.g. --set model.n_head=8", error(MINIMAL, "model.n_head").getMessage());
        assertEquals("--set optimizer.betas: unknown key; did you mean optimizer.beta1 or optimizer.beta2?",
                error(MINIMAL, "optimizer.betas=0.9").getMessage());
        assertEquals("--set modle.n_head: unknown section modle; did you mean model.n_head?",
                error(MINIMAL, "modle.n_head=2").getMessage());
        assertTrue(error(MINIMAL, "model.norm=\"pre").getMessage().startsWith("--set model.norm: YAML syntax error: "));
    }

    @Test
    void ruleBrokenByAnOverrideNamesTheOverride() {
        assertError(error(MINIMAL + "model:\n  d_model: 64\n", "model.n_head=5"), "--set", -1, "model.n_head",
                "--set model.n_head: model.d_model (64) is not divisible by model.n_head (5);"
                        + " choose n_head dividing d_model (head size = d_model / n_head)");
        assertEquals("test.yaml:4: training.steps: training.steps (10) and training.tokens (100) are both set;"
                + " set exactly one (the other 0)", error(MINIMAL, "training.tokens=100").getMessage());
        assertEquals(100, load(MINIMAL, "training.tokens=100", "training.steps=0").training().tokens());
    }

    // ---- resolved config ----------------------------------------------------------------------------------------

    @Test
    void resolvedYamlRoundTrips() {
        RunConfig c = load("""
                model:
                  dropout: 0.123456789012345
                  init_std: 1.0e-7
                data:
                  train: "dir with spaces/and \\"quotes\\" and: colon #hash"
                  val: true
                  tokenizer_dir: hdfs://nn/tok
                optimizer:
                  lr: 3.0e-4
                training:
                  tokens: 123456789
                """);
        String yaml = ConfigLoader.toYaml(c);
        RunConfig back = ConfigLoader.fromResolvedYaml(yaml);
        assertEquals(c, back);
        assertEquals(yaml, ConfigLoader.toYaml(back));
        assertTrue(yaml.contains("\n  lr: 3.0e-4\n"), yaml);
        assertTrue(yaml.contains("\n  val: " + workDir.resolve("true") + "\n"), yaml);
        for (ConfigSchema.Entry e : ConfigSchema.entries()) {
            assertTrue(yaml.contains("\n  " + e.name() + ": "), "every key is written: " + e.key());
        }
    }

    @Test
    void toMapNestsSectionsInSchemaOrder() {
        Map<String, Object> m = ConfigLoader.toMap(load(MINIMAL));
        assertEquals(List.of("model", "optimizer", "schedule", "data", "training", "output", "metrics", "parallel"), List.copyOf(m.keySet()));
        @SuppressWarnings("unchecked")
        Map<String, Object> model = (Map<String, Object>) m.get("model");
        assertEquals(257, model.get("vocab_size"));
        assertEquals(ConfigSchema.entries("model").size(), model.size());
    }

    @Test
    void fromMapAcceptsDottedAndNestedKeysAndValidatesThem() {
        Map<String, Object> values = new LinkedHashMap<>();
        values.put("model", Map.of("n_head", 2, "d_model", 32));
        values.put("data.train", "/abs/corpus");
        values.put("training.steps", 5L);
        values.put("optimizer.lr", 1e-3);
        RunConfig c = ConfigLoader.fromMap(values);
        assertEquals(2, c.model().nHead());
        assertEquals(32, c.model().dModel());
        assertEquals(5, c.training().steps());
        assertEquals(1e-3, c.optimizer().lr());
        values.put("model.dropout", 2.0);
        assertEquals("<map>: model.dropout: must be in [0, 1), got 2.0",
                assertThrows(ConfigException.class, () -> ConfigLoader.fromMap(values)).getMessage());
    }

    @Test
    void accumulationStepsFollowMegatronsRule() {
        RunConfig c = load("data:\n  train: c\ntraining:\n  steps: 1\n  global_batch: 32\n  micro_batch: 4\n");
        assertEquals(8, c.accumulationSteps(1));
        assertEquals(2, c.accumulationSteps(4));
        ConfigException e = assertThrows(ConfigException.class, () -> c.accumulationSteps(3));
        assertTrue(e.getMessage().contains("training.global_batch (32) is not a multiple of training.micro_batch (4) x data-parallel size (3) = 12"),
                e.getMessage());
    }

    @Test
    void unsetMicroBatchIsOneMicroBatchPerRankPerStep() {
        RunConfig c = load("data:\n  train: c\ntraining:\n  steps: 1\n  global_batch: 16\n");
        assertEquals(0, c.training().microBatch(), "0 = auto, as configured");
        assertEquals(List.of(16, 8, 4), List.of(c.microBatch(1), c.microBatch(2), c.microBatch(4)));
        assertEquals(List.of(1, 1, 1), List.of(c.accumulationSteps(1), c.accumulationSteps(2), c.accumulationSteps(4)));
        ConfigException e = assertThrows(ConfigException.class, () -> c.accumulationSteps(3));
        assertEquals("training.global_batch: training.global_batch (16) is not a multiple of the data-parallel size (3),"
                + " which it must be with training.micro_batch 0 (= global_batch / data-parallel size); choose a"
                + " global_batch divisible by 3, or set training.micro_batch", e.getMessage());
        assertEquals(4, load("data:\n  train: c\ntraining:\n  steps: 1\n  global_batch: 16\n  micro_batch: 4\n").microBatch(2),
                "a micro_batch that is set is kept");
    }

    @Test
    void layerNormEpsilonZeroSelectsTheFusedOpAndNegativeIsRefused() {
        assertEquals(0.0, load(MINIMAL + "model:\n  layer_norm_eps: 0\n").model().layerNormEps());
        assertEquals("test.yaml:6: model.layer_norm_eps: must be >= 0, got -1e-5",
                error(MINIMAL + "model:\n  layer_norm_eps: -1e-5\n").getMessage());
    }

    // ---- deprecated keys ------------------------------------------------------------------------------------------

    private RunConfig loadWarned(List<String> warnings, String yaml, String... overrides) {
        return ConfigLoader.fromYaml(yaml, "test.yaml", List.of(overrides), workDir, warnings::add);
    }

    @Test
    void aRenamedKeyIsReadAsItsReplacementWithOneWarningLine() {
        List<String> warnings = new ArrayList<>();
        RunConfig c = loadWarned(warnings, MINIMAL + "parallel:\n  dp:\n    overlap_stages: 2\n");
        assertEquals(2, c.parallel().dpOverlapSegments());
        assertEquals(List.of("warning: test.yaml:7: parallel.dp.overlap_stages: deprecated, use parallel.dp.overlap_segments"
                + " (read as parallel.dp.overlap_segments: 2)"), warnings);
        assertTrue(!ConfigLoader.toYaml(c).contains("overlap_stages"), "the resolved config has only the new key");

        warnings.clear();
        assertEquals(3, loadWarned(warnings, MINIMAL, "parallel.dp.overlap_stages=3").parallel().dpOverlapSegments());
        assertEquals(List.of("warning: --set parallel.dp.overlap_stages: deprecated, use parallel.dp.overlap_segments"
                + " (read as parallel.dp.overlap_segments: 3)"), warnings);
        assertEquals(2, ConfigLoader.fromMap(Map.of("data.train", "/c", "training.steps", 1,
                "parallel", Map.of("dp", Map.of("overlap_stages", 2)))).parallel().dpOverlapSegments());
        // its value is checked like the replacement's, under the name it was given
        assertError(error(MINIMAL + "parallel:\n  dp:\n    overlap_stages: 0\n"), "test.yaml", 7, "parallel.dp.overlap_stages",
                "test.yaml:7: parallel.dp.overlap_stages: must be >= 1, got 0");
    }

    @Test
    void evalBatchesConvertToSequencesByTheMicroBatch() {
        List<String> warnings = new ArrayList<>();
        RunConfig c = loadWarned(warnings, "data:\n  train: c\ntraining:\n  steps: 1\n  global_batch: 16\n  micro_batch: 4\n"
                + "  eval_batches: 3\n");
        assertEquals(12, c.training().evalSequences());
        assertEquals(List.of("warning: test.yaml:7: training.eval_batches: deprecated, use training.eval_sequences"
                + " (read as training.eval_sequences: 12 = 3 x training.micro_batch 4)"), warnings);
        // an automatic micro-batch is only known at run time: the old count cannot say how many sequences it meant
        assertError(error("data:\n  train: c\ntraining:\n  steps: 1\n  eval_batches: 3\n"), "test.yaml", 5,
                "training.eval_batches", "test.yaml:5: training.eval_batches: deprecated (counted micro-batches, so the"
                        + " evaluated set changed with micro_batch and the data-parallel size); it converts to"
                        + " training.eval_sequences as training.eval_batches x training.micro_batch, but training.micro_batch"
                        + " is 0 (auto, known only at run time): set training.eval_sequences instead");
    }

    @Test
    void aDeprecatedKeyAndItsReplacementTogetherAreRefused() {
        assertError(error(MINIMAL + "  eval_batches: 2\n  eval_sequences: 8\n  micro_batch: 4\n"), "test.yaml", 5,
                "training.eval_batches", "test.yaml:5: training.eval_batches: deprecated and replaced by"
                        + " training.eval_sequences, which is given too (line 6); keep only training.eval_sequences");
        assertEquals("--set parallel.dp.overlap_stages: deprecated and replaced by parallel.dp.overlap_segments, which is"
                        + " given too (--set); keep only parallel.dp.overlap_segments",
                error(MINIMAL, "parallel.dp.overlap_segments=2", "parallel.dp.overlap_stages=2").getMessage());
    }

    @Test
    void anOldCheckpointsResolvedConfigStillLoads() {
        // written before overlap_segments and eval_sequences existed: micro_batch 8, eval_batches 8, overlap_stages 1
        String old = ConfigLoader.toYaml(load(MINIMAL, "training.micro_batch=8"))
                .replace("  eval_sequences: 64\n", "  eval_batches: 8\n")
                .replace("  dp.overlap_segments: 1\n", "  dp.overlap_stages: 1\n");
        List<String> warnings = new ArrayList<>();
        RunConfig c = ConfigLoader.fromYaml(old, ConfigLoader.RESOLVED_SOURCE, List.of(), workDir, warnings::add);
        assertEquals(64, c.training().evalSequences());
        assertEquals(1, c.parallel().dpOverlapSegments());
        assertEquals(2, warnings.size(), warnings.toString());
    }

    @Test
    void editDistance() {
        assertEquals(1, KeySuggestions.editDistance("n_heads", "n_head"));
        assertEquals(2, KeySuggestions.editDistance("modle", "model"));
        assertEquals(3, KeySuggestions.editDistance("", "abc"));
    }
}
