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
void width_converter(hls::stream<Vec<typename C::T, C::IN> > &in, hls::stream<Vec<typename C::T, C::OUT> > &out,
                     typename C::T buf[1][1][C::CAP]) {
#pragma HLS INLINE
    typedef typename C::T T;
    // buf (declared by the layer, registers): fewer than OUT elements before a read, so at most CAP after one
    // (IN + OUT - 1; max(IN, OUT) for exact multiples).
    const unsigned CAP = C::CAP;
    unsigned have = 0;
dwc_loop:
    for (unsigned i = 0; i < C::ITERATIONS; i++) {
#pragma HLS PIPELINE II=1
        if (C::IN < C::OUT || have < C::OUT) {
            const Vec<T, C::IN> word = pop(in);
            append:
            for (unsigned e = 0; e < C::IN; e++) {
#pragma HLS UNROLL
                buf[0][0][have + e] = word.v[e];  // a decoder per element: exact multiples take one lane each
            }
            have += C::IN;
        }
        if (have >= C::OUT) {
            Vec<T, C::OUT> w;
            emit:
            for (unsigned e = 0; e < C::OUT; e++) {
#pragma HLS UNROLL
                w.v[e] = buf[0][0][e];
            }
            push(out, w);
            shift:
            for (unsigned k = 0; k + C::OUT < CAP; k++) {
#pragma HLS UNROLL
                buf[0][0][k] = buf[0][0][k + C::OUT];
            }
            have -= C::OUT;
        }
        FG_LOOP_TRACE(in, out);
    }
}

}  // namespace fg
