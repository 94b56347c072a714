// fpgagen static kernel library: ChannelSlice (fpgagen/ir/kinds/channel_slice.py). Channels [start, stop) of
// every pixel: words FIRST .. LAST - 1 of each pixel's CW words pass, the others are dropped.
#pragma once
#include "fg_common.h"

namespace fg {

// C: T (element type), PE (elements per word), WORDS (input words per frame), CW (words per pixel), FIRST, LAST.
template <class C>
void channel_slice(hls::stream<Vec<typename C::T, C::PE> > &in, hls::stream<Vec<typename C::T, C::PE> > &out) {
    unsigned w = 0;  // the word within the pixel
slice_words:
    for (unsigned i = 0; i < C::WORDS; i++) {
#pragma HLS PIPELINE II=1
        const Vec<typename C::T, C::PE> word = pop(in);
        if (w >= C::FIRST && w < C::LAST) {
            push(out, word);
        }
        w = (w == C::CW - 1) ? 0 : w + 1;
    }
}

}  // namespace fg
