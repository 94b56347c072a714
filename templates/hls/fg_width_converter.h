// fpgagen static kernel library: stream width converter.
#pragma once
#include "fg_common.h"
#ifndef FG_STREAM_LOOPS
#include "fg_model.h"
#endif

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
#ifndef FG_STREAM_LOOPS
// The C model (C-simulation only; tests/test_kernels_stream.py checks it equal to the loop below on every case): the
// whole frame's elements in (ITERATIONS = ELEMS / min(IN, OUT), as below), then out in words of OUT.
template <class C>
void width_converter_model(hls::stream<Vec<typename C::T, C::IN> > &in, hls::stream<Vec<typename C::T, C::OUT> > &out) {
    const unsigned ELEMS = C::ITERATIONS * (C::IN < C::OUT ? C::IN : C::OUT);
    const std::vector<typename Native<typename C::T>::type> frame = pop_frame(in, ELEMS / C::IN);
    Vec<typename C::T, C::OUT> word;  // constructed once: ap_int construction is not free
    for (unsigned w = 0; w < ELEMS / C::OUT; w++) {
        for (unsigned e = 0; e < C::OUT; e++) word.v[e] = frame[w * C::OUT + e];
        push(out, word);
    }
}
#endif

template <class C>
void width_converter(hls::stream<Vec<typename C::T, C::IN> > &in, hls::stream<Vec<typename C::T, C::OUT> > &out,
                     typename C::T buf[1][1][C::CAP]) {
#pragma HLS INLINE
#ifndef FG_STREAM_LOOPS
    (void)buf;  // the C model keeps the whole frame instead
    width_converter_model<C>(in, out);
#else
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
#endif
}

}  // namespace fg
