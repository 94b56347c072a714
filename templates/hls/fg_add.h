// fpgagen static kernel library: AddStreams (fpgagen/ir/kinds/add.py). The exact integer sum MA*a + MB*b of two
// code streams, streamed as is or requantized by thresholds.
#pragma once
#include "fg_arith.h"

namespace fg {

// C: a_t, b_t, m_t (holds MA and MB), acc_t (holds the sum), PE, WORDS (per frame), MA, MB.
template <class C, typename A, typename B>
inline typename C::acc_t add_exact(const A &a, const B &b) {
#pragma HLS INLINE
    // ap_int products and sums widen to their exact result; only the final value (which fits) is narrowed.
    return typename C::acc_t(typename C::m_t(C::MA) * a + typename C::m_t(C::MB) * b);
}

template <class C>
void add_streams(hls::stream<Vec<typename C::a_t, C::PE> > &in_a, hls::stream<Vec<typename C::b_t, C::PE> > &in_b,
                 hls::stream<Vec<typename C::acc_t, C::PE> > &out) {
add_words:
    for (unsigned i = 0; i < C::WORDS; i++) {
#pragma HLS PIPELINE II=1
        const Vec<typename C::a_t, C::PE> a = pop(in_a);
        const Vec<typename C::b_t, C::PE> b = pop(in_b);
        Vec<typename C::acc_t, C::PE> y;
    add_lanes:
        for (unsigned p = 0; p < C::PE; p++) {
#pragma HLS UNROLL
            y.v[p] = add_exact<C>(a.v[p], b.v[p]);
        }
        push(out, y);
    }
}

// As add_streams, then channel c (word cw, lane p) becomes OUT_BASE + #{k : s' >= thresholds[0][cw][p*NT + k]},
// s' the sum, or -sum where negate[0][cw][p] (count_passed, fg_arith.h). C adds: out_t, cmp_t (holds -sum), CW
// (words per pixel), NT, OUT_BASE, thr_t, thr_rom_t, neg_rom_t.
template <class C>
void add_streams_requant(hls::stream<Vec<typename C::a_t, C::PE> > &in_a,
                         hls::stream<Vec<typename C::b_t, C::PE> > &in_b,
                         hls::stream<Vec<typename C::out_t, C::PE> > &out,
                         const typename C::thr_rom_t thresholds[1][C::CW][C::PE * C::NT],
                         const typename C::neg_rom_t negate[1][C::CW][C::PE]) {
    unsigned cw = 0;
add_requant_words:
    for (unsigned i = 0; i < C::WORDS; i++) {
#pragma HLS PIPELINE II=1
        const Vec<typename C::a_t, C::PE> a = pop(in_a);
        const Vec<typename C::b_t, C::PE> b = pop(in_b);
        Vec<typename C::out_t, C::PE> y;
    add_requant_lanes:
        for (unsigned p = 0; p < C::PE; p++) {
#pragma HLS UNROLL
            const typename C::acc_t sum = add_exact<C>(a.v[p], b.v[p]);
            const typename C::cmp_t value = negate[0][cw][p] ? typename C::cmp_t(-sum) : typename C::cmp_t(sum);
            y.v[p] = C::OUT_BASE + int(count_passed<C::NT, typename C::thr_t>(value, thresholds[0][cw], p * C::NT));
        }
        push(out, y);
        cw = (cw == C::CW - 1) ? 0 : cw + 1;
    }
}

}  // namespace fg
