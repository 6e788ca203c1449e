package io.dtrain.metrics;

import com.fasterxml.jackson.core.JsonGenerator;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.StreamWriteFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializerProvider;
import com.fasterxml.jackson.databind.json.JsonMapper;
import com.fasterxml.jackson.databind.module.SimpleModule;
import com.fasterxml.jackson.databind.ser.std.StdSerializer;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.math.BigDecimal;
import java.math.MathContext;
import java.math.RoundingMode;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The one JSON writer of every JSON Lines file dtrain writes (step and evaluation records, system samples, trace
 * events, {@code dtrain tokenize} output): Jackson, one object per line, fields in the order given.
 *
 * <p><b>Non-finite numbers are written as {@code null}</b>, everywhere: JSON has no NaN or Infinity, and a string
 * such as {@code "NaN"} would turn a numeric column into text, whereas {@code null} reads as NaN in a numeric
 * column ({@code pandas.read_json(path, lines=True)}, {@code json.loads}, jq). Whether a step's loss was NaN or
 * infinite is not kept (the step record's {@code skipped} says the update was skipped).
 */
public final class JsonLines {
    /** The mapper: non-finite float and double values become null; BigDecimal is written plain (no exponent). */
    public static final ObjectMapper MAPPER = JsonMapper.builder()
            .enable(StreamWriteFeature.WRITE_BIGDECIMAL_AS_PLAIN)
            .addModule(new SimpleModule("non-finite-as-null")
                    .addSerializer(Double.class, new FiniteOrNull<>(Double.class))
                    .addSerializer(double.class, new FiniteOrNull<>(double.class))
                    .addSerializer(Float.class, new FiniteOrNull<>(Float.class))
                    .addSerializer(float.class, new FiniteOrNull<>(float.class)))
            .build();

    private JsonLines() {
    }

    /** One record, fields in insertion order. */
    public static Map<String, Object> record() {
        return new LinkedHashMap<>();
    }

    /** {@code value} as one line of JSON, without the newline. */
    public static String line(Object value) {
        try {
            return MAPPER.writeValueAsString(value);
        } catch (JsonProcessingException e) {
            throw new UncheckedIOException("cannot write " + value.getClass().getSimpleName() + " as JSON", e);
        }
    }

    /**
     * A measurement rounded to six significant digits (timers and rates are not more precise than that), so lines
     * stay short; NaN and infinities pass through (written as null).
     */
    public static double measured(double v) {
        if (!Double.isFinite(v) || v == 0) {
            return v;
        }
        return new BigDecimal(v).round(new MathContext(6, RoundingMode.HALF_EVEN)).doubleValue();
    }

    /** A number with exactly {@code decimals} digits after the point, written without exponent (trace timestamps). */
    public static BigDecimal fixed(double v, int decimals) {
        return Double.isFinite(v) ? BigDecimal.valueOf(v).setScale(decimals, RoundingMode.HALF_EVEN) : null;
    }

    private static final class FiniteOrNull<T extends Number> extends StdSerializer<T> {
        FiniteOrNull(Class<T> type) {
            super(type);
        }

        @Override
        public void serialize(T value, JsonGenerator gen, SerializerProvider provider) throws IOException {
            double d = value.doubleValue();
            if (!Double.isFinite(d)) {
                gen.writeNull();
            } else if (value instanceof Float f) {
                gen.writeNumber(f);
            } else {
                gen.writeNumber(d);
            }
        }
    }
}
