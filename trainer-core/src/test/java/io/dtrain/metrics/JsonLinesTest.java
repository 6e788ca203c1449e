package io.dtrain.metrics;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.dtrain.train.StepStats;
import org.junit.jupiter.api.Test;

import java.math.BigDecimal;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The one rule for non-finite numbers in JSONL: null, so a column stays numeric (NaN) for pandas and jq alike. */
class JsonLinesTest {
    @Test
    void nonFiniteNumbersAreNullEverywhere() throws Exception {
        Map<String, Object> r = JsonLines.record();
        r.put("nan", Double.NaN);
        r.put("inf", Double.POSITIVE_INFINITY);
        r.put("float", Float.NEGATIVE_INFINITY);
        r.put("finite", 0.1);
        r.put("nested", Map.of("x", Double.NaN));
        assertEquals("{\"nan\":null,\"inf\":null,\"float\":null,\"finite\":0.1,\"nested\":{\"x\":null}}", JsonLines.line(r));

        String step = new StepStats(4, Double.NaN, 1e-3, Double.POSITIVE_INFINITY, 64, 10, 1, 8, 1, true).toJson(0, 0);
        JsonNode n = new ObjectMapper().readTree(step);
        assertTrue(n.get("loss").isNull() && n.get("grad_norm").isNull() && n.get("forward_ms").isNull(), step);
        assertTrue(n.get("skipped").asBoolean());
        assertTrue(!step.contains("NaN") && !step.contains("Infinity"), step);
    }

    @Test
    void measurementsKeepSixSignificantDigitsAndLossesAllOfThem() {
        assertEquals(123.457, JsonLines.measured(123.456789));
        assertEquals(1.23457e-7, JsonLines.measured(1.234567e-7));
        assertEquals(Double.NaN, JsonLines.measured(Double.NaN));
        assertEquals(new BigDecimal("1700000000123.457"), JsonLines.fixed(1700000000123.4567, 3));
        double loss = 2.0 / 3;
        String line = new StepStats(0, loss, 1e-3, 1, 64, 10, 1, 8, 1, false).toJson(0, 0);
        assertTrue(line.contains("\"loss\":" + loss + ","), "every digit of the loss: " + line);
    }
}
