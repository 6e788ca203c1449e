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
 * a mismatch names the keys that differ and the ranks that differ from rank 0, on every rank alike. Settings (the
 * environment variables that must be equal on every rank) are compared by value, so a mismatch names the values too.
 */
final class Agreement {
    private static final String PREFIX = "same/";
    private static final String SETTINGS_PREFIX = "settings/";

    private Agreement() {
    }

    static void requireSame(Communicator comm, String what, Map<String, String> entries) {
        if (comm.store() == null) {
            return; // a single-process world
        }
        Map<String, String> hashed = new TreeMap<>();
        entries.forEach((k, v) -> hashed.put(k, hash(v)));
        List<Map<String, String>> all = exchange(comm, PREFIX + what, hashed);
        int size = all.size();
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

    /**
     * Every rank checks that all ranks hold the same {@code settings} (name -> resolved value, e.g. environment
     * variables that must be equal on every rank). Unlike {@link #requireSame} the values themselves are published
     * (settings, not a configuration that may hold paths or names), so a mismatch names each setting with every
     * value and the ranks holding it, on every rank alike.
     */
    static void requireSameSettings(Communicator comm, String what, Map<String, String> settings) {
        if (comm.store() == null) {
            return; // a single-process world
        }
        Map<String, String> mine = new TreeMap<>();
        settings.forEach((k, v) -> mine.put(k, oneLine(v)));
        List<String> differences = describeDifferences(exchange(comm, SETTINGS_PREFIX + what, mine));
        if (!differences.isEmpty()) {
            throw new UserFacingException(String.join("; ", differences) + ": "
                    + (differences.size() > 1 ? "these settings" : "it") + " must be the same on every rank; set the"
                    + " same environment for every worker (dtrain launch: --env NAME=VALUE with the same value on every"
                    + " node)");
        }
    }

    /** "NAME differs between ranks (V1 on ranks 0, 2; V2 on rank 1)" for each setting that differs, by name. */
    static List<String> describeDifferences(List<Map<String, String>> byRank) {
        TreeMap<String, Boolean> names = new TreeMap<>();
        byRank.forEach(m -> m.keySet().forEach(k -> names.put(k, true)));
        List<String> out = new ArrayList<>();
        for (String name : names.keySet()) {
            Map<String, List<Integer>> ranksByValue = new java.util.LinkedHashMap<>();
            for (int r = 0; r < byRank.size(); r++) {
                String value = byRank.get(r).getOrDefault(name, "(not checked)");
                ranksByValue.computeIfAbsent(value, v -> new ArrayList<>()).add(r);
            }
            if (ranksByValue.size() > 1) {
                List<String> parts = new ArrayList<>();
                ranksByValue.forEach((value, ranks) -> parts.add(value + " on rank" + (ranks.size() > 1 ? "s " : " ")
                        + String.join(", ", ranks.stream().map(String::valueOf).toList())));
                out.add(name + " differs between ranks (" + String.join("; ", parts) + ")");
            }
        }
        return out;
    }

    /** Publishes this rank's {@code entries} under {@code key} and returns every rank's, in rank order. */
    private static List<Map<String, String>> exchange(Communicator comm, String key, Map<String, String> entries) {
        RendezvousClient store = comm.store();
        StringBuilder mine = new StringBuilder();
        new TreeMap<>(entries).forEach((k, v) -> mine.append(k).append('\t').append(v).append('\n'));
        store.set(key + "/" + comm.rank(), mine.toString());
        List<Map<String, String>> all = new ArrayList<>();
        for (int r = 0; r < comm.config().worldSize(); r++) {
            all.add(parse(store.getString(key + "/" + r, comm.config().rendezvousTimeout())));
        }
        return all;
    }

    private static String oneLine(String value) {
        return value.replace('\t', ' ').replace('\n', ' ');
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
