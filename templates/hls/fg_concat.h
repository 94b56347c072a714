// fpgagen static kernel library: Concat (fpgagen/ir/kinds/concat.py). Channel concatenation of K streams of
// possibly different element types, with optional per-channel requantization by thresholds.
#pragma once
#include "fg_arith.h"

namespace fg {

// Pop one word from the stream of the pack that `sel` names and widen it to V (expanded at compile time: one
// guarded read per input stream).
template <typename V, unsigned PE>
inline void pop_selected(unsigned, unsigned, Vec<V, PE> &) {}

template <typename V, unsigned PE, typename T0, typename... Rest>
inline void pop_selected(unsigned sel, unsigned index, Vec<V, PE> &x, hls::stream<Vec<T0, PE> > &first,
                         Rest &... rest) {
#pragma HLS INLINE
    if (sel == index) {
        const Vec<T0, PE> word = pop(first);
    concat_widen:
        for (unsigned e = 0; e < PE; e++) {
#pragma HLS UNROLL
            x.v[e] = word.v[e];
        }
    } else {
        pop_selected(sel, index + 1, x, rest...);
    }
}

// Branch and word counters shared by both kernels: `sel` is the branch being read, `left` its words still to
// come in this pixel, `w` the word's index in the output pixel.
struct ConcatCounters {
    unsigned sel, left, w;
};

template <class C>
inline void concat_advance(ConcatCounters &n) {
#pragma HLS INLINE
    if (n.left == 1) {
        n.sel = (n.sel == C::K - 1) ? 0 : n.sel + 1;
        n.left = C::branch_words(n.sel);
    } else {
        n.left--;
    }
    n.w = (n.w == C::WORDS - 1) ? 0 : n.w + 1;
}

// C: V (a type holding every branch's codes), out_t, PE, PIXELS, WORDS (output words per pixel), K (branches),
// branch_words(k) (branch k's words per pixel: a constant select, no array).
// The codes pass through unchanged (already on the output grid).
template <class C, typename... Ins>
void concat(hls::stream<Vec<typename C::out_t, C::PE> > &out, Ins &... ins) {
    static_assert(sizeof...(Ins) == C::K, "one input stream per concat branch");
    ConcatCounters n = {0, C::branch_words(0), 0};
concat_words:
    for (unsigned i = 0; i < C::PIXELS * C::WORDS; i++) {
#pragma HLS PIPELINE II=1
        Vec<typename C::V, C::PE> x;
        pop_selected(n.sel, 0, x, ins...);
        Vec<typename C::out_t, C::PE> y;
    concat_lanes:
        for (unsigned p = 0; p < C::PE; p++) {
#pragma HLS UNROLL
            y.v[p] = x.v[p];
        }
        push(out, y);
        concat_advance<C>(n);
    }
}

// As concat, and each channel c of output word w, lane p, becomes
// OUT_BASE + #{k : x' >= thresholds[0][w][p*NT + k]}, x' = -x where negate[0][w][p] (a negative scale;
// count_passed, fg_arith.h).
template <class C, typename... Ins>
void concat_requant(hls::stream<Vec<typename C::out_t, C::PE> > &out,
                    const typename C::thr_rom_t thresholds[1][C::WORDS][C::PE * C::NT],
                    const typename C::neg_rom_t negate[1][C::WORDS][C::PE], Ins &... ins) {
    static_assert(sizeof...(Ins) == C::K, "one input stream per concat branch");
    ConcatCounters n = {0, C::branch_words(0), 0};
concat_requant_words:
    for (unsigned i = 0; i < C::PIXELS * C::WORDS; i++) {
#pragma HLS PIPELINE II=1
        Vec<typename C::V, C::PE> x;
        pop_selected(n.sel, 0, x, ins...);
        Vec<typename C::out_t, C::PE> y;
    concat_requant_lanes:
        for (unsigned p = 0; p < C::PE; p++) {
#pragma HLS UNROLL
            const typename C::V value = negate[0][n.w][p] ? typename C::V(-x.v[p]) : x.v[p];
            y.v[p] = C::OUT_BASE + int(count_passed<C::NT, typename C::thr_t>(value, thresholds[0][n.w], p * C::NT));
        }
        push(out, y);
        concat_advance<C>(n);
    }
}

}  // namespace fg
