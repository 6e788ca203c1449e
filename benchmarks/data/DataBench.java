// dtrain data-pipeline benchmarks, run as a single-file program (java DataBench.java ...) on the classpath of
// launcher/target/dtrain.jar; see run.sh. Prints one JSON object per figure, with the 1-minute load average at that
// moment.
//   encode FILE TOKENIZER_DIR            GPT-2 encode MB/s of UTF-8 text, one thread and all cores (median of 5 passes
//                                        after 2 warm-up passes; first_pass_mb_per_s: the first of them, which with
//                                        one thread is a fresh tokenizer on a cold JIT, as a real run starts)
//   preprocess INPUT OUT TOKENIZER_DIR   Preprocessor.run on all cores into a fresh OUT: MB/s of text
//   loader SHARDS TOKENIZER_DIR          BatchLoader.buildStep on the calling thread (one core): tokens/s

import io.dtrain.data.loader.ArrowTokenDataset;
import io.dtrain.data.loader.BatchLoader;
import io.dtrain.data.reader.BadRecordPolicy;
import io.dtrain.data.reader.Document;
import io.dtrain.data.reader.PileReader;
import io.dtrain.data.shards.Preprocessor;
import io.dtrain.data.shards.Progress;
import io.dtrain.data.tokenizer.Tokenizer;
import io.dtrain.data.tokenizer.Tokenizers;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

public class DataBench {
    static final int CORES = Runtime.getRuntime().availableProcessors();

    public static void main(String[] args) throws Exception {
        switch (args[0]) {
            case "encode" -> encode(args[1], Tokenizers.open(args[2]));
            case "preprocess" -> preprocess(args[1], args[2], Tokenizers.open(args[3]));
            case "loader" -> loader(args[1], Tokenizers.open(args[2]));
            default -> throw new IllegalArgumentException("unknown benchmark " + args[0]);
        }
    }

    static String load() throws Exception {
        return Files.readString(Path.of("/proc/loadavg")).split(" ")[0];
    }

    static void encode(String file, Tokenizer tok) throws Exception {
        List<String> texts = new ArrayList<>();
        try (PileReader r = PileReader.open(file, BadRecordPolicy.FAIL)) {
            r.forEachRemaining(d -> texts.add(d.text()));
        }
        long bytes = texts.stream().mapToLong(t -> t.getBytes(StandardCharsets.UTF_8).length).sum();
        for (int threads : new int[] {1, CORES}) {
            double[] seconds = new double[5];
            double firstPassSeconds = 0;
            long tokens = 0;
            for (int pass = -2; pass < seconds.length; pass++) {  // two warm-up passes (JIT)
                AtomicInteger next = new AtomicInteger();
                AtomicLong count = new AtomicLong();
                Runnable work = () -> {
                    for (int i; (i = next.getAndIncrement()) < texts.size(); ) {
                        count.addAndGet(tok.encode(texts.get(i)).length);
                    }
                };
                long t0 = System.nanoTime();
                List<Thread> ts = new ArrayList<>();
                for (int t = 0; t < threads; t++) {
                    Thread th = new Thread(work);
                    th.start();
                    ts.add(th);
                }
                for (Thread t : ts) {
                    t.join();
                }
                if (pass >= 0) {
                    seconds[pass] = (System.nanoTime() - t0) / 1e9;
                } else if (pass == -2) {
                    firstPassSeconds = (System.nanoTime() - t0) / 1e9;
                }
                tokens = count.get();
            }
            Arrays.sort(seconds);
            System.out.printf(Locale.ROOT, "{\"impl\": \"dtrain-gpt2\", \"threads\": %d, \"documents\": %d, \"bytes\": %d,"
                    + " \"tokens\": %d, \"mb_per_s\": %.2f, \"first_pass_mb_per_s\": %.2f, \"load\": %s}%n",
                    threads, texts.size(), bytes, tokens, bytes / 1e6 / seconds[2], bytes / 1e6 / firstPassSeconds,
                    load());
        }
    }

    static void preprocess(String input, String out, Tokenizer tok) throws Exception {
        for (int run = 0; run < 2; run++) {
            Path dir = Path.of(out + "-" + run);
            if (Files.exists(dir)) {
                try (var files = Files.walk(dir)) {
                    files.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
                }
            }
            Preprocessor.Result r = Preprocessor.run(new Preprocessor.Options(input, dir.toString(), tok,
                    Preprocessor.Options.DEFAULT_SHARD_BYTES, CORES, BadRecordPolicy.SKIP,
                    Preprocessor.Options.DEFAULT_BATCH_TOKENS), Progress.off());
            System.out.printf(Locale.ROOT, "{\"impl\": \"dtrain-preprocess\", \"workers\": %d, \"documents\": %d,"
                    + " \"text_bytes\": %d, \"tokens\": %d, \"shards\": %d, \"seconds\": %.2f, \"mb_per_s\": %.2f,"
                    + " \"input_mb_per_s\": %.2f, \"load\": %s}%n", CORES, r.manifest().documents(), r.textBytes(),
                    r.manifest().tokens(), r.manifest().shards().size(), r.seconds(), r.textBytes() / 1e6 / r.seconds(),
                    r.inputBytes() / 1e6 / r.seconds(), load());
        }
    }

    static void loader(String shards, Tokenizer tok) throws Exception {
        int seqLen = 256;
        int globalBatch = 64;
        try (ArrowTokenDataset ds = ArrowTokenDataset.open(shards, tok, seqLen);
             BatchLoader loader = new BatchLoader(ds, globalBatch, 8, 0, 1, 1234)) {
            long step = 0;
            for (long end = System.nanoTime() + 1_000_000_000L; System.nanoTime() < end; ) {
                loader.buildStep(step++);  // warm-up
            }
            long steps = 0;
            long t0 = System.nanoTime();
            long end = t0 + 3_000_000_000L;
            while (System.nanoTime() < end) {
                loader.buildStep(step++);
                steps++;
            }
            double seconds = (System.nanoTime() - t0) / 1e9;
            System.out.printf(Locale.ROOT, "{\"impl\": \"dtrain-loader\", \"threads\": 1, \"seq_len\": %d,"
                    + " \"global_batch\": %d, \"samples\": %d, \"tokens_per_s\": %.0f, \"load\": %s}%n",
                    seqLen, globalBatch, ds.numSamples(), steps * globalBatch * (seqLen + 1) / seconds, load());
        }
    }
}
