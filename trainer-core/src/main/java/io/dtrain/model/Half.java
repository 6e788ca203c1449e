package io.dtrain.model;

/**
 * IEEE 754 binary16 ("half", fp16) conversions, which Java 17 lacks (Float.floatToFloat16 arrived in Java 20):
 * float to half rounds to nearest, ties to even, as CUDA's {@code __float2half_rn} and the hardware do; values from
 * 65520 up become infinity, values at or below 2^-25 zero (subnormals in between); NaN stays NaN. Used to emulate
 * fp16 training on the CPU ({@code training.precision: fp16}) and to read F16 safetensors.
 */
public final class Half {
    /** The largest finite half, 65504. */
    public static final float MAX = 65504f;

    private Half() {
    }

    /** The half nearest to {@code f} (ties to even), as its 16 bits. */
    public static short fromFloat(float f) {
        int x = Float.floatToRawIntBits(f);
        int sign = (x >>> 16) & 0x8000;
        int abs = x & 0x7fffffff;
        if (abs >= 0x7f800000) {                       // infinity, or NaN kept quiet with its top payload bits
            return (short) (sign | 0x7c00 | (abs > 0x7f800000 ? 0x200 | ((abs >>> 13) & 0x3ff) : 0));
        }
        if (abs >= 0x477ff000) {                       // 65520 and up round to infinity
            return (short) (sign | 0x7c00);
        }
        int exp = abs >>> 23;
        if (exp < 113) {                               // below 2^-14: a half subnormal (units of 2^-24) or zero
            if (exp < 102) {
                return (short) sign;
            }
            int mant = (abs & 0x7fffff) | 0x800000;
            int shift = 126 - exp;
            int q = mant >>> shift;
            int rem = mant & ((1 << shift) - 1);
            int halfway = 1 << (shift - 1);
            if (rem > halfway || (rem == halfway && (q & 1) == 1)) {
                q++;                                   // may carry into the smallest normal: still the right bits
            }
            return (short) (sign | q);
        }
        int h = ((exp - 112) << 10) | ((abs >>> 13) & 0x3ff);
        int rem = abs & 0x1fff;
        if (rem > 0x1000 || (rem == 0x1000 && (h & 1) == 1)) {
            h++;                                       // a carry into the exponent is the next binade, as it should be
        }
        return (short) (sign | h);
    }

    /** The value of a half's 16 bits (exact). */
    public static float toFloat(short bits) {
        int h = bits & 0xffff;
        int sign = (h >>> 15) << 31;
        int exp = (h >>> 10) & 0x1f;
        int mant = h & 0x3ff;
        if (exp == 0) {
            float magnitude = mant * 0x1p-24f;         // zero or subnormal
            return sign == 0 ? magnitude : -magnitude;
        }
        if (exp == 31) {
            return Float.intBitsToFloat(sign | 0x7f800000 | (mant << 13));   // infinity or NaN
        }
        return Float.intBitsToFloat(sign | ((exp - 15 + 127) << 23) | (mant << 13));
    }

    /** {@code f} rounded to half precision, as a float: what storing it in fp16 and reading it back gives. */
    public static float round(float f) {
        return toFloat(fromFloat(f));
    }
}
