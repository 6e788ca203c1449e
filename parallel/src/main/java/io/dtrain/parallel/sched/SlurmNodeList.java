package io.dtrain.parallel.sched;

import io.dtrain.common.UserFacingException;
import java.util.ArrayList;
import java.util.List;

/**
 * Expands Slurm's compressed host lists as {@code scontrol show hostnames} does: {@code node[01-04,07]} is node01,
 * node02, node03, node04, node07; {@code a1,b[2-3]} is a1, b2, b3. Zero padding of a range's first number is kept.
 * Several bracket groups in one name ({@code rack[1-2]-node[1-2]}) expand as their cartesian product.
 */
public final class SlurmNodeList {
    private SlurmNodeList() {
    }

    public static List<String> expand(String list) {
        List<String> hosts = new ArrayList<>();
        for (String item : splitTopLevel(list)) {
            if (!item.isBlank()) {
                expandItem(item.strip(), list, hosts);
            }
        }
        if (hosts.isEmpty()) {
            throw new UserFacingException("SLURM_JOB_NODELIST='" + list + "' names no host");
        }
        return hosts;
    }

    /** Splits at commas outside brackets. */
    private static List<String> splitTopLevel(String list) {
        List<String> items = new ArrayList<>();
        int depth = 0;
        int start = 0;
        for (int i = 0; i < list.length(); i++) {
            char c = list.charAt(i);
            if (c == '[') {
                depth++;
            } else if (c == ']') {
                depth--;
            } else if (c == ',' && depth == 0) {
                items.add(list.substring(start, i));
                start = i + 1;
            }
        }
        items.add(list.substring(start));
        return items;
    }

    private static void expandItem(String item, String list, List<String> out) {
        int open = item.indexOf('[');
        if (open < 0) {
            out.add(item);
            return;
        }
        int close = item.indexOf(']', open);
        if (close < 0) {
            throw new UserFacingException("SLURM_JOB_NODELIST='" + list + "': '" + item + "' has no closing ']'");
        }
        String prefix = item.substring(0, open);
        String rest = item.substring(close + 1);
        List<String> tails = new ArrayList<>();
        if (rest.isEmpty()) {
            tails.add("");
        } else {
            expandItem(rest, list, tails);
        }
        for (String range : item.substring(open + 1, close).split(",")) {
            for (String number : numbers(range.strip(), list)) {
                for (String tail : tails) {
                    out.add(prefix + number + tail);
                }
            }
        }
    }

    private static List<String> numbers(String range, String list) {
        int dash = range.indexOf('-');
        String from = dash < 0 ? range : range.substring(0, dash);
        String to = dash < 0 ? range : range.substring(dash + 1);
        if (!from.matches("\\d+") || !to.matches("\\d+")) {
            throw new UserFacingException("SLURM_JOB_NODELIST='" + list + "': '" + range + "' is not a number or a range a-b");
        }
        long first = Long.parseLong(from);
        long last = Long.parseLong(to);
        if (last < first || last - first > 100_000) {
            throw new UserFacingException("SLURM_JOB_NODELIST='" + list + "': range '" + range + "' is empty or too long");
        }
        int width = from.length();
        List<String> out = new ArrayList<>();
        for (long n = first; n <= last; n++) {
            String digits = Long.toString(n);
            out.add(digits.length() < width ? "0".repeat(width - digits.length()) + digits : digits);
        }
        return out;
    }
}
