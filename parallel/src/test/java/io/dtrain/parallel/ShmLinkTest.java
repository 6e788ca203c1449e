package io.dtrain.parallel;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.aeron.Publication;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** The shared-memory ring of records on its own (the ring over it runs between processes in CollectivesProcessTest). */
class ShmLinkTest {
    private static final int CAPACITY = 64 * 1024;

    @TempDir
    Path dir;

    @Test
    @Timeout(60) // a lost frame would otherwise leave the consumer polling forever
    void framesOfEveryLengthArriveInOrderAcrossWrapAroundsWhileTheProducerRunsAhead() throws Exception {
        Path file = dir.resolve("link");
        int frames = 20_000;
        long seed = 42;
        try (ShmLink.Consumer consumer = new ShmLink.Consumer(file, CAPACITY);
             ShmLink.Producer producer = new ShmLink.Producer(file)) {
            AtomicReference<Throwable> failure = new AtomicReference<>();
            Thread sender = new Thread(() -> {
                try {
                    Random random = new Random(seed);
                    for (int i = 0; i < frames; i++) {
                        int length = 4 + random.nextInt(CAPACITY / 2 - 64);
                        while (producer.tryClaim(length) == Publication.BACK_PRESSURED) {
                            Thread.onSpinWait();
                        }
                        int at = producer.offset();
                        producer.buffer().putInt(at, i);
                        for (int b = 4; b < length; b += 997) {
                            producer.buffer().putByte(at + b, (byte) (i + b));
                        }
                        producer.commit();
                    }
                } catch (Throwable t) {
                    failure.set(t);
                }
            });
            sender.start();
            Random expected = new Random(seed);
            int[] next = {0};
            while (next[0] < frames && failure.get() == null) {
                int length = 4 + expected.nextInt(CAPACITY / 2 - 64);
                boolean[] leaveItOnce = {next[0] % 7 == 0};
                int polled;
                do {
                    polled = consumer.poll((buffer, offset, got) -> {
                        if (leaveItOnce[0]) {
                            leaveItOnce[0] = false;
                            return false; // like the ring when it cannot forward yet: the same frame comes again
                        }
                        assertEquals(length, got, "frame " + next[0]);
                        assertEquals(next[0], buffer.getInt(offset));
                        for (int b = 4; b < length; b += 997) {
                            assertEquals((byte) (next[0] + b), buffer.getByte(offset + b));
                        }
                        return true;
                    });
                } while (polled == 0 && failure.get() == null);
                next[0]++;
            }
            sender.join();
            if (failure.get() != null) {
                throw new AssertionError(failure.get());
            }
            assertEquals(0, consumer.poll((b, o, l) -> true), "nothing after the last frame");
        }
    }

    @Test
    void aFullRingBackPressuresAndAClosedEndIsSeenByTheOther() {
        Path file = dir.resolve("link");
        ShmLink.Consumer consumer = new ShmLink.Consumer(file, CAPACITY);
        ShmLink.Producer producer = new ShmLink.Producer(file);
        assertTrue(consumer.isConnected());
        assertFalse(Files.exists(file), "unlinked once both ends have it");
        int frame = 16 * 1024 - 8;
        for (int i = 0; i < CAPACITY / ShmLink.recordLength(frame); i++) {
            assertTrue(producer.tryClaim(frame) > 0);
            producer.commit();
        }
        assertEquals(Publication.BACK_PRESSURED, producer.tryClaim(frame));
        assertEquals(1, consumer.poll((b, o, l) -> true));
        assertTrue(producer.tryClaim(frame) > 0, "room again after one frame was consumed");
        producer.commit();
        assertThrows(IllegalArgumentException.class, () -> producer.tryClaim(CAPACITY / 2), "longer than half the ring");
        assertFalse(consumer.isClosed());
        producer.close();
        int left = 0;
        while (!consumer.isClosed()) {
            assertEquals(1, consumer.poll((b, o, l) -> true), "closed only once drained");
            left++;
        }
        assertEquals(CAPACITY / ShmLink.recordLength(frame), left);
        consumer.close();
    }

    @Test
    void theProducerSeesAClosedConsumerAsNotConnected() {
        Path file = dir.resolve("link");
        ShmLink.Consumer consumer = new ShmLink.Consumer(file, CAPACITY);
        ShmLink.Producer producer = new ShmLink.Producer(file);
        int frame = CAPACITY / 4 - 8;
        for (int i = 0; i < 4; i++) {
            assertTrue(producer.tryClaim(frame) > 0);
            producer.commit();
        }
        consumer.close();
        assertEquals(Publication.NOT_CONNECTED, producer.tryClaim(frame));
        producer.close();
    }
}
