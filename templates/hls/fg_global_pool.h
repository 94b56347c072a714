// fpgagen static kernel library: global average pooling as integer sums (fpgagen/ir/kinds/global_pool.py), the
// 1/(H*W) and the Quant after it folded into per-channel thresholds on the sums.
#pragma once
#include "fg_arith.h"

namespace fg {

// Lane p of channel fold cw: its running sum plus x (from 0 at the first pixel), kept in sums[0][cw][p].
template <class C>
inline typename C::sum_t pool_add(typename C::sum_t (&sums)[1][C::CW][C::PE], unsigned cw, unsigned p, bool first,
                                  const typename C::in_t &x) {
#pragma HLS INLINE
    const typename C::sum_t sum = (first ? typename C::sum_t(0) : sums[0][cw][p]) + x;
    sums[0][cw][p] = sum;
    return sum;
}

// C: in_t, sum_t, out_t, PE, CW (channel words per pixel, C/PE), PIXELS. One iteration per input word; pixel px
// and channel fold cw are counters; the last pixel's iterations push their fold's PE sums (pool_add).
// Memories (GlobalAveragePool.memories): sums[1][CW][PE] (registers).
template <class C>
void global_pool(hls::stream<Vec<typename C::in_t, C::PE> > &in, hls::stream<Vec<typename C::out_t, C::PE> > &out,
                 typename C::sum_t (&sums)[1][C::CW][C::PE]) {
#pragma HLS INLINE
    unsigned cw = 0, px = 0;
global_pool_words:
    for (unsigned i = 0; i < C::PIXELS * C::CW; i++) {
#pragma HLS PIPELINE II=1
        const Vec<typename C::in_t, C::PE> x = pop(in);
        Vec<typename C::out_t, C::PE> y;
    global_pool_lanes:
        for (unsigned p = 0; p < C::PE; p++) {
#pragma HLS UNROLL
            y.v[p] = pool_add<C>(sums, cw, p, px == 0, x.v[p]);
        }
        if (px == C::PIXELS - 1) push(out, y);
        if (cw == C::CW - 1) {
            cw = 0;
            px++;
        } else {
            cw++;
        }
    }
}

// As global_pool, and each finished sum S of lane p becomes OUT_BASE + #{k : S' >= thresholds[0][cw][p*NT + k]},
// S' = -S where negate[0][cw][p] (count_passed, fg_arith.h). C adds V (a signed type holding +-S), NT, OUT_BASE,
// thr_t. Memories add thresholds[1][CW][PE*NT] and negate[1][CW][PE] (fpgagen.ir.kinds.base.threshold_memories).
template <class C, typename TROM, typename NROM>
void global_pool_requant(hls::stream<Vec<typename C::in_t, C::PE> > &in,
                         hls::stream<Vec<typename C::out_t, C::PE> > &out, typename C::sum_t (&sums)[1][C::CW][C::PE],
                         const TROM (&thresholds)[1][C::CW][C::PE * C::NT], const NROM (&negate)[1][C::CW][C::PE]) {
#pragma HLS INLINE
    unsigned cw = 0, px = 0;
global_pool_requant_words:
    for (unsigned i = 0; i < C::PIXELS * C::CW; i++) {
#pragma HLS PIPELINE II=1
        const Vec<typename C::in_t, C::PE> x = pop(in);
        Vec<typename C::out_t, C::PE> y;
    global_pool_requant_lanes:
        for (unsigned p = 0; p < C::PE; p++) {
#pragma HLS UNROLL
            const typename C::V sum = pool_add<C>(sums, cw, p, px == 0, x.v[p]);
            const typename C::V value = negate[0][cw][p] ? typename C::V(-sum) : sum;
            y.v[p] = C::OUT_BASE + int(count_passed<C::NT, typename C::thr_t>(value, thresholds[0][cw], p * C::NT));
        }
        if (px == C::PIXELS - 1) push(out, y);
        if (cw == C::CW - 1) {
            cw = 0;
            px++;
        } else {
            cw++;
        }
    }
}

}  // namespace fg
