// fpgagen static kernel library: the vector-vector unit of a depthwise convolution (fpgagen/ir/kinds/vvu.py).
// Each channel's window dot its own weights; the raw accumulators go out (a Quant after it is a Threshold layer).
#pragma once
#include "fg_arith.h"

namespace fg {

// Lane p's share of one word: sum over s of weight row[s*PE + p] times input x[s*PE + p] (SIMD taps of the lane's
// channel). LUT multipliers and an adder tree. The C model computes the same exact integer sum with native
// integers and wraps it to acc_t once, which equals the hardware's wrap after every add.
template <class C, typename WROM>
inline typename C::acc_t vvu_lane(const WROM row[], const Vec<typename C::in_t, C::PE * C::SIMD> &x, unsigned p) {
#pragma HLS INLINE
#ifdef __SYNTHESIS__
    typename C::acc_t sum = 0;
vvu_products:
    for (unsigned s = 0; s < C::SIMD; s++) {
#pragma HLS UNROLL
        const typename C::acc_t product = rom_value<typename C::weight_t>(row[s * C::PE + p]) * x.v[s * C::PE + p];
#pragma HLS BIND_OP variable=product op=mul impl=fabric
        sum += product;
    }
    return sum;
#else
    static_assert(C::acc_t::width <= 48 && C::weight_t::width <= 32 && C::in_t::width <= 32,
                  "C model needs headroom in int64");
    long long sum = 0;
vvu_products_model:
    for (unsigned s = 0; s < C::SIMD; s++) {
#pragma HLS UNROLL
        sum += (long long)row[s * C::PE + p] * x.v[s * C::PE + p].to_int64();
    }
    return typename C::acc_t(sum);
#endif
}

// C: in_t, weight_t, acc_t, PE, SIMD, CF (channel folds, C/PE), TG (tap groups, K/SIMD), PIXELS (output pixels).
// Per output pixel the window arrives tap group by tap group, each as CF words (cf counts fastest); iteration
// (tg, cf) adds its PE lane sums to acc[cf] (a fresh start at tg == 0) and, in the last tap group, pushes them.
// Memories (declared by VVU.memories, emitted by templates/hls/memory.j2): weights[1][TG*CF][PE*SIMD] (ROM word
// tg*CF + cf, read by a wrapping counter), acc[1][CF][PE] (registers).
template <class C, typename WROM>
void vvu(hls::stream<Vec<typename C::in_t, C::PE * C::SIMD> > &in, hls::stream<Vec<typename C::acc_t, C::PE> > &out,
         const WROM (&weights)[1][C::TG * C::CF][C::PE * C::SIMD], typename C::acc_t (&acc)[1][C::CF][C::PE]) {
#pragma HLS INLINE
    typedef typename C::acc_t acc_t;
    unsigned cf = 0, tg = 0, tile = 0;
vvu_loop:
    for (unsigned i = 0; i < C::PIXELS * C::TG * C::CF; i++) {
#pragma HLS PIPELINE II=1
        const Vec<typename C::in_t, C::PE * C::SIMD> x = pop(in);
        Vec<acc_t, C::PE> y;
    vvu_lanes:
        for (unsigned p = 0; p < C::PE; p++) {
#pragma HLS UNROLL
            const acc_t sum = (tg == 0 ? acc_t(0) : acc[0][cf][p]) + vvu_lane<C>(weights[0][tile], x, p);
            acc[0][cf][p] = sum;
            y.v[p] = sum;
        }
        if (tg == C::TG - 1) push(out, y);
        tile = (tile == C::TG * C::CF - 1) ? 0 : tile + 1;
        if (cf == C::CF - 1) {
            cf = 0;
            tg = (tg == C::TG - 1) ? 0 : tg + 1;
        } else {
            cf++;
        }
    }
}

}  // namespace fg
