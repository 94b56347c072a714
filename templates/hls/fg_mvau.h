// fpgagen static kernel library: the matrix-vector-threshold unit (MVAU). Written once, unit-tested with g++
// (tests/test_kernels_compute.py); each layer's header (templates/hls/mvau.h.j2) declares its memories from the
// layer's Memory declarations and calls fg::mvau with its config struct.
#pragma once
#include "fg_arith.h"
#ifndef FG_STREAM_LOOPS
#include "fg_model.h"
#endif

// Unit tests define FG_LOOP_TRACE(in, out) to record, after every loop iteration, what it popped and pushed (the
// stream pattern the cycle model assumes); in a build it is nothing.
#ifndef FG_LOOP_TRACE
#define FG_LOOP_TRACE(in, out)
#endif

namespace fg {

// The SIMD products of one PE (weights row[base .. base+N-1]), summed feed-forward: the sum does not depend on
// the accumulator, so the loop carries only the single add acc + dot from one cycle to the next.
// DSP: the products and their sum are a DSP48 chain (multiply, then add the previous block's partial sum on the
// post-adder through the cascade): a feed-forward chain, pipelined one block per stage. Otherwise LUT
// multipliers and an adder tree. The C model computes the same exact integer sum with native integers and wraps
// it to ACC once, which equals the hardware's wrap after every add (two's complement addition is modular).
template <bool DSP, typename ACC, typename WT, typename WROM, typename X, unsigned N>
inline ACC dot(const WROM row[], unsigned base, const Vec<X, N> &x) {
#ifdef FG_SYNTHESIS_FORM
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

// Two PEs' dot products in one DSP48 chain (C::PACK_SHIFT = K > 0; see MVAU.pack_shift): per input, the pre-adder
// forms w_hi * 2^K + w_lo (25 bits), the multiplier takes the shared input x, the cascade sums over the SIMD
// inputs into the 48-bit P = 2^K * S_hi + S_lo. K leaves |S_lo| < 2^(K-1), so S_lo is P's low K bits as a
// signed number and S_hi = (P - S_lo) >> K, exactly; both then wrap to ACC like any other sum. The C model
// evaluates the same packed integers (P fits int64) and splits them the same way.
template <unsigned K, typename ACC, typename WT, typename WROM, typename X, unsigned N>
inline void dot_pair(const WROM row[], unsigned lo_base, unsigned hi_base, const Vec<X, N> &x, ACC &lo, ACC &hi) {
#ifdef FG_SYNTHESIS_FORM
    ap_int<48> packed_sum = 0;
dot_pair_dsp:
    for (unsigned s = 0; s < N; s++) {
#pragma HLS UNROLL
#pragma HLS EXPRESSION_BALANCE off
        const ap_int<25> pair = (ap_int<25>(rom_value<WT>(row[hi_base + s])) << K) + rom_value<WT>(row[lo_base + s]);
        const ap_int<48> product = pair * x.v[s];
#pragma HLS BIND_OP variable=product op=mul impl=dsp
        packed_sum += product;
    }
    const ap_int<K> low = packed_sum(K - 1, 0);
    lo = low;
    hi = (packed_sum - low) >> K;
#else
    static_assert(K <= 24, "packing needs the DSP48E1's 25-bit pre-adder");
    long long packed_sum = 0;
dot_pair_model:
    for (unsigned s = 0; s < N; s++)
        packed_sum += ((long long)row[hi_base + s] * (1LL << K) + row[lo_base + s]) * x.v[s].to_int64();
    const long long field = packed_sum & ((1LL << K) - 1);
    const long long low = field >= (1LL << (K - 1)) ? field - (1LL << K) : field;
    lo = ACC(low);
    hi = ACC((packed_sum - low) >> K);
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

// How a PE's tile sum enters the accumulator. Unscaled (NoScale): as it is, the sum computed at the accumulator's
// type. Scaled (the layer's in_scale ROM, MVAU.in_scale: its input channels sit on different grids): the sum at
// the narrower C::sum_t, times the tile's integer multiplier k read from the ROM at the wrapping counter kt (every
// PE reads the same word). The product is exact in acc_t (the layer sizes acc_t for sum_c w_c * k_c * x_c); on a
// DSP PE it is a DSP48 multiply, otherwise LUTs, as the PE's other products. The C model multiplies the same
// values as native integers (the product fits int64: acc_t is at most 64 bits).
struct NoScale {};

template <class C, typename S>
struct TileSum {
    typedef typename C::sum_t type;
    static const unsigned DEPTH = C::KD;
};

template <class C>
struct TileSum<C, NoScale> {
    typedef typename C::acc_t type;
    static const unsigned DEPTH = 1;
};

template <class C, bool DSP>
inline typename C::acc_t scale_sum(const typename C::acc_t &sum, const NoScale &, unsigned) {
    return sum;
}

template <class C, bool DSP, typename KROM>
inline typename C::acc_t scale_sum(const typename C::sum_t &sum, const KROM (&in_scale)[1][C::KD][1], unsigned kt) {
#ifdef FG_SYNTHESIS_FORM
    if (DSP) {
        const typename C::acc_t product = sum * rom_value<typename C::scale_t>(in_scale[0][kt][0]);
#pragma HLS BIND_OP variable=product op=mul impl=dsp
        return product;
    } else {
        const typename C::acc_t product = sum * rom_value<typename C::scale_t>(in_scale[0][kt][0]);
#pragma HLS BIND_OP variable=product op=mul impl=fabric
        return product;
    }
#else
    static_assert(C::acc_t::width <= 64, "the C model multiplies in int64");
    return typename C::acc_t(sum.to_int64() * (long long)in_scale[0][kt][0]);
#endif
}

// The MVAU: per pixel, acc = W x over MW inputs for each of the MH outputs, then requantization. Per cycle PE
// outputs x SIMD inputs: tile t = nf*SF + sf of the weight ROM (a counter, no multiply). The input word is
// popped during the first output fold (nf == 0) and used directly, and kept in inbuf for the other folds.
// Memories (declared by the layer, fpgagen/ir/kinds/mvau.py MVAU.memories, emitted by templates/hls/memory.j2):
//   weights[1][NF*SF][PE*SIMD], inbuf[1][SF or 1][SIMD], acc[1][1][PE], thresholds as Requantize takes them,
//   and for mvau_scaled in_scale[1][KD][1].
template <class C, typename S, typename WROM, unsigned IB, typename... Thresholds>
void mvau_tiles(hls::stream<Vec<typename C::in_t, C::SIMD> > &in, hls::stream<Vec<typename C::out_t, C::PE> > &out,
                const WROM (&weights)[1][C::NF * C::SF][C::PE * C::SIMD], const S &scale,
                typename C::in_t (&inbuf)[1][IB][C::SIMD], typename C::acc_t (&acc)[1][1][C::PE],
                const Thresholds &...thresholds) {
#pragma HLS INLINE
    typedef typename C::acc_t acc_t;
    typedef typename TileSum<C, S>::type sum_t;
    const unsigned KD = TileSum<C, S>::DEPTH;
    unsigned sf = 0, nf = 0, tile = 0, kt = 0;
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
        // The PE sums of this tile: PEs below PACKED in pairs sharing a DSP48 chain, then single DSP PEs up to
        // DSP_PE, the rest in LUTs (p and q are constants after unrolling).
        sum_t sum[C::PE];
#pragma HLS ARRAY_PARTITION variable=sum complete
    mvau_pairs:
        for (unsigned q = 0; q < C::PACKED / 2; q++) {
#pragma HLS UNROLL
            dot_pair<C::PACK_SHIFT, sum_t, typename C::weight_t>(weights[0][tile], 2 * q * C::SIMD,
                                                               (2 * q + 1) * C::SIMD, x, sum[2 * q], sum[2 * q + 1]);
        }
    mvau_pe:
        for (unsigned p = C::PACKED; p < C::PE; p++) {
#pragma HLS UNROLL
            sum[p] = p < C::DSP_PE ? dot<true, sum_t, typename C::weight_t>(weights[0][tile], p * C::SIMD, x)
                                   : dot<false, sum_t, typename C::weight_t>(weights[0][tile], p * C::SIMD, x);
        }
    mvau_accumulate:
        for (unsigned p = 0; p < C::PE; p++) {
#pragma HLS UNROLL
            const acc_t term = p < C::DSP_PE ? scale_sum<C, true>(sum[p], scale, kt)
                                             : scale_sum<C, false>(sum[p], scale, kt);
            acc[0][0][p] = (sf == 0 ? acc_t(0) : acc[0][0][p]) + term;
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
        kt = (kt == KD - 1) ? 0 : kt + 1;  // KD divides SF: the counter stays aligned with every fold's tiles
        FG_LOOP_TRACE(in, out);
    }
}

#ifndef FG_STREAM_LOOPS
// The C model of the MVAU (C-simulation only; tests/test_kernels_compute.py checks it equal to the loops above on
// every case). Per pixel: the MW inputs as native integers, each output's exact dot product with a dense copy of
// its weight row, wrapped to acc_t once (the same value as the register's wrap after every add: two's complement
// addition is modular, and a packed pair's split is exact), then the same Requantize as the hardware. The words
// popped and pushed are the loops' words, in the same order.
template <class C>
struct ModelDot {
    static const unsigned W_BITS = SignedBits<typename C::weight_t>::value, X_BITS = SignedBits<typename C::in_t>::value;
    static const unsigned MW_BITS = C::MW <= 1 ? 0 : 32 - __builtin_clz(C::MW - 1);  // ceil(log2 MW)
    // 16-bit operands when both fit (the compiler's SIMD multiply-add), else 64-bit; a 32-bit sum when no sum of
    // MW products can overflow it, else 64-bit.
    typedef typename std::conditional<W_BITS <= 16 && X_BITS <= 16, int16_t, long long>::type operand_t;
    typedef typename std::conditional<W_BITS + X_BITS - 2 + MW_BITS <= 31, int, long long>::type sum_t;
    static const unsigned ROW = (C::MW + 15) / 16 * 16;  // rows zero-padded to whole vectors
    static_assert(W_BITS <= 32 && X_BITS <= 32 && C::acc_t::width <= 64, "the C model multiplies in int64");
};

template <typename S, unsigned N, typename T>
inline S model_dot(const T *w, const T *x) {
    S sum = 0;
    for (unsigned i = 0; i < N; i++) sum += S(w[i]) * S(x[i]);
    return sum;
}

template <class C, typename WROM, typename... Thresholds>
void mvau_model(hls::stream<Vec<typename C::in_t, C::SIMD> > &in, hls::stream<Vec<typename C::out_t, C::PE> > &out,
                const WROM (&weights)[1][C::NF * C::SF][C::PE * C::SIMD], const Thresholds &...thresholds) {
    typedef ModelDot<C> D;
    typedef typename D::operand_t operand_t;
    const unsigned ROW = D::ROW;
    // weights[0][nf * SF + sf][p * SIMD + s] is W[nf * PE + p][sf * SIMD + s]
    std::vector<operand_t> w(C::MH * ROW, 0), x(ROW, 0);
    for (unsigned nf = 0; nf < C::NF; nf++)
        for (unsigned sf = 0; sf < C::SF; sf++)
            for (unsigned p = 0; p < C::PE; p++)
                for (unsigned s = 0; s < C::SIMD; s++)
                    w[(nf * C::PE + p) * ROW + sf * C::SIMD + s] = operand_t(weights[0][nf * C::SF + sf][p * C::SIMD + s]);
    Vec<typename C::out_t, C::PE> y;  // constructed once: ap_int construction is not free
    for (unsigned pixel = 0; pixel < C::PIXELS; pixel++) {
        for (unsigned sf = 0; sf < C::SF; sf++) {
            const Vec<typename C::in_t, C::SIMD> word = pop(in);
            for (unsigned s = 0; s < C::SIMD; s++) x[sf * C::SIMD + s] = operand_t(word.v[s].to_int64());
        }
        for (unsigned nf = 0; nf < C::NF; nf++) {
            for (unsigned p = 0; p < C::PE; p++) {
                const typename D::sum_t sum =
                    model_dot<typename D::sum_t, D::ROW>(&w[(nf * C::PE + p) * ROW], &x[0]);
                y.v[p] = Requantize<C, C::THR_MODE>::apply(typename C::acc_t(sum), p, nf, thresholds...);
            }
            push(out, y);
        }
    }
}
#endif

// The MVAU on inputs of one grid (the common case): the loops above in synthesis, the C model in C-simulation.
template <class C, typename WROM, unsigned IB, typename... Thresholds>
void mvau(hls::stream<Vec<typename C::in_t, C::SIMD> > &in, hls::stream<Vec<typename C::out_t, C::PE> > &out,
          const WROM (&weights)[1][C::NF * C::SF][C::PE * C::SIMD], typename C::in_t (&inbuf)[1][IB][C::SIMD],
          typename C::acc_t (&acc)[1][1][C::PE], const Thresholds &...thresholds) {
#pragma HLS INLINE
#ifdef FG_STREAM_LOOPS
    mvau_tiles<C>(in, out, weights, NoScale(), inbuf, acc, thresholds...);
#else
    (void)inbuf;  // the C model keeps its own copies
    (void)acc;
    mvau_model<C>(in, out, weights, thresholds...);
#endif
}

// The MVAU whose input channels sit on different grids: each tile's sum times its k (in_scale[1][KD][1]).
template <class C, typename WROM, typename KROM, unsigned IB, typename... Thresholds>
void mvau_scaled(hls::stream<Vec<typename C::in_t, C::SIMD> > &in, hls::stream<Vec<typename C::out_t, C::PE> > &out,
                 const WROM (&weights)[1][C::NF * C::SF][C::PE * C::SIMD], const KROM (&in_scale)[1][C::KD][1],
                 typename C::in_t (&inbuf)[1][IB][C::SIMD], typename C::acc_t (&acc)[1][1][C::PE],
                 const Thresholds &...thresholds) {
#pragma HLS INLINE
    mvau_tiles<C>(in, out, weights, in_scale, inbuf, acc, thresholds...);
}

}  // namespace fg
