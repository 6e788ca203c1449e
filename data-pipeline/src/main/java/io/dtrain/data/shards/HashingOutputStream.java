package io.dtrain.data.shards;

import java.io.FilterOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;

/**
 * Passes bytes through while counting them and feeding a SHA-256. A shard's hash for the manifest is taken while it
 * is written, so a fresh shard is never read back; {@link #sha256()} is also the digest of the kept shards a re-run
 * has to hash again ({@link OutputDirectory}), so both are the same hash.
 */
final class HashingOutputStream extends FilterOutputStream {
    final MessageDigest digest = sha256();
    long count;

    HashingOutputStream(OutputStream out) {
        super(out);
    }

    @Override
    public void write(int b) throws IOException {
        out.write(b);
        digest.update((byte) b);
        count++;
    }

    @Override
    public void write(byte[] b, int off, int len) throws IOException {
        out.write(b, off, len);
        digest.update(b, off, len);
        count += len;
    }

    @Override
    public void close() throws IOException {
        flush();  // the caller closes the underlying stream
    }

    static MessageDigest sha256() {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
