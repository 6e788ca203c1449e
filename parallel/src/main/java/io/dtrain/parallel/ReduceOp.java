package io.dtrain.parallel;

/** Reductions: AVG is the sum divided by the group size, computed once by the rank that owns a segment. */
public enum ReduceOp {
    SUM,
    AVG
}
