package io.dtrain.report;

import java.util.List;
import java.util.Locale;

/**
 * Inline SVG charts for the self-contained HTML report: no script, no external resources. Every plotted series is
 * one {@code <polyline data-series=... data-points=N>} (or N {@code <rect>}s for stacked bars), so tests can count
 * what was drawn. Non-finite values are left out of a line.
 */
final class SvgChart {
    static final String[] COLORS = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf"};
    private static final int WIDTH = 880;
    private static final int HEIGHT = 220;
    private static final int LEFT = 64;
    private static final int RIGHT = 150;
    private static final int TOP = 24;
    private static final int BOTTOM = 30;

    /** Series with at most this many points get a dot on each. */
    private static final int MARKED_POINTS = 50;

    /** One line: y over x. */
    record Series(String name, double[] x, double[] y) {
    }

    private SvgChart() {
    }

    static String line(String title, String xLabel, String yUnit, List<Series> series) {
        double xMin = Double.POSITIVE_INFINITY;
        double xMax = Double.NEGATIVE_INFINITY;
        double yMax = 0;
        double yMin = 0;
        for (Series s : series) {
            for (int i = 0; i < s.x().length; i++) {
                if (Double.isFinite(s.y()[i]) && Double.isFinite(s.x()[i])) {
                    xMin = Math.min(xMin, s.x()[i]);
                    xMax = Math.max(xMax, s.x()[i]);
                    yMin = Math.min(yMin, s.y()[i]);
                    yMax = Math.max(yMax, s.y()[i]);
                }
            }
        }
        if (xMin > xMax) {
            xMin = 0;
            xMax = 1;
        }
        if (xMax == xMin) {
            xMax = xMin + 1;
        }
        if (yMax == yMin) {
            yMax = yMin + 1;
        }
        StringBuilder sb = open(title, yUnit);
        axes(sb, xMin, xMax, yMin, yMax, xLabel, yUnit);
        for (int k = 0; k < series.size(); k++) {
            Series s = series.get(k);
            StringBuilder pts = new StringBuilder();
            int n = 0;
            for (int i = 0; i < s.x().length; i++) {
                if (Double.isFinite(s.y()[i]) && Double.isFinite(s.x()[i])) {
                    pts.append(n == 0 ? "" : " ").append(fmt(px(s.x()[i], xMin, xMax))).append(',')
                            .append(fmt(py(s.y()[i], yMin, yMax)));
                    n++;
                }
            }
            String color = COLORS[k % COLORS.length];
            sb.append("<polyline class=\"series\" data-series=\"").append(esc(s.name())).append("\" data-points=\"")
                    .append(n).append("\" fill=\"none\" stroke=\"").append(color).append("\" stroke-width=\"1.5\" points=\"")
                    .append(pts).append("\"><title>").append(esc(s.name())).append("</title></polyline>\n");
            if (n <= MARKED_POINTS) {
                // sparse series (evaluations every N steps, a single one at the end) also get a dot per point
                for (String p : pts.toString().split(" ")) {
                    if (!p.isEmpty()) {
                        String[] xy = p.split(",");
                        sb.append("<circle cx=\"").append(xy[0]).append("\" cy=\"").append(xy[1])
                                .append("\" r=\"2.5\" fill=\"").append(color).append("\"/>\n");
                    }
                }
            }
            legend(sb, k, s.name(), color);
        }
        return sb.append("</svg>\n").toString();
    }

    /**
     * Stacked bars: one bar per x, the layers in order from the bottom ({@code layers[k][i]} is layer k at bar i).
     */
    static String stacked(String title, String xLabel, String yUnit, double[] x, List<String> names, double[][] layers) {
        double yMax = 0;
        for (int i = 0; i < x.length; i++) {
            double sum = 0;
            for (double[] layer : layers) {
                sum += finite(layer[i]);
            }
            yMax = Math.max(yMax, sum);
        }
        if (yMax == 0) {
            yMax = 1;
        }
        double xMin = x.length == 0 ? 0 : x[0];
        double xMax = x.length == 0 ? 1 : x[x.length - 1] + 1;
        StringBuilder sb = open(title, yUnit);
        axes(sb, xMin, xMax, 0, yMax, xLabel, yUnit);
        double barWidth = Math.max(0.5, (WIDTH - LEFT - RIGHT) / (double) Math.max(1, x.length) * 0.9);
        for (int k = 0; k < layers.length; k++) {
            String color = COLORS[k % COLORS.length];
            sb.append("<g class=\"layer\" data-series=\"").append(esc(names.get(k))).append("\" data-points=\"")
                    .append(x.length).append("\" fill=\"").append(color).append("\">\n");
            for (int i = 0; i < x.length; i++) {
                double below = 0;
                for (int j = 0; j < k; j++) {
                    below += finite(layers[j][i]);
                }
                double top = below + finite(layers[k][i]);
                double y0 = py(below, 0, yMax);
                double y1 = py(top, 0, yMax);
                sb.append("<rect x=\"").append(fmt(px(x[i], xMin, xMax))).append("\" y=\"").append(fmt(y1))
                        .append("\" width=\"").append(fmt(barWidth)).append("\" height=\"").append(fmt(y0 - y1))
                        .append("\"><title>").append(esc(names.get(k))).append(' ').append(fmt(layers[k][i]))
                        .append(' ').append(esc(yUnit)).append("</title></rect>\n");
            }
            sb.append("</g>\n");
            legend(sb, k, names.get(k), color);
        }
        return sb.append("</svg>\n").toString();
    }

