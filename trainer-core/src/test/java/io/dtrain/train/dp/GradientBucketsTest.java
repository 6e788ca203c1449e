package io.dtrain.train.dp;

import io.dtrain.config.ConfigLoader;
import io.dtrain.config.RunConfig;
import io.dtrain.model.GptModel;
import io.dtrain.model.ParamLayout;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class GradientBucketsTest {

    @Test
    void bucketsTileEachStageRangeWithoutStraddlingAndRespectTheCap() {
        long[][] ranges = {{0, 10}, {10, 10}, {10, 35}};
        List<GradientBuckets.Bucket> b = GradientBuckets.plan(ranges, 8);
        // stage 0: 10 elements -> 2 buckets of 5; stage 1 empty; stage 2: 25 -> 4 buckets of 6 or 7
        assertEquals(List.of(new GradientBuckets.Bucket(0, 0, 0, 5), new GradientBuckets.Bucket(1, 0, 5, 10),
                new GradientBuckets.Bucket(2, 2, 10, 16), new GradientBuckets.Bucket(3, 2, 16, 22),
                new GradientBuckets.Bucket(4, 2, 22, 28), new GradientBuckets.Bucket(5, 2, 28, 35)), b);
        assertEquals(List.of(new GradientBuckets.Bucket(0, 0, 0, 10), new GradientBuckets.Bucket(1, 2, 10, 35)),
                GradientBuckets.plan(ranges, 1000));
        assertThrows(IllegalArgumentException.class, () -> GradientBuckets.plan(ranges, 0));
    }

    @Test
    void bucketSizeInElementsFollowsMebibytesAndElementWidth() {
        assertEquals(25L * 1024 * 1024 / 4, GradientBuckets.elementsPerBucket(25, 4));
        assertEquals(25L * 1024 * 1024 / 8, GradientBuckets.elementsPerBucket(25, 8));
        assertEquals(1, GradientBuckets.elementsPerBucket(1e-9, 8));
    }

    /** The model's stage ranges tile the flat buffer for every split, so each gradient is in exactly one bucket. */
    @Test
    void gptStageRangesTileTheFlatBuffer() {
        Path repo = Path.of(System.getProperty("dtrain.repo.root", "..")).toAbsolutePath().normalize();
        RunConfig cfg = ConfigLoader.load(repo.resolve("configs/gpt-micro.yaml"), List.of(), repo);
        for (int k = 1; k <= cfg.model().nLayer(); k++) {
            try (GptModel model = new GptModel(cfg.model(), GptModel.balancedPartition(cfg.model(), k))) {
                ParamLayout layout = model.layout();
                long[][] ranges = new long[k][];
                for (int s = 0; s < k; s++) {
                    ranges[s] = layout.stageRange(s);
                }
                List<GradientBuckets.Bucket> b = GradientBuckets.plan(ranges, 1000);
                long covered = 0;
                for (GradientBuckets.Bucket bucket : b) {
                    assertEquals(covered, bucket.from(), "buckets are contiguous, split " + k);
                    assertTrue(bucket.length() <= 1000);
                    assertTrue(bucket.from() >= ranges[bucket.stage()][0] && bucket.to() <= ranges[bucket.stage()][1],
                            "bucket " + bucket + " stays inside its stage");
                    covered = bucket.to();
                }
                assertEquals(layout.size(), covered, "split " + k);
            }
        }
        // A range plan that leaves a hole is refused before any collective runs.
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> new GradientBuckets(null, new long[][] {{0, 4}, {6, 9}}, 9, 100));
        assertTrue(e.getMessage().contains("[4, 6)"), e.getMessage());
    }
}
