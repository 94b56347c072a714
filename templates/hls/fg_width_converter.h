// fpgagen static kernel library: stream width converter.
#pragma once
#include "fg_common.h"

// Unit tests define FG_LOOP_TRACE(in, out) to record, after every loop iteration, what it popped and pushed (the
// stream pattern the cycle model assumes); in a build it is nothing.
#ifndef FG_LOOP_TRACE
#define FG_LOOP_TRACE(in, out)
#endif

namespace fg {

// Repacks IN-element words into OUT-element words in one flat pipelined loop (II=1, no per-chunk re-entry).
// The buffer holds `have` elements, the oldest at the bottom. Each iteration reads a word when the buffer holds
// fewer than OUT elements (IN >= OUT; every iteration when IN < OUT) and appends it above them, then writes the
// bottom OUT elements when there are that many and shifts the rest down. A chunk of lcm(IN, OUT) elements thus
// takes max(chunk / IN, chunk / OUT) iterations, and ITERATIONS = max(ELEMS / IN, ELEMS / OUT) per frame.
template <class C>
void width_converter(hls::stream<Vec<typename C::T, C::IN> > &in, hls::stream<Vec<typename C::T, C::OUT> > &out) {
#pragma HLS INLINE
    typedef typename C::T T;
    const unsigned CAP = C::IN + C::OUT - 1;  // fewer than OUT before a read, so at most this after one
    Vec<T, CAP> buf;
    unsigned have = 0;
dwc_loop:
    for (unsigned i = 0; i < C::ITERATIONS; i++) {
#pragma HLS PIPELINE II=1
        if (C::IN < C::OUT || have < C::OUT) {
            const Vec<T, C::IN> word = pop(in);
            for (unsigned k = 0; k < CAP; k++) {
#pragma HLS UNROLL
                if (k >= have && k < have + C::IN) buf.v[k] = word.v[k - have];
            }
            have += C::IN;
        }
        if (have >= C::OUT) {
            Vec<T, C::OUT> w;
            for (unsigned e = 0; e < C::OUT; e++) {
#pragma HLS UNROLL
                w.v[e] = buf.v[e];
            }
            push(out, w);
            for (unsigned k = 0; k + C::OUT < CAP; k++) {
#pragma HLS UNROLL
                buf.v[k] = buf.v[k + C::OUT];
            }
            have -= C::OUT;
        }
        FG_LOOP_TRACE(in, out);
    }
}

}  // namespace fg
