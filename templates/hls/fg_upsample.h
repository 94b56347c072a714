// fpgagen static kernel library: Upsample (fpgagen/ir/kinds/upsample.py). Nearest-neighbour upsampling by
// integer factors FY x FX.
#pragma once
#include "fg_common.h"

namespace fg {

// C: T, PE, IH, IW, CW (words per pixel), FY, FX, ROW_PIXELS (pixels the row buffer holds: IW, or 1 when FY == 1).
// row: the line buffer [1][ROW_PIXELS * CW][PE], declared by the instance from its Memory.
template <class C>
void upsample(hls::stream<Vec<typename C::T, C::PE> > &in, hls::stream<Vec<typename C::T, C::PE> > &out,
              typename C::T row[1][C::ROW_PIXELS * C::CW][C::PE]) {
    unsigned cw = 0, rx = 0, ry = 0;  // word in pixel, repeat of the column, repeat of the row
    unsigned ix = 0, base = 0;        // input column and its first word's address in the row buffer
upsample_words:
    for (unsigned i = 0; i < C::IH * C::FY * C::IW * C::FX * C::CW; i++) {
#pragma HLS PIPELINE II=1
        const unsigned addr = base + cw;
        Vec<typename C::T, C::PE> word;
        if (ry == 0 && rx == 0) {
            word = pop(in);
        upsample_store:
            for (unsigned e = 0; e < C::PE; e++) {
#pragma HLS UNROLL
                row[0][addr][e] = word.v[e];
            }
        } else {
        upsample_load:
            for (unsigned e = 0; e < C::PE; e++) {
#pragma HLS UNROLL
                word.v[e] = row[0][addr][e];
            }
        }
        push(out, word);
        if (cw + 1 < C::CW) {
            cw++;
        } else {
            cw = 0;
            if (rx + 1 < C::FX) {
                rx++;
            } else {
                rx = 0;
                if (ix + 1 < C::IW) {
                    ix++;
                    if (C::ROW_PIXELS > 1) base += C::CW;
                } else {
                    ix = 0;
                    base = 0;
                    ry = (ry + 1 < C::FY) ? ry + 1 : 0;
                }
            }
        }
    }
}

}  // namespace fg
