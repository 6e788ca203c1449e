package io.dtrain.data.fs;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.dtrain.data.DataException;
import io.dtrain.data.SharedData;
import io.dtrain.data.loader.ArrowTokenDataset;
import io.dtrain.data.loader.PackedTokenDataset;
import io.dtrain.data.shards.PreprocessTest;
import io.dtrain.data.shards.Preprocessor;
import io.dtrain.data.shards.Progress;
import io.dtrain.data.loader.TokenDatasets;
import io.dtrain.data.reader.BadRecordPolicy;
import io.dtrain.data.reader.Document;
import io.dtrain.data.reader.PileReader;
import io.dtrain.data.tokenizer.ByteTokenizer;
import java.io.File;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.hdfs.MiniDFSCluster;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** The reader, the loader and atomic writes on a real in-process HDFS (one NameNode, one DataNode). */
class HdfsTest {
    static {
        // An in-process NameNode + DataNode log dozens of expected warnings at start and shutdown.
        System.setProperty("org.slf4j.simpleLogger.log.org.apache.hadoop", "off");
    }

    private static File base;
    private static MiniDFSCluster cluster;
    private static FileSystem hdfs;
    private static String root;

    @BeforeAll
    static void startHdfs() throws Exception {
        base = Files.createTempDirectory("dtrain-minidfs").toFile();
        Configuration conf = new Configuration();
        conf.set(MiniDFSCluster.HDFS_MINIDFS_BASEDIR, base.getAbsolutePath());
        cluster = new MiniDFSCluster.Builder(conf, base).numDataNodes(1).build();
        cluster.waitActive();
        hdfs = cluster.getFileSystem();
        root = "hdfs://localhost:" + cluster.getNameNodePort();
        for (String f : List.of("00.jsonl.zst", "01.jsonl", "02.jsonl.zst", "MANIFEST.tsv")) {
            hdfs.copyFromLocalFile(new Path(SharedData.path("pile-tiny/" + f).toString()), new Path("/pile-tiny/" + f));
        }
        hdfs.copyFromLocalFile(new Path(SharedData.path("bad-input/truncated-stream.jsonl.zst").toString()),
                new Path("/bad/truncated-stream.jsonl.zst"));
    }

    @AfterAll
    static void stopHdfs() throws Exception {
        if (cluster != null) {
            cluster.shutdown(true);
        }
        if (base != null) {
            org.apache.hadoop.fs.FileUtil.fullyDelete(base);
        }
    }

    private static List<Document> read(String input) {
        List<Document> docs = new ArrayList<>();
        try (PileReader r = PileReader.open(input, BadRecordPolicy.FAIL)) {
            r.forEachRemaining(docs::add);
        }
        return docs;
    }

    @Test
    void hdfsDirectoryReadsLikeTheLocalOne() {
        List<Document> local = read(SharedData.path("pile-tiny").toString());
        List<Document> remote = read(root + "/pile-tiny");
        assertEquals(71, remote.size());
        for (int i = 0; i < local.size(); i++) {
            Document l = local.get(i);
            Document r = remote.get(i);
            assertEquals(l.text(), r.text());
            assertEquals(l.pileSetName(), r.pileSetName());
            assertEquals(l.line(), r.line());
            assertEquals(root + "/pile-tiny/" + new Path(l.file()).getName(), r.file());
        }
        assertEquals(44 + 15, read(root + "/pile-tiny/*.zst").size());
        PackedTokenDataset ds = TokenDatasets.open(root + "/pile-tiny", new ByteTokenizer(), 32, BadRecordPolicy.FAIL);
        assertEquals(323_900 + 71, ds.numTokens());
    }

    @Test
    void preprocessFromAndToHdfsAndTheLoaderReadsTheShardsThere() throws Exception {
        ByteTokenizer tok = new ByteTokenizer();
        String out = root + "/tiny-shards";
        Preprocessor.Options options = new Preprocessor.Options(root + "/pile-tiny", out, tok, 64_000, 2,
                BadRecordPolicy.FAIL, 3000);
        Preprocessor.Result first = Preprocessor.run(options, Progress.off());
        assertEquals(71, first.manifest().documents());
        assertTrue(first.shardsWritten() > 3, "shards: " + first.shardsWritten());
        assertEquals(root + "/pile-tiny/00.jsonl.zst", first.manifest().shards().get(0).source());
        PackedTokenDataset local = TokenDatasets.open(SharedData.path("pile-tiny").toString(), tok, 37, BadRecordPolicy.FAIL);
        try (ArrowTokenDataset remote = (ArrowTokenDataset) TokenDatasets.load(out, tok, 37, BadRecordPolicy.FAIL)) {
            PreprocessTest.assertSameWindows(local, remote, 41);  // one positioned read per window piece: keep it short
        }
        Preprocessor.Result again = Preprocessor.run(options, Progress.off());
        assertEquals(0, again.shardsWritten());
        assertEquals(first.manifest(), again.manifest());
        for (FileStatus st : hdfs.listStatus(new Path("/tiny-shards"))) {
            String name = st.getPath().getName();
            assertTrue(name.endsWith(".arrow") || name.equals("manifest.json"), "left behind: " + name);
        }
    }

    @Test
    void errorsNameTheHdfsPath() {
        DataException e = assertThrows(DataException.class, () -> read(root + "/bad/truncated-stream.jsonl.zst"));
        assertTrue(e.getMessage().startsWith(root + "/bad/truncated-stream.jsonl.zst: zstd stream is truncated"),
                e.getMessage());
        e = assertThrows(DataException.class, () -> read(root + "/nothing-here"));
        assertTrue(e.getMessage().contains("does not exist"), e.getMessage());
    }

    @Test
    void atomicWriteReplacesAnExistingFileAndLeavesNoTemporaries() throws Exception {
        Path target = new Path(root + "/out/ids.jsonl");
        for (String content : List.of("first\n", "second, longer\n")) {
            DataFiles.writeAtomically(target, out -> out.write(content.getBytes(StandardCharsets.UTF_8)));
            try (InputStream in = DataFiles.open(target, 4096)) {
                assertEquals(content, new String(in.readAllBytes(), StandardCharsets.UTF_8));
            }
        }
        assertThrows(DataException.class, () -> DataFiles.writeAtomically(target, out -> {
            out.write("partial".getBytes(StandardCharsets.UTF_8));
            throw new java.io.IOException("disk full (simulated)");
        }));
        try (InputStream in = DataFiles.open(target, 4096)) {
            assertEquals("second, longer\n", new String(in.readAllBytes(), StandardCharsets.UTF_8));
        }
        FileStatus[] left = hdfs.listStatus(new Path("/out"));
        assertEquals(List.of("ids.jsonl"), Arrays.stream(left).map(s -> s.getPath().getName()).toList());
    }
}
