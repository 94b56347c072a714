// fpgagen static kernel library: standalone multi-threshold requantization of a code stream (a Quant that no
// MVAU absorbs). Each layer's header (templates/hls/threshold.h.j2) declares its memories from the layer's
// Memory declarations (fpgagen/ir/kinds/threshold.py Threshold.memories) and calls fg::threshold with its config struct.
#pragma once
#include "fg_arith.h"

namespace fg {

// Each code x of channel c becomes OUT_BASE + #{k : x' >= T[c][k]}, x' being x, or -x for a channel with a
// negative scale. One loop over every input word; the channel fold cw is a counter. Memories:
//   thresholds[1][CH/PE][PE*NT] (one word per channel fold, lane p's NT thresholds at p*NT),
//   negate[1][CH/PE][PE] (one flag per lane).
template <class C, typename TROM, typename NROM>
void threshold(hls::stream<Vec<typename C::in_t, C::PE> > &in, hls::stream<Vec<typename C::out_t, C::PE> > &out,
               const TROM (&thresholds)[1][C::CH / C::PE][C::PE * C::NT], const NROM (&negate)[1][C::CH / C::PE][C::PE]) {
#pragma HLS INLINE
    typedef ap_int<C::IN_BITS + 1> wide_t;  // room for -x
    unsigned cw = 0;
threshold_loop:
    for (unsigned i = 0; i < C::PIXELS * (C::CH / C::PE); i++) {
#pragma HLS PIPELINE II=1
        const Vec<typename C::in_t, C::PE> word = pop(in);
        Vec<typename C::out_t, C::PE> y;
    threshold_lanes:
        for (unsigned p = 0; p < C::PE; p++) {
#pragma HLS UNROLL
            const wide_t x = negate[0][cw][p] ? wide_t(-wide_t(word.v[p])) : wide_t(word.v[p]);
            y.v[p] = C::OUT_BASE + count_passed<C::NT, typename C::thr_t>(x, thresholds[0][cw], p * C::NT);
        }
        push(out, y);
        cw = (cw == C::CH / C::PE - 1) ? 0 : cw + 1;
    }
}

}  // namespace fg
