// fpgagen static kernel library: Letterbox (fpgagen/ir/kinds/letterbox.py). The camera frame resized with
// OpenCV's INTER_LINEAR_EXACT fixed-point bilinear and centred on the pad value, in front of the network.
#pragma once
#include "fg_common.h"

// Unit tests define FG_LOOP_TRACE(in, out) to record what each loop iteration popped and pushed; in a build it is
// nothing.
#ifndef FG_LOOP_TRACE
#define FG_LOOP_TRACE(in, out)
#endif

namespace fg {

// C: T (ap_uint<8>), W, H (camera), S (output side), NW, NH, DX, DY (scaled picture and its offset), PAD, SWAP_RB,
// PPC (camera pixels per input word), ROWS (line-buffer slots), SHIFT (log2 PPC), ITERATIONS (the schedule's trip
// count, fpgagen/ir/kinds/letterbox.py: Letterbox.iterations).
// rows[ROWS * PPC][W / PPC][6]: per slot and phase, the pair (p[x], p[x + 1]) of 3 channels at address x / PPC of
// phase x % PPC: one write (an input pixel) and one read (an output pixel) per bank and cycle.
// x_left/x_weight[1][NW][1], y_top/y_slot/y_weight[1][NH][1]: the taps (ROMs), weights in [0, 256].
template <class C>
void letterbox(hls::stream<Vec<typename C::T, 3 * C::PPC> > &in, hls::stream<Vec<typename C::T, 3> > &out,
               typename C::T rows[C::ROWS * C::PPC][C::W / C::PPC][6], const typename C::XL x_left[1][C::NW][1],
               const typename C::WT x_weight[1][C::NW][1], const typename C::YT y_top[1][C::NH][1],
               const typename C::YS y_slot[1][C::NH][1], const typename C::WT y_weight[1][C::NH][1]) {
#pragma HLS INLINE
    typedef typename C::T T;
    unsigned iy = 0, iw = 0, islot = 0;       // input row, word in the row, the row's line-buffer slot
    unsigned oy = 0, ox = 0, ky = 0, kx = 0;  // output row and column; row and column in the scaled picture
    T prev[3] = {0, 0, 0};                    // the last pixel of the previous word (the left half of a pair)
letterbox_loop:
    for (unsigned i = 0; i < C::ITERATIONS; i++) {
#pragma HLS PIPELINE II=1
        const bool top_pad = oy < C::DY, bottom_pad = oy >= C::DY + C::NH;
        const unsigned r0 = y_top[0][ky][0];
        const bool push_ok = oy < C::S && (top_pad || bottom_pad || iy >= r0 + 2);
        const bool pop_ok = iy < C::H && (bottom_pad || iy < r0 + C::ROWS);
        if (push_ok) {
            Vec<T, 3> pixel;
            if (top_pad || bottom_pad || ox < C::DX || ox >= C::DX + C::NW) {
            pad_lanes:
                for (unsigned c = 0; c < 3; c++) {
#pragma HLS UNROLL
                    pixel.v[c] = C::PAD;
                }
            } else {
                const unsigned x0 = x_left[0][kx][0], cx = x_weight[0][kx][0], cy = y_weight[0][ky][0];
                const unsigned addr = x0 >> C::SHIFT, phase = x0 & (C::PPC - 1);
                const unsigned slot0 = y_slot[0][ky][0], slot1 = slot0 + 1 == C::ROWS ? 0 : slot0 + 1;
                T upper[6], lower[6];
            read_banks:
                for (unsigned b = 0; b < C::ROWS * C::PPC; b++) {
#pragma HLS UNROLL
                    const unsigned slot = b / C::PPC, q = b % C::PPC;  // constants once unrolled
                    T pair[6];
                read_pair:
                    for (unsigned e = 0; e < 6; e++) {
#pragma HLS UNROLL
                        pair[e] = rows[b][addr][e];
                    }
                select_pair:
                    for (unsigned e = 0; e < 6; e++) {
#pragma HLS UNROLL
                        if (q == phase && slot == slot0) upper[e] = pair[e];
                        if (q == phase && slot == slot1) lower[e] = pair[e];
                    }
                }
            interpolate:
                for (unsigned c = 0; c < 3; c++) {
#pragma HLS UNROLL
                    const ap_uint<17> h0 = upper[c] * (256 - cx) + upper[3 + c] * cx;  // 8 fraction bits
                    const ap_uint<17> h1 = lower[c] * (256 - cx) + lower[3 + c] * cx;
                    const ap_uint<26> v = h0 * (256 - cy) + h1 * cy + (1u << 15);      // 16 fraction bits
                    pixel.v[C::SWAP_RB ? 2 - c : c] = v >> 16;
                }
            }
            push(out, pixel);
        }
        if (pop_ok) {
            const Vec<T, 3 * C::PPC> word = pop(in);
            // pixel j of the word completes the pair starting one pixel to its left: phase (j - 1) % PPC, at this
            // word's address (the previous word's for j == 0); a row's first pixel starts no pair.
        store_pairs:
            for (unsigned j = 0; j < C::PPC; j++) {
#pragma HLS UNROLL
                const unsigned q = (j + C::PPC - 1) % C::PPC;  // a constant once unrolled
                const bool first = j == 0;
                if (!first || iw > 0) {
                    const unsigned addr = first ? iw - 1 : iw;
                store_slots:
                    for (unsigned r = 0; r < C::ROWS; r++) {
#pragma HLS UNROLL
                        if (r == islot) {
                        store_lanes:
                            for (unsigned c = 0; c < 3; c++) {
#pragma HLS UNROLL
                                rows[r * C::PPC + q][addr][c] = first ? prev[c] : word.v[3 * (j - 1) + c];
                                rows[r * C::PPC + q][addr][3 + c] = word.v[3 * j + c];
                            }
                        }
                    }
                }
            }
        keep_last:
            for (unsigned c = 0; c < 3; c++) {
#pragma HLS UNROLL
                prev[c] = word.v[3 * (C::PPC - 1) + c];
            }
            if (iw + 1 < C::W / C::PPC) {
                iw++;
            } else {
                iw = 0;
                iy++;
                islot = islot + 1 == C::ROWS ? 0 : islot + 1;
            }
        }
        if (push_ok) {
            const bool content_row = !top_pad && !bottom_pad;
            if (content_row && ox >= C::DX && ox < C::DX + C::NW) kx++;
            if (ox + 1 < C::S) {
                ox++;
            } else {
                ox = 0;
                kx = 0;
                oy++;
                if (content_row && ky + 1 < C::NH) ky++;
            }
        }
        FG_LOOP_TRACE(in, out);
    }
}

}  // namespace fg
