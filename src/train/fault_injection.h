#pragma once
// Fault injection for the tests of bad steps: QJ_FAULT_NAN_GRAD=STEP[-LAST][@RANK]
// puts a NaN into one element of this rank's gradient (world rank RANK only,
// when given) before the backward of step STEP (1-based; through LAST, or every
// later step when LAST is empty, as in "5-"): backward adds to it and the
// data-parallel reduction carries it to the other ranks, as a real overflow would.
namespace qj {

// Whether QJ_FAULT_NAN_GRAD asks for a NaN at `step` (1-based) on `world_rank`.
// Throws qj::Error for a malformed value.
bool nan_gradient_injected(int step, int world_rank);

}  // namespace qj
