package io.dtrain.data.tokenizer;

import java.nio.charset.StandardCharsets;

/** UTF-8 bytes as ids 0..255 plus end-of-document 256: no files, no unknowns, handy for tests and tiny models. */
public final class ByteTokenizer implements Tokenizer {
    public static final int EOT = 256;

    @Override
    public int[] encode(String text) {
        byte[] bytes = text.getBytes(StandardCharsets.UTF_8);
        int[] ids = new int[bytes.length];
        for (int i = 0; i < bytes.length; i++) {
            ids[i] = bytes[i] & 0xFF;
        }
        return ids;
    }

    @Override
    public String decode(int[] ids) {
        byte[] bytes = new byte[ids.length];
        int n = 0;
        StringBuilder out = new StringBuilder();
        for (int id : ids) {
            if (id < 0 || id > EOT) {
                throw new IllegalArgumentException("byte tokenizer id " + id + " is outside 0.." + EOT);
            }
            if (id == EOT) {
                out.append(new String(bytes, 0, n, StandardCharsets.UTF_8)).append("<|endoftext|>");
                n = 0;
            } else {
                bytes[n++] = (byte) id;
            }
        }
        return out.append(new String(bytes, 0, n, StandardCharsets.UTF_8)).toString();
    }

    @Override
    public int vocabSize() {
        return 257;
    }

    @Override
    public int eotId() {
        return EOT;
    }

    @Override
    public String identity() {
        return "byte-utf8-v1:vocab=257:eot=256";
    }

    @Override
    public String toString() {
        return identity();
    }
}
