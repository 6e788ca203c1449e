package io.dtrain.parallel;

/**
 * The wire format of one collective frame: a 48-byte header, then the payload (elements in native order). Each
 * frame is one unfragmented Aeron message (written in place with {@code tryClaim}), so the receiver reduces
 * straight out of Aeron's term buffer without copying. Every header names the collective, its sequence number and
 * the frame's position, so a peer in a different collective (or one of a different size) is detected at once.
 *
 * <pre>
 *  0 int  frame type      (DATA)
 *  4 int  collective kind (see {@link #kindName})
 *  8 long sequence number of the collective in its group (issue order, from 0)
 * 16 int  hash of the collective's name
 * 20 int  ring step
 * 24 long element offset of the payload in the buffer
 * 32 long total elements of the buffer
 * 40 int  element count of the payload
 * 44 int  element type ordinal << 8 | reduce op ordinal
 * 48      payload
 * </pre>
 */
final class Frame {
    static final int TYPE_OFFSET = 0;
    static final int KIND_OFFSET = 4;
    static final int SEQ_OFFSET = 8;
    static final int NAME_HASH_OFFSET = 16;
    static final int STEP_OFFSET = 20;
    static final int ELEMENT_OFFSET_OFFSET = 24;
    static final int TOTAL_OFFSET = 32;
    static final int COUNT_OFFSET = 40;
    static final int MISC_OFFSET = 44;
    static final int HEADER_LENGTH = 48;

    static final int TYPE_DATA = 0x44415441; // "DATA"

    static final int ALL_REDUCE = 1;
    static final int BROADCAST = 2;
    static final int ALL_GATHER = 3;
    static final int REDUCE_SCATTER = 4;
    static final int BARRIER = 5;

    private Frame() {
    }

    static String kindName(int kind) {
        return switch (kind) {
            case ALL_REDUCE -> "allReduce";
            case BROADCAST -> "broadcast";
            case ALL_GATHER -> "allGather";
            case REDUCE_SCATTER -> "reduceScatter";
            case BARRIER -> "barrier";
            default -> "unknown collective " + kind;
        };
    }

    static int misc(ElementType type, ReduceOp op) {
        return type.ordinal() << 8 | (op == null ? 0xFF : op.ordinal());
    }

    static String miscName(int misc) {
        int type = misc >> 8;
        int op = misc & 0xFF;
        String typeName = type < ElementType.values().length ? ElementType.values()[type].name() : "type " + type;
        return op == 0xFF ? typeName : typeName + " " + (op < ReduceOp.values().length ? ReduceOp.values()[op].name() : "op " + op);
    }
}
