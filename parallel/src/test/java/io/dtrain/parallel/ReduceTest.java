package io.dtrain.parallel;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Random;
import org.agrona.concurrent.UnsafeBuffer;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The raw-address add loops give bit for bit what a plain scalar {@code (a + b)} / {@code (a + b) / n} gives (the
 * ring's determinism rests on it), at every length including the vector loop's tails, on unaligned addresses (Aeron
 * payloads start 48 bytes after a 32-byte frame header), and never touch memory past {@code count}.
 */
class ReduceTest {
    private static final int[] COUNTS = {0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 1000, 16_371, 16_384 + 5};

    /** Runs the loops enough that C2 compiles (and vectorises) them, so the checks below test the compiled code. */
    @BeforeAll
    static void warmUp() {
        UnsafeBuffer a = direct(1 << 16, 0);
        UnsafeBuffer b = direct(1 << 16, 4);
        for (int i = 0; i < 2000; i++) {
            Reduce.addFloats(a.addressOffset(), b.addressOffset(), 1 << 14);
            Reduce.addFloatsDivide(a.addressOffset(), b.addressOffset(), 1 << 14, 2);
            Reduce.addDoubles(a.addressOffset(), b.addressOffset(), 1 << 13);
            Reduce.addDoublesDivide(a.addressOffset(), b.addressOffset(), 1 << 13, 2);
            Reduce.addFloatsTo(a.addressOffset(), a.addressOffset(), b.addressOffset(), 1 << 14);
            Reduce.addDoublesTo(a.addressOffset(), a.addressOffset(), b.addressOffset(), 1 << 13);
        }
    }

    @Test
    void floatSumAndAverageMatchScalarArithmeticBitForBit() {
        Random random = new Random(42);
        for (int count : COUNTS) {
            for (int divisor : new int[] {0, 3, 7}) {
                // src at an address that is 4 mod 16: not vector-aligned, like a payload in a term buffer
                UnsafeBuffer dst = direct(count * 4 + 64, 0);
                UnsafeBuffer src = direct(count * 4 + 64, 4);
                float[] expected = new float[count + 4];
                for (int i = 0; i < count + 4; i++) {
                    float a = (float) (random.nextGaussian() * Math.pow(10, random.nextInt(9) - 4));
                    float b = (float) (random.nextGaussian() * Math.pow(10, random.nextInt(9) - 4));
                    dst.putFloat(i * 4, a);
                    src.putFloat(i * 4, b);
                    expected[i] = i >= count ? a : divisor == 0 ? a + b : (a + b) / (float) divisor;
                }
                if (divisor == 0) {
                    Reduce.addFloats(dst.addressOffset(), src.addressOffset(), count);
                } else {
                    Reduce.addFloatsDivide(dst.addressOffset(), src.addressOffset(), count, divisor);
                }
                for (int i = 0; i < count + 4; i++) {
                    assertEquals(Float.floatToRawIntBits(expected[i]), Float.floatToRawIntBits(dst.getFloat(i * 4)),
                            "count " + count + " divisor " + divisor + " element " + i);
                }
            }
        }
    }

    @Test
    void doubleSumAndAverageMatchScalarArithmeticBitForBit() {
        Random random = new Random(7);
        for (int count : COUNTS) {
            for (int divisor : new int[] {0, 3, 5}) {
                UnsafeBuffer dst = direct(count * 8 + 64, 8);
                UnsafeBuffer src = direct(count * 8 + 64, 0);
                double[] expected = new double[count + 2];
                for (int i = 0; i < count + 2; i++) {
                    double a = random.nextGaussian() * Math.pow(10, random.nextInt(17) - 8);
                    double b = random.nextGaussian() * Math.pow(10, random.nextInt(17) - 8);
                    dst.putDouble(i * 8, a);
                    src.putDouble(i * 8, b);
                    expected[i] = i >= count ? a : divisor == 0 ? a + b : (a + b) / divisor;
                }
                if (divisor == 0) {
                    Reduce.addDoubles(dst.addressOffset(), src.addressOffset(), count);
                } else {
                    Reduce.addDoublesDivide(dst.addressOffset(), src.addressOffset(), count, divisor);
                }
                for (int i = 0; i < count + 2; i++) {
                    assertEquals(Double.doubleToRawLongBits(expected[i]), Double.doubleToRawLongBits(dst.getDouble(i * 8)),
                            "count " + count + " divisor " + divisor + " element " + i);
                }
            }
        }
    }

    /** The fused ring reduces a received frame into the claim of the next one: {@code out = own + received}. */
    @Test
    void sumsIntoAThirdRegionMatchScalarArithmeticBitForBit() {
        Random random = new Random(3);
        for (int count : COUNTS) {
            UnsafeBuffer a = direct(count * 8 + 64, 0);
            UnsafeBuffer b = direct(count * 8 + 64, 4);
            UnsafeBuffer out = direct(count * 8 + 64, 12);
            float[] fa = new float[count + 4];
            float[] fb = new float[count + 4];
            for (int i = 0; i < count + 4; i++) {
                fa[i] = (float) (random.nextGaussian() * Math.pow(10, random.nextInt(9) - 4));
                fb[i] = (float) (random.nextGaussian() * Math.pow(10, random.nextInt(9) - 4));
                a.putFloat(i * 4, fa[i]);
                b.putFloat(i * 4, fb[i]);
                out.putFloat(i * 4, -1f);
            }
            Reduce.addFloatsTo(out.addressOffset(), a.addressOffset(), b.addressOffset(), count);
            for (int i = 0; i < count + 4; i++) {
                float expected = i >= count ? -1f : fa[i] + fb[i];
                assertEquals(Float.floatToRawIntBits(expected), Float.floatToRawIntBits(out.getFloat(i * 4)),
                        "float count " + count + " element " + i);
            }
            double[] da = new double[count + 2];
            double[] db = new double[count + 2];
            for (int i = 0; i < count + 2; i++) {
                da[i] = random.nextGaussian() * Math.pow(10, random.nextInt(17) - 8);
                db[i] = random.nextGaussian() * Math.pow(10, random.nextInt(17) - 8);
                a.putDouble(i * 8, da[i]);
                b.putDouble(i * 8, db[i]);
                out.putDouble(i * 8, -1d);
            }
            Reduce.addDoublesTo(out.addressOffset(), a.addressOffset(), b.addressOffset(), count);
            for (int i = 0; i < count + 2; i++) {
                double expected = i >= count ? -1d : da[i] + db[i];
                assertEquals(Double.doubleToRawLongBits(expected), Double.doubleToRawLongBits(out.getDouble(i * 8)),
                        "double count " + count + " element " + i);
            }
        }
    }

    @Test
    void specialValuesFollowIeeeRules() {
        UnsafeBuffer dst = direct(64, 0);
        UnsafeBuffer src = direct(64, 0);
        float[] a = {Float.NaN, Float.POSITIVE_INFINITY, Float.POSITIVE_INFINITY, -0f, Float.MAX_VALUE, 1e-45f};
        float[] b = {1f, 1f, Float.NEGATIVE_INFINITY, -0f, Float.MAX_VALUE, 1e-45f};
        for (int i = 0; i < a.length; i++) {
            dst.putFloat(i * 4, a[i]);
            src.putFloat(i * 4, b[i]);
        }
        Reduce.addFloats(dst.addressOffset(), src.addressOffset(), a.length);
        for (int i = 0; i < a.length; i++) {
            assertEquals(Float.floatToRawIntBits(a[i] + b[i]), Float.floatToRawIntBits(dst.getFloat(i * 4)), "element " + i);
        }
    }

    /** A direct buffer viewed from {@code skew} bytes after a 16-byte aligned address. */
    private static UnsafeBuffer direct(int bytes, int skew) {
        ByteBuffer buffer = ByteBuffer.allocateDirect(bytes + 32).order(ByteOrder.nativeOrder());
        UnsafeBuffer whole = new UnsafeBuffer(buffer);
        int aligned = (int) ((16 - (whole.addressOffset() & 15)) & 15);
        return new UnsafeBuffer(buffer, aligned + skew, bytes);
    }
}
