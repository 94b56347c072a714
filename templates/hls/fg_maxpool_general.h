// fpgagen static kernel library: the MaxPool kind's kernel for any kernel, stride and padding (fpgagen/ir/kinds/
// maxpool.py; fg_maxpool.h holds the cheaper one for non-overlapping windows and includes this one).
#pragma once
#include "fg_common.h"

namespace fg {

// C: in_t, T (holds the input codes and PAD), PE, IH, IW, CW (words per pixel), KH, KW, SH, SW, PT, PL, PB, PR,
// PAD (the pad code), SLOTS (ceil((PL + IW + PR) / KW) pixels per bank).
// rows: [KH * KW][SLOTS * CW][PE], bank (y mod KH) * KW + (x mod KW), address (x div KW) * CW + word.
template <class C>
void maxpool_general(hls::stream<Vec<typename C::in_t, C::PE> > &in, hls::stream<Vec<typename C::T, C::PE> > &out,
                     typename C::T rows[C::KH * C::KW][C::SLOTS * C::CW][C::PE]) {
    typedef typename C::T T;
    const unsigned PH = C::PT + C::IH + C::PB, PW = C::PL + C::IW + C::PR;
    unsigned y = 0, x = 0, cw = 0;  // padded row and column, word in the pixel
    unsigned ry = 0, cx = 0;        // y mod KH, x mod KW
    unsigned base = 0;              // (x div KW) * CW
    unsigned wait_y = C::KH - 1, wait_x = C::KW - 1;  // rows / columns until the next window ends
maxpool_general_words:
    for (unsigned i = 0; i < PH * PW * C::CW; i++) {
#pragma HLS PIPELINE II=1
        const bool real = y >= C::PT && y < C::PT + C::IH && x >= C::PL && x < C::PL + C::IW;
        Vec<T, C::PE> word;
        if (real) {
            const Vec<typename C::in_t, C::PE> popped = pop(in);
        maxpool_general_widen:
            for (unsigned e = 0; e < C::PE; e++) {
#pragma HLS UNROLL
                word.v[e] = popped.v[e];
            }
        } else {
        maxpool_general_pad:
            for (unsigned e = 0; e < C::PE; e++) {
#pragma HLS UNROLL
                word.v[e] = C::PAD;
            }
        }
        if (wait_y == 0 && wait_x == 0) {  // a window ends at (y, x): the max of its KH x KW words
            // Each bank holds exactly one word of the window (the latest row and column of its residues); the
            // loops name every bank statically, so each bank sees one read and the store below one write.
            Vec<T, C::PE> best = word;
        maxpool_general_bank_rows:
            for (unsigned by = 0; by < C::KH; by++) {
#pragma HLS UNROLL
            maxpool_general_bank_cols:
                for (unsigned bx = 0; bx < C::KW; bx++) {
#pragma HLS UNROLL
                    if (by != ry || bx != cx) {  // the current pixel's bank: its word is `word`, not stored yet
                        const unsigned addr = (bx <= cx) ? base + cw : base - C::CW + cw;
                    maxpool_general_lanes:
                        for (unsigned e = 0; e < C::PE; e++) {
#pragma HLS UNROLL
                            const T stored = rows[by * C::KW + bx][addr][e];
                            if (stored > best.v[e]) best.v[e] = stored;
                        }
                    }
                }
            }
            push(out, best);
        }
    maxpool_general_store:
        for (unsigned e = 0; e < C::PE; e++) {
#pragma HLS UNROLL
            rows[ry * C::KW + cx][base + cw][e] = word.v[e];
        }
        // advance the counters: word, column, row
        if (cw + 1 < C::CW) {
            cw++;
        } else {
            cw = 0;
            if (x + 1 < PW) {
                x++;
                wait_x = (wait_x == 0) ? C::SW - 1 : wait_x - 1;
                if (cx + 1 < C::KW) {
                    cx++;
                } else {
                    cx = 0;
                    base += C::CW;
                }
            } else {
                x = 0;
                cx = 0;
                base = 0;
                wait_x = C::KW - 1;
                y++;
                wait_y = (wait_y == 0) ? C::SH - 1 : wait_y - 1;
                ry = (ry + 1 < C::KH) ? ry + 1 : 0;
            }
        }
    }
}

}  // namespace fg
