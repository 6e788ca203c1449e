package io.dtrain.metrics;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;

import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Executors;
import java.util.function.Supplier;

/**
 * Serves {@code GET /metrics} in Prometheus's text exposition format (version 0.0.4) from the JDK's HTTP server
 * on one daemon thread. The gauges are computed on each scrape from a supplier, so the trainer never blocks on it.
 */
public final class PrometheusEndpoint implements AutoCloseable {
    public static final String CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

    /** One sample: {@code name{labels} value}. Samples sharing a name share its HELP and TYPE lines. */
    public record Gauge(String name, String help, Map<String, String> labels, double value) {
    }

    private final HttpServer server;
    private final java.util.concurrent.ExecutorService executor;

    private PrometheusEndpoint(HttpServer server, java.util.concurrent.ExecutorService executor) {
        this.server = server;
        this.executor = executor;
    }

    /** Listens on {@code port} (0 = any free port) on all interfaces. */
    public static PrometheusEndpoint start(int port, Supplier<List<Gauge>> gauges) throws IOException {
        HttpServer server;
        try {
            server = HttpServer.create(new InetSocketAddress(port), 0);
        } catch (java.net.BindException e) {
            throw new IOException("metrics.prometheus_port: cannot listen on port " + port + " (" + e.getMessage()
                    + "); choose a free port (rank r uses prometheus_port + r) or set it to 0", e);
        }
        server.createContext("/metrics", exchange -> respond(exchange, gauges));
        java.util.concurrent.ExecutorService executor = Executors.newSingleThreadExecutor(r -> {
            Thread t = new Thread(r, "prometheus-endpoint");
            t.setDaemon(true);
            return t;
        });
        server.setExecutor(executor);
        server.start();
        return new PrometheusEndpoint(server, executor);
    }

    public int port() {
        return server.getAddress().getPort();
    }

    private static void respond(HttpExchange exchange, Supplier<List<Gauge>> gauges) throws IOException {
        try (exchange) {
            if (!exchange.getRequestMethod().equals("GET") && !exchange.getRequestMethod().equals("HEAD")) {
                exchange.sendResponseHeaders(405, -1);
                return;
            }
            byte[] body = exposition(gauges.get()).getBytes(StandardCharsets.UTF_8);
            exchange.getResponseHeaders().set("Content-Type", CONTENT_TYPE);
            exchange.sendResponseHeaders(200, body.length);
            try (OutputStream out = exchange.getResponseBody()) {
                out.write(body);
            }
        }
    }

    /** The text format: per metric name one HELP and one TYPE line, then its samples; NaN is written "NaN". */
    public static String exposition(List<Gauge> gauges) {
        Map<String, List<Gauge>> byName = new LinkedHashMap<>();
        for (Gauge g : gauges) {
            byName.computeIfAbsent(g.name(), k -> new ArrayList<>()).add(g);
        }
        StringBuilder sb = new StringBuilder();
        for (Map.Entry<String, List<Gauge>> e : byName.entrySet()) {
            sb.append("# HELP ").append(e.getKey()).append(' ')
                    .append(e.getValue().get(0).help().replace("\\", "\\\\").replace("\n", "\\n")).append('\n');
            sb.append("# TYPE ").append(e.getKey()).append(" gauge\n");
            for (Gauge g : e.getValue()) {
                sb.append(g.name());
                if (!g.labels().isEmpty()) {
                    sb.append('{');
                    boolean first = true;
                    for (Map.Entry<String, String> l : g.labels().entrySet()) {
                        if (!first) {
                            sb.append(',');
                        }
                        first = false;
                        sb.append(l.getKey()).append("=\"").append(l.getValue().replace("\\", "\\\\")
                                .replace("\"", "\\\"").replace("\n", "\\n")).append('"');
                    }
                    sb.append('}');
                }
                sb.append(' ').append(number(g.value())).append('\n');
            }
        }
        return sb.toString();
    }

    private static String number(double v) {
        if (Double.isNaN(v)) {
            return "NaN";
        }
        if (Double.isInfinite(v)) {
            return v > 0 ? "+Inf" : "-Inf";
        }
        return v == Math.rint(v) && Math.abs(v) < 9e15 ? Long.toString((long) v) : String.format(Locale.ROOT, "%s", v);
    }

    @Override
    public void close() {
        server.stop(0);
        executor.shutdownNow();
    }
}
