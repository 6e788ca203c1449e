package io.dtrain.config;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * What an error about an unknown key suggests: a sibling a typo away ("did you mean model.n_head?"), the same name
 * in another section ("did you mean optimizer.lr?"), or else the keys that exist. Suggestions are always full
 * dotted keys, the form that works in a file, in {@code --set} and in a search of the reference alike.
 */
final class KeySuggestions {

    private KeySuggestions() {
    }

    /** "unknown key; did you mean model.n_head?" (a sibling), "... optimizer.lr?" (same name elsewhere) or the valid keys. */
    static String unknownKeyMessage(String path) {
        int dot = path.lastIndexOf('.');
        String parent = dot < 0 ? "" : path.substring(0, dot);
        String name = path.substring(dot + 1);
        List<String> siblings = new ArrayList<>();
        if (parent.isEmpty()) {
            ConfigSchema.sections().forEach(s -> siblings.add(s.name()));
        } else if (ConfigSchema.holdsKeys(parent)) {
            ConfigSchema.entries(parent).forEach(e -> siblings.add(e.name()));
        }
        String what = parent.isEmpty() ? "unknown section" : ConfigSchema.holdsKeys(parent) ? "unknown key" : "unknown section " + parent;
        String best = closest(name, siblings);
        if (best != null) {
            String prefix = parent.isEmpty() ? "" : parent + ".";
            return what + "; did you mean " + prefix + best.replace(" or ", " or " + prefix) + "?";
        }
        List<String> elsewhere = new ArrayList<>();
        for (ConfigSchema.Entry e : ConfigSchema.entries()) {
            if (e.name().equals(name) || (name.length() >= 4 && editDistance(name, e.name()) <= 1)) {
                elsewhere.add(e.key());
            }
        }
        if (!elsewhere.isEmpty()) {
            return what + "; did you mean " + String.join(" or ", elsewhere) + "?";
        }
        if (parent.isEmpty() || !ConfigSchema.holdsKeys(parent)) {
            return what + "; sections are " + sectionNames();
        }
        return what + "; keys under " + parent + " are " + String.join(", ", siblings);
    }

    static String sectionNames() {
        return String.join(", ", ConfigSchema.sections().stream().map(ConfigSchema.Section::name).toList());
    }

    /** The nearest candidates by edit distance ("beta1 or beta2" on a tie), one containing the name, or null. */
    private static String closest(String name, List<String> candidates) {
        String lower = name.toLowerCase(Locale.ROOT).replace('-', '_');
        int bestDistance = Integer.MAX_VALUE;
        List<String> best = new ArrayList<>();
        for (String c : candidates) {
            int d = editDistance(lower, c);
            if (d < bestDistance) {
                best.clear();
                bestDistance = d;
            }
            if (d == bestDistance) {
                best.add(c);
            }
        }
        if (!best.isEmpty() && bestDistance <= (lower.length() <= 4 ? 1 : 2)) {
            return String.join(" or ", best);
        }
        for (String c : candidates) {
            if (lower.length() >= 3 && (c.contains(lower) || lower.contains(c))) {
                return c;
            }
        }
        return null;
    }

    static int editDistance(String a, String b) {
        int[] previous = new int[b.length() + 1];
        int[] current = new int[b.length() + 1];
        for (int j = 0; j <= b.length(); j++) {
            previous[j] = j;
        }
        for (int i = 1; i <= a.length(); i++) {
            current[0] = i;
            for (int j = 1; j <= b.length(); j++) {
                int substitute = previous[j - 1] + (a.charAt(i - 1) == b.charAt(j - 1) ? 0 : 1);
                current[j] = Math.min(substitute, Math.min(previous[j] + 1, current[j - 1] + 1));
            }
            int[] t = previous;
            previous = current;
            current = t;
        }
        return previous[b.length()];
    }
}
