package io.dtrain.data.shards;

import java.io.PrintWriter;
import java.util.Locale;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Preprocessing progress on stderr: a one-line bar redrawn in place on a terminal, a plain line every few seconds
 * otherwise (logs, CI), or nothing. Counts are updated from any thread; a daemon thread prints.
 */
public final class Progress implements AutoCloseable {
    /** How progress is shown. */
    public enum Mode { BAR, LINES, OFF }

    final AtomicLong documents = new AtomicLong();
    final AtomicLong textBytes = new AtomicLong();
    final AtomicLong inputBytes = new AtomicLong();

    private final Mode mode;
    private final PrintWriter out;
    private final long intervalMillis;
    private volatile long totalInputBytes;
    private volatile long startNanos;
    private Thread printer;

    /** {@code intervalMillis}: how often a line is printed in mode LINES (the bar redraws twice a second). */
    public Progress(Mode mode, PrintWriter out, long intervalMillis) {
        this.mode = mode;
        this.out = out;
        this.intervalMillis = mode == Mode.BAR ? 500 : intervalMillis;
    }

    /** BAR when a console is attached, else LINES every 30 s. */
    public static Progress auto(PrintWriter out) {
        return new Progress(System.console() != null ? Mode.BAR : Mode.LINES, out, 30_000);
    }

    public static Progress off() {
        return new Progress(Mode.OFF, new PrintWriter(PrintWriter.nullWriter()), 1000);
    }

    synchronized void start(long totalInputBytes) {
        this.totalInputBytes = totalInputBytes;
        this.startNanos = System.nanoTime();
        if (mode == Mode.OFF || printer != null) {
            return;
        }
        printer = new Thread(() -> {
            try {
                while (!Thread.currentThread().isInterrupted()) {
                    Thread.sleep(intervalMillis);
                    print(false);
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }, "dtrain-preprocess-progress");
        printer.setDaemon(true);
        printer.start();
    }

    /** The current state as one line: percent of input read, documents, text MB/s, ETA. */
    public String line() {
        double seconds = Math.max(1e-9, (System.nanoTime() - startNanos) / 1e9);
        long in = inputBytes.get();
        long total = Math.max(1, totalInputBytes);
        double fraction = totalInputBytes == 0 ? 1.0 : Math.min(1.0, (double) in / total);
        double mbPerSecond = textBytes.get() / 1e6 / seconds;
        String eta = in == 0 ? "?" : duration(seconds * (total - Math.min(in, total)) / in);
        int width = 24;
        int filled = (int) Math.round(fraction * width);
        return String.format(Locale.ROOT, "[%s%s] %3.0f%%  %,d docs  %.1f MB/s of text  ETA %s",
                "#".repeat(filled), ".".repeat(width - filled), fraction * 100, documents.get(), mbPerSecond, eta);
    }

    private synchronized void print(boolean last) {
        if (mode == Mode.BAR) {
            out.print("\r" + line() + (last ? System.lineSeparator() : ""));
        } else if (mode == Mode.LINES) {
            out.println("preprocess: " + line());
        }
        out.flush();
    }

    static String duration(double seconds) {
        long s = Math.round(seconds);
        return s >= 3600 ? String.format("%dh%02dm", s / 3600, s % 3600 / 60)
                : s >= 60 ? String.format("%dm%02ds", s / 60, s % 60) : s + "s";
    }

    @Override
    public synchronized void close() {
        if (printer != null) {
            printer.interrupt();
            printer = null;
            print(true);
        }
    }
}
