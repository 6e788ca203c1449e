package io.dtrain.data;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;

/** The shared read-only test data (/work/shared/data), passed by Surefire as {@code dtrain.shared.data}. */
public final class SharedData {
    private SharedData() {}

    public static Path dir() {
        String p = System.getProperty("dtrain.shared.data");
        Path dir = p != null ? Paths.get(p) : Paths.get("..", "..", "shared", "data");
        if (!Files.isDirectory(dir)) {
            throw new IllegalStateException("shared test data not found at " + dir.toAbsolutePath()
                    + "; set -Ddtrain.shared.data=/path/to/shared/data");
        }
        return dir.normalize();
    }

    public static Path path(String relative) {
        return dir().resolve(relative);
    }
}
