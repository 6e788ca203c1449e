package io.dtrain.parallel;

import io.dtrain.common.UserFacingException;
import io.dtrain.parallel.rendezvous.RendezvousClient;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * Every rank checks, through the rendezvous store, that all ranks hold the same entries (their resolved run
 * configuration, key by key). Each rank publishes the SHA-256 of each value (its key -> hash map, never the values), so
 * a mismatch names the keys that differ and the ranks that differ from rank 0, on every rank alike.
 */
final class Agreement {
    private static final String PREFIX = "same/";

    private Agreement() {
    }

    static void requireSame(Communicator comm, String what, Map<String, String> entries) {
        RendezvousClient store = comm.store();
        if (store == null) {
            return; // a single-process world
        }
        StringBuilder mine = new StringBuilder();
        new TreeMap<>(entries).forEach((k, v) -> mine.append(k).append('\t').append(hash(v)).append('\n'));
        store.set(PREFIX + what + "/" + comm.rank(), mine.toString());
        int size = comm.config().worldSize();
        List<Map<String, String>> all = new ArrayList<>();
        for (int r = 0; r < size; r++) {
            all.add(parse(store.getString(PREFIX + what + "/" + r, comm.config().rendezvousTimeout())));
        }
        StringBuilder differences = new StringBuilder();
        for (int r = 1; r < size; r++) {
            List<String> keys = differingKeys(all.get(0), all.get(r));
            if (!keys.isEmpty()) {
                differences.append(differences.isEmpty() ? "" : "; ").append("rank ").append(r)
                        .append(" differs from rank 0 in ").append(String.join(", ", keys));
            }
        }
        if (!differences.isEmpty()) {
            throw new UserFacingException("the ranks resolved different " + what + "s (compared by hash at rendezvous): "
                    + differences + "; every rank must run the same configuration: the same config file content,"
                    + " --set overrides and paths on every node");
        }
    }

    private static List<String> differingKeys(Map<String, String> a, Map<String, String> b) {
        TreeMap<String, Boolean> keys = new TreeMap<>();
        a.keySet().forEach(k -> keys.put(k, true));
        b.keySet().forEach(k -> keys.put(k, true));
        List<String> out = new ArrayList<>();
        for (String k : keys.keySet()) {
            if (!String.valueOf(a.get(k)).equals(String.valueOf(b.get(k)))) {
                out.add(k);
            }
        }
        return out;
    }

    private static Map<String, String> parse(String text) {
        Map<String, String> out = new TreeMap<>();
        for (String line : text.split("\n")) {
            int tab = line.indexOf('\t');
            if (tab > 0) {
                out.put(line.substring(0, tab), line.substring(tab + 1));
            }
        }
        return out;
    }

    private static String hash(String value) {
        try {
            byte[] h = MessageDigest.getInstance("SHA-256").digest(value.getBytes(StandardCharsets.UTF_8));
            return HexFormat.of().formatHex(h, 0, 16);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
