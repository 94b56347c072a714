// fpgagen static kernel library: the matrix-vector-threshold unit (MVAU). Written once, unit-tested with g++
// (tests/test_kernels_compute.py); each layer's header (templates/hls/mvau.h.j2) declares its memories from the
// layer's Memory declarations and calls fg::mvau with its config struct.
#pragma once
#include "fg_arith.h"

namespace fg {

// The SIMD products of one PE (weights row[base .. base+N-1]), summed feed-forward: the sum does not depend on
// the accumulator, so the loop carries only the single add acc + dot from one cycle to the next.
// DSP: the products and their sum are a DSP48 chain (multiply, then add the previous block's partial sum on the
// post-adder through the cascade): a feed-forward chain, pipelined one block per stage. Otherwise LUT
// multipliers and an adder tree. The C model computes the same exact integer sum with native integers and wraps
// it to ACC once, which equals the hardware's wrap after every add (two's complement addition is modular).
template <bool DSP, typename ACC, typename WT, typename WROM, typename X, unsigned N>
inline ACC dot(const WROM row[], unsigned base, const Vec<X, N> &x) {
#ifdef __SYNTHESIS__
    ACC sum = 0;
    if (DSP) {
    dot_dsp:
        for (unsigned s = 0; s < N; s++) {
#pragma HLS UNROLL
#pragma HLS EXPRESSION_BALANCE off
            const ACC product = rom_value<WT>(row[base + s]) * x.v[s];
#pragma HLS BIND_OP variable=product op=mul impl=dsp
            sum += product;
        }
    } else {
    dot_fabric:
        for (unsigned s = 0; s < N; s++) {
#pragma HLS UNROLL
            const ACC product = rom_value<WT>(row[base + s]) * x.v[s];
#pragma HLS BIND_OP variable=product op=mul impl=fabric
            sum += product;
        }
    }
    return sum;
#else
    static_assert(ACC::width <= 48 && WT::width <= 32 && X::width <= 32, "C model needs headroom in int64");
    long long sum = 0;
dot_model:
    for (unsigned s = 0; s < N; s++) sum += (long long)row[base + s] * x.v[s].to_int64();
    return ACC(sum);
#endif
}

// How a layer turns PE accumulators into output codes: the raw accumulator (no thresholds), parallel compares
// against one ROM word per output fold, or a binary search with one memory per stage (C::THR_MODE 0, 1, 2).
template <class C, unsigned MODE>
struct Requantize;

template <class C>
struct Requantize<C, 0> {
    static typename C::out_t apply(const typename C::acc_t &acc, unsigned, unsigned) {
        return acc;
    }
};

template <class C>
struct Requantize<C, 1> {
    template <typename TROM>
    static typename C::out_t apply(const typename C::acc_t &acc, unsigned p, unsigned nf,
                                   const TROM (&thresholds)[1][C::NF][C::PE * C::NT]) {
        return C::OUT_BASE + count_passed<C::NT, typename C::thr_t>(acc, thresholds[0][nf], p * C::NT);
    }
};

template <class C>
struct Requantize<C, 2> {
    template <typename... Stages>
    static typename C::out_t apply(const typename C::acc_t &acc, unsigned p, unsigned nf, const Stages &...stages) {
        return C::OUT_BASE + search_passed<0, C::NF, C::PE, typename C::thr_t>(acc, p, nf, 0, stages...);
    }
};

// The MVAU: per pixel, acc = W x over MW inputs for each of the MH outputs, then requantization. Per cycle PE
// outputs x SIMD inputs: tile t = nf*SF + sf of the weight ROM (a counter, no multiply). The input word is
// popped during the first output fold (nf == 0) and used directly, and kept in inbuf for the other folds.
// Memories (declared by the layer, fpgagen/ir/layers.py MVAU.memories, emitted by templates/hls/memory.j2):
//   weights[1][NF*SF][PE*SIMD], inbuf[1][SF or 1][SIMD], acc[1][1][PE], thresholds as Requantize takes them.
template <class C, typename WROM, unsigned IB, typename... Thresholds>
void mvau(hls::stream<Vec<typename C::in_t, C::SIMD> > &in, hls::stream<Vec<typename C::out_t, C::PE> > &out,
          const WROM (&weights)[1][C::NF * C::SF][C::PE * C::SIMD], typename C::in_t (&inbuf)[1][IB][C::SIMD],
          typename C::acc_t (&acc)[1][1][C::PE], const Thresholds &...thresholds) {
#pragma HLS INLINE
    typedef typename C::acc_t acc_t;
    unsigned sf = 0, nf = 0, tile = 0;
mvau_loop:
    for (unsigned i = 0; i < C::PIXELS * C::NF * C::SF; i++) {
#pragma HLS PIPELINE II=1
        Vec<typename C::in_t, C::SIMD> x;
        const unsigned slot = IB == 1 ? 0 : sf;
        if (nf == 0) {
            x = pop(in);
        mvau_keep:
            for (unsigned s = 0; s < C::SIMD; s++) {
#pragma HLS UNROLL
                inbuf[0][slot][s] = x.v[s];
            }
        } else {
        mvau_reuse:
            for (unsigned s = 0; s < C::SIMD; s++) {
#pragma HLS UNROLL
                x.v[s] = inbuf[0][slot][s];
            }
        }
    mvau_pe:
        for (unsigned p = 0; p < C::PE; p++) {
#pragma HLS UNROLL
            // p is a constant after unrolling: PEs below DSP_PE multiply in DSP48s, the rest in LUTs.
            const acc_t sum = p < C::DSP_PE
                                  ? dot<true, acc_t, typename C::weight_t>(weights[0][tile], p * C::SIMD, x)
                                  : dot<false, acc_t, typename C::weight_t>(weights[0][tile], p * C::SIMD, x);
            acc[0][0][p] = (sf == 0 ? acc_t(0) : acc[0][0][p]) + sum;
        }
        if (sf == C::SF - 1) {
            Vec<typename C::out_t, C::PE> y;
        mvau_requantize:
            for (unsigned p = 0; p < C::PE; p++) {
#pragma HLS UNROLL
                y.v[p] = Requantize<C, C::THR_MODE>::apply(acc[0][0][p], p, nf, thresholds...);
            }
            push(out, y);
            sf = 0;
            nf = (nf == C::NF - 1) ? 0 : nf + 1;
        } else {
            sf++;
        }
        tile = (tile == C::NF * C::SF - 1) ? 0 : tile + 1;
    }
}

}  // namespace fg
