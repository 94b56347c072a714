// fpgagen static kernel library: XnorMVAU (fpgagen/ir/kinds/xnor.py). W1A1 matrix unit: bipolar weights and
// activations as bits, acc = 2 * popcount(XNOR(w, x)) - MW.
#pragma once
#include "fg_arith.h"

namespace fg {

// C: PE, SIMD, NF, SF, PIXELS, MW, pc_t (holds 0..MW+1), out_t, w_rom_t; NT (0: stream acc), OUT_BASE,
// BIPOLAR_OUT (stream the threshold bit itself), thr_t, thr_rom_t; BITS_ACC (NT 0 on a BINARY input: stream
// popcount - offsets, the accumulator on the bits), off_rom_t.
// weights [PE][NF*SF][SIMD] bits; inbuf [1][SF][SIMD]; thresholds [1][NF][PE*NT] on the popcount (PE p's at
// p*NT, count_passed in fg_arith.h); offsets [1][NF][PE]: per neuron the count of -1 weights (BITS_ACC only).
template <class C>
void xnor_mvau(hls::stream<Vec<ap_uint<1>, C::SIMD> > &in, hls::stream<Vec<typename C::out_t, C::PE> > &out,
               const typename C::w_rom_t weights[C::PE][C::NF * C::SF][C::SIMD], ap_uint<1> inbuf[1][C::SF][C::SIMD],
               const typename C::thr_rom_t thresholds[1][C::NF][C::PE * (C::NT > 0 ? C::NT : 1)],
               const typename C::off_rom_t offsets[1][C::NF][C::PE] = nullptr) {
    typedef typename C::pc_t pc_t;
    pc_t acc[C::PE];
#pragma HLS ARRAY_PARTITION variable=acc complete
    unsigned nf = 0, sf = 0, tile = 0;  // neuron fold, input fold, their weight address nf * SF + sf
xnor_mvau_folds:
    for (unsigned i = 0; i < C::PIXELS * C::NF * C::SF; i++) {
#pragma HLS PIPELINE II=1
        Vec<ap_uint<1>, C::SIMD> x;
        if (nf == 0) {  // the first neuron fold reads the pixel's input words; the others reuse them
            x = pop(in);
        xnor_mvau_keep:
            for (unsigned s = 0; s < C::SIMD; s++) {
#pragma HLS UNROLL
                inbuf[0][sf][s] = x.v[s];
            }
        } else {
        xnor_mvau_reuse:
            for (unsigned s = 0; s < C::SIMD; s++) {
#pragma HLS UNROLL
                x.v[s] = inbuf[0][sf][s];
            }
        }
    xnor_mvau_pes:
        for (unsigned p = 0; p < C::PE; p++) {
#pragma HLS UNROLL
            pc_t agree = 0;
        xnor_mvau_bits:
            for (unsigned s = 0; s < C::SIMD; s++) {
#pragma HLS UNROLL
                agree += (ap_uint<1>(weights[p][tile][s]) == x.v[s]);
            }
            acc[p] = (sf == 0 ? pc_t(0) : acc[p]) + agree;
        }
        if (sf == C::SF - 1) {
            Vec<typename C::out_t, C::PE> y;
        xnor_mvau_outputs:
            for (unsigned p = 0; p < C::PE; p++) {
#pragma HLS UNROLL
                if (C::NT == 0 && C::BITS_ACC) {  // the accumulator on the bits: popcount - #(-1 weights)
                    y.v[p] = typename C::out_t(int(acc[p]) - int(offsets[0][nf][p]));
                } else if (C::NT == 0) {
                    y.v[p] = ap_int<C::ACC_BITS>(2 * ap_int<C::ACC_BITS>(acc[p]) - C::MW);
                } else if (C::BIPOLAR_OUT) {
                    y.v[p] = count_passed<C::NT, typename C::thr_t>(acc[p], thresholds[0][nf], p * C::NT);
                } else {
                    y.v[p] = C::OUT_BASE +
                             int(count_passed<C::NT, typename C::thr_t>(acc[p], thresholds[0][nf], p * C::NT));
                }
            }
            push(out, y);
        }
        tile = (tile == C::NF * C::SF - 1) ? 0 : tile + 1;
        if (sf == C::SF - 1) {
            sf = 0;
            nf = (nf == C::NF - 1) ? 0 : nf + 1;
        } else {
            sf++;
        }
    }
}

}  // namespace fg
