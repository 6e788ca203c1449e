package io.dtrain.parallel;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.extension.AfterAllCallback;
import org.junit.jupiter.api.extension.BeforeAllCallback;
import org.junit.jupiter.api.extension.ExtensionContext;

/**
 * A test class's job directory under /dev/shm (its workers share one media driver there): register as a static
 * field with {@code @RegisterExtension}; the driver is stopped and the directory removed after the class.
 */
final class JobDirectory implements BeforeAllCallback, AfterAllCallback {
    private Path jobDir;

    Path jobDir() {
        return jobDir;
    }

    Path aeronDir() {
        return jobDir.resolve("aeron");
    }

    @Override
    public void beforeAll(ExtensionContext context) throws Exception {
        jobDir = Files.createTempDirectory(Path.of("/dev/shm"), "dtrain-test-");
    }

    @Override
    public void afterAll(ExtensionContext context) {
        Workers.cleanUp(jobDir, aeronDir());
    }
}
