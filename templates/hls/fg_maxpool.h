// fpgagen static kernel library: the MaxPool kind's kernels (fpgagen/ir/kinds/maxpool.py): non-overlapping max
// pooling on integer codes here, any other window in fg_maxpool_general.h (the layer's config picks one).
#pragma once
#include "fg_common.h"
#include "fg_maxpool_general.h"
#ifndef FG_STREAM_LOOPS
#include "fg_model.h"
#endif

// Unit tests define FG_LOOP_TRACE(in, out) to record, after every loop iteration, what it popped and pushed (the
// stream pattern the cycle model assumes); in a build it is nothing.
#ifndef FG_LOOP_TRACE
#define FG_LOOP_TRACE(in, out)
#endif

namespace fg {

// One input word (PE channels of one pixel) per cycle, in one flat pipelined loop of IH * IW * CW iterations.
// Memories (declared by the layer, fpgagen.ir.kinds.maxpool.MaxPool.memories):
//   colmax[1][CW][PE]: registers, a shift register of the CW channel folds: the maximum over the window's
//     columns so far for each fold; the fold read now comes back at the head CW cycles later, whatever CW.
//   rowmax[KH-1][OW*CW][PE]: row memory k holds, between input rows, the maximum over window rows 0..k.
// Once per window row and channel fold (the last column of the window), row memory k is written from the
// column maximum and row memory k-1 only, never from itself: no memory feeds its own write, so the loop has no
// recurrence through a memory and reaches II=1 without any dependence pragma. The output word leaves with the
// last pixel of its window. Floor mode: rows and columns past the last whole window are read and dropped.
#ifndef FG_STREAM_LOOPS
// The C model (C-simulation only; tests/test_kernels_stream.py checks it equal to the loop below on every case):
// the whole frame in as native integers, each window's per-channel maximum by direct indexing, out in the same
// words and order.
template <class C>
void maxpool_model(hls::stream<Vec<typename C::T, C::PE> > &in, hls::stream<Vec<typename C::T, C::PE> > &out) {
    typedef typename Native<typename C::T>::type N;
    const std::vector<N> frame = pop_frame(in, C::IH * C::IW * C::CH / C::PE);
    std::vector<N> m(C::CH);
    Vec<typename C::T, C::PE> word;  // constructed once: ap_int construction is not free
    for (unsigned oy = 0; oy < C::OH; oy++) {
        for (unsigned ox = 0; ox < C::OW; ox++) {
            for (unsigned ky = 0; ky < C::KH; ky++) {
                for (unsigned kx = 0; kx < C::KW; kx++) {
                    const N *px = &frame[((oy * C::KH + ky) * C::IW + ox * C::KW + kx) * C::CH];
                    for (unsigned c = 0; c < C::CH; c++) m[c] = (ky == 0 && kx == 0) || px[c] > m[c] ? px[c] : m[c];
                }
            }
            for (unsigned w = 0; w < C::CH / C::PE; w++) {
                for (unsigned e = 0; e < C::PE; e++) word.v[e] = m[w * C::PE + e];
                push(out, word);
            }
        }
    }
}
#endif

template <class C>
void maxpool(hls::stream<Vec<typename C::T, C::PE> > &in, hls::stream<Vec<typename C::T, C::PE> > &out,
             typename C::T colmax[1][C::CH / C::PE][C::PE], typename C::T rowmax[C::ROW_BANKS][C::OW * (C::CH / C::PE)][C::PE]) {
#pragma HLS INLINE
#ifndef FG_STREAM_LOOPS
    (void)colmax;  // the C model keeps the whole frame instead
    (void)rowmax;
    maxpool_model<C>(in, out);
#else
    typedef typename C::T T;
    const unsigned CW = C::CH / C::PE;
    unsigned cw = 0, x = 0, y = 0, kx = 0, ky = 0, base = 0;  // base = ox * CW
pool_loop:
    for (unsigned i = 0; i < C::IH * C::IW * CW; i++) {
#pragma HLS PIPELINE II=1
        const Vec<T, C::PE> word = pop(in);
        // Column maximum: the head of the shift register is this fold's maximum over the previous columns.
        Vec<T, C::PE> m;
        column_max:
        for (unsigned e = 0; e < C::PE; e++) {
#pragma HLS UNROLL
            const T head = colmax[0][0][e];
            m.v[e] = (kx == 0 || word.v[e] > head) ? word.v[e] : head;
        }
        shift:
        for (unsigned d = 0; d + 1 < CW; d++) {
#pragma HLS UNROLL
            shift_lanes:
            for (unsigned e = 0; e < C::PE; e++) {
#pragma HLS UNROLL
                colmax[0][d][e] = colmax[0][d + 1][e];
            }
        }
        append:
        for (unsigned e = 0; e < C::PE; e++) {
#pragma HLS UNROLL
            colmax[0][CW - 1][e] = m.v[e];
        }

        if (kx == C::KW - 1 && x < C::OW * C::KW && y < C::OH * C::KH) {
            const unsigned a = base + cw;
            T prev[C::ROW_BANKS][C::PE];  // every row memory read once, at the window's address (wires)
#pragma HLS ARRAY_PARTITION variable=prev complete dim=0
            read_rows:
            for (unsigned k = 0; k < C::ROW_BANKS; k++) {
#pragma HLS UNROLL
                read_lanes:
                for (unsigned e = 0; e < C::PE; e++) {
#pragma HLS UNROLL
                    prev[k][e] = rowmax[k][a][e];
                }
            }
            row_chain:
            for (unsigned k = 0; k + 1 < C::KH; k++) {
#pragma HLS UNROLL
                if (ky == k) {  // row memory k <- max(column maximum, row memory k - 1)
                    row_lanes:
                    for (unsigned e = 0; e < C::PE; e++) {
#pragma HLS UNROLL
                        const T p = prev[k == 0 ? 0 : k - 1][e];
                        rowmax[k][a][e] = (k == 0 || m.v[e] > p) ? m.v[e] : p;
                    }
                }
            }
            if (ky == C::KH - 1) {
                Vec<T, C::PE> y_out;
                out_lanes:
                for (unsigned e = 0; e < C::PE; e++) {
#pragma HLS UNROLL
                    const T p = prev[C::KH > 1 ? C::KH - 2 : 0][e];
                    y_out.v[e] = (C::KH == 1 || m.v[e] > p) ? m.v[e] : p;
                }
                push(out, y_out);
            }
        }

        if (++cw == CW) {
            cw = 0;
            if (++kx == C::KW) {
                kx = 0;
                base += CW;
            }
            if (++x == C::IW) {
                x = 0;
                kx = 0;
                base = 0;
                if (++ky == C::KH) ky = 0;
                y++;
            }
        }
        FG_LOOP_TRACE(in, out);
    }
#endif
}

}  // namespace fg