    private static StringBuilder open(String title, String yUnit) {
        StringBuilder sb = new StringBuilder();
        sb.append("<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" width=\"").append(WIDTH).append("\" height=\"")
                .append(HEIGHT).append("\" viewBox=\"0 0 ").append(WIDTH).append(' ').append(HEIGHT)
                .append("\" role=\"img\" aria-label=\"").append(esc(title)).append("\">\n");
        sb.append("<text x=\"").append(LEFT).append("\" y=\"16\" class=\"title\">").append(esc(title)).append(" [").append(esc(yUnit)).append("]</text>\n");
        return sb;
    }

    private static void axes(StringBuilder sb, double xMin, double xMax, double yMin, double yMax, String xLabel,
                             String yUnit) {
        int plotBottom = HEIGHT - BOTTOM;
        sb.append("<g class=\"axes\" stroke=\"#999\" stroke-width=\"1\">")
                .append("<line x1=\"").append(LEFT).append("\" y1=\"").append(TOP).append("\" x2=\"").append(LEFT)
                .append("\" y2=\"").append(plotBottom).append("\"/>")
                .append("<line x1=\"").append(LEFT).append("\" y1=\"").append(plotBottom).append("\" x2=\"")
                .append(WIDTH - RIGHT).append("\" y2=\"").append(plotBottom).append("\"/></g>\n");
        for (int t = 0; t <= 4; t++) {
            double v = yMin + (yMax - yMin) * t / 4;
            double y = py(v, yMin, yMax);
            sb.append("<text x=\"").append(LEFT - 4).append("\" y=\"").append(fmt(y + 4))
                    .append("\" class=\"tick\" text-anchor=\"end\">").append(esc(tick(v))).append("</text>")
                    .append("<line x1=\"").append(LEFT).append("\" x2=\"").append(WIDTH - RIGHT).append("\" y1=\"")
                    .append(fmt(y)).append("\" y2=\"").append(fmt(y)).append("\" stroke=\"#eee\"/>\n");
            double xv = xMin + (xMax - xMin) * t / 4;
            sb.append("<text x=\"").append(fmt(px(xv, xMin, xMax))).append("\" y=\"").append(plotBottom + 14)
                    .append("\" class=\"tick\" text-anchor=\"middle\">").append(esc(tick(xv))).append("</text>\n");
        }
        sb.append("<text x=\"").append(WIDTH - RIGHT).append("\" y=\"").append(HEIGHT - 2)
                .append("\" class=\"tick\" text-anchor=\"end\">").append(esc(xLabel)).append("</text>\n");
    }

    private static void legend(StringBuilder sb, int k, String name, String color) {
        int y = TOP + 14 * k;
        sb.append("<rect x=\"").append(WIDTH - RIGHT + 10).append("\" y=\"").append(y).append("\" width=\"10\" height=\"10\" fill=\"")
                .append(color).append("\"/><text x=\"").append(WIDTH - RIGHT + 24).append("\" y=\"").append(y + 9)
                .append("\" class=\"legend\">").append(esc(name)).append("</text>\n");
    }

    private static double px(double x, double min, double max) {
        return LEFT + (x - min) / (max - min) * (WIDTH - LEFT - RIGHT);
    }

    private static double py(double y, double min, double max) {
        return HEIGHT - BOTTOM - (y - min) / (max - min) * (HEIGHT - TOP - BOTTOM);
    }

    private static double finite(double v) {
        return Double.isFinite(v) ? v : 0;
    }

    static String fmt(double v) {
        return String.format(Locale.ROOT, "%.1f", v);
    }

    /** 0.5, 12, 1.2k, 3.4M, 5.6G. */
    static String tick(double v) {
        double a = Math.abs(v);
        if (a >= 1e9) {
            return String.format(Locale.ROOT, "%.3gG", v / 1e9);
        }
        if (a >= 1e6) {
            return String.format(Locale.ROOT, "%.3gM", v / 1e6);
        }
        if (a >= 1e4) {
            return String.format(Locale.ROOT, "%.3gk", v / 1e3);
        }
        return String.format(Locale.ROOT, "%.3g", v);
    }

    static String esc(String s) {
        return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\"", "&quot;");
    }
}
