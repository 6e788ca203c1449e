package io.dtrain.train;

import io.dtrain.config.ConfigLoader;
import io.dtrain.data.DataException;
import io.dtrain.data.fs.DataFiles;
import io.dtrain.data.loader.TokenDatasets;
import io.dtrain.data.reader.InputFiles;
import org.apache.hadoop.fs.Path;

/**
 * What {@code dtrain train} checks about its input paths while the configuration is loaded, before it prints or
 * writes anything: the training and validation data resolve to files (or a preprocessed directory), and a
 * tokenizer directory exists. A failure becomes a {@link io.dtrain.config.ConfigException} naming file, line and key.
 */
public final class TrainInputs {
    /** The check to pass to {@link ConfigLoader#load(java.nio.file.Path, java.util.List, java.nio.file.Path, java.util.function.Consumer, ConfigLoader.InputCheck)}. */
    public static final ConfigLoader.InputCheck CHECK = TrainInputs::problem;

    private TrainInputs() {
    }

    static String problem(String key, String path) {
        switch (key) {
            case "data.train", "data.val" -> {
                if (TokenDatasets.isPreprocessed(path)) {
                    return null;
                }
                try {
                    InputFiles.resolve(path);
                    return null;
                } catch (DataException e) {
                    return e.getMessage() + "; fix the path (relative paths resolve against the working directory)";
                }
            }
            case "data.tokenizer_dir" -> {
                return DataFiles.isDirectory(new Path(path)) ? null : "tokenizer directory " + path + " does not exist;"
                        + " point it at a directory with vocab.json and merges.txt (or tokenizer.json)";
            }
            default -> {
                return null;
            }
        }
    }
}
