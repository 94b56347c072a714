// fpgagen static kernel library: sliding-window generator (im2col on a stream).
// Written for fpgagen; the structure (a line buffer walked with counters, its columns split cyclically so that a
// window word spanning several columns reads each from its own memory) follows the usual HLS practice.
#pragma once
#include "fg_common.h"
#ifndef FG_STREAM_LOOPS
#include "fg_model.h"
#endif

// Unit tests define FG_LOOP_TRACE(in, out) to record, after every loop iteration, what it popped and pushed (the
// stream pattern the cycle model assumes); in a build it is nothing.
#ifndef FG_LOOP_TRACE
#define FG_LOOP_TRACE(in, out)
#endif

namespace fg {

// Where lane e of a window word sits, relative to the word's first pixel: pixel k = e / CH of the word, at
// (row, column) offset (k / KW, k % KW), channel e % CH. Lane numbers are constants after unrolling, so these are
// compile-time values and no divider is built.
template <class C>
struct WindowLane {
    static constexpr bool WIDE = C::SIMD > C::CH;
    static constexpr unsigned pixel(unsigned e) { return WIDE ? e / C::CH : 0; }
    static constexpr unsigned channel(unsigned e) { return WIDE ? e % C::CH : e; }
    static constexpr unsigned dy(unsigned e) { return pixel(e) / C::KW; }
    static constexpr unsigned dx(unsigned e) { return pixel(e) % C::KW; }
};

// Streams each output pixel's KH x KW x CH window, in (ky, kx, c) order, as words of SIMD elements; padding is
// produced on the fly as PAD (the code of a real zero).
//
// Line buffer (declared by the layer, fpgagen.ir.layers.SlidingWindow.memories): ROWS = KH + SH input rows, each
// split cyclically by column into SPLIT memories (SPLIT = KW when a word spans several pixels, SIMD > CH, else 1),
// so bank (row r, column phase p) holds the pixels x = q * SPLIT + p of row r at address q, one whole pixel
// (CH elements) per word. Every cycle each bank is read once at its own address and at most one bank is written:
// one read and one write per bank (simple dual port), whatever the word's KW columns and KH rows.
//
// One flat pipelined loop (no per-row re-entry), ITERATIONS = PRELOAD_WORDS + OH * ROW_ITERATIONS: first the
// rows output row 0 needs are read; then every output row runs ROW_ITERATIONS = max(SH * IW * CH / IN_WORD,
// OW * KH * KW * CH / SIMD) iterations that emit the row's window words (the first OW * WINDOW_WORDS of them) and,
// in parallel, read the rows the next output row needs (all remaining rows on the last). Rows being written are
// never rows in use, so the reads of the line buffer come before its write in the loop body and no dependence
// needs to be waived. Every index is a counter: no division or modulo by a non-power of two at run time.
#ifndef FG_STREAM_LOOPS
// The C model (C-simulation only; tests/test_kernels_stream.py checks it equal to the loop below on every case):
// the whole frame in, as native integers in a frame already surrounded by PAD; window element k of the output
// pixel at (oy, ox) then sits at a fixed offset from the window's top-left element, streamed as the same words in
// the same order.
template <class C>
void sliding_window_model(hls::stream<Vec<typename C::T, C::IN_WORD> > &in,
                          hls::stream<Vec<typename C::T, C::SIMD> > &out) {
    typedef typename C::T T;
    typedef typename Native<T>::type N;
    const unsigned PH = (C::OH - 1) * C::SH + C::KH, PW = (C::OW - 1) * C::SW + C::KW;  // rows/columns windows touch
    const unsigned RUN = C::KW * C::CH, WINDOW = C::KH * RUN, WINDOW_WORDS = WINDOW / C::SIMD;
    const std::vector<N> frame = pop_frame(in, C::IH * C::IW * C::CH / C::IN_WORD);
    std::vector<N> padded(PH * PW * C::CH, N(C::PAD));
    for (unsigned y = 0; y < C::IH && y + C::PT < PH; y++)  // rows and columns no window reads are dropped
        for (unsigned x = 0; x < C::IW && x + C::PL < PW; x++)
            for (unsigned c = 0; c < C::CH; c++)
                padded[((y + C::PT) * PW + x + C::PL) * C::CH + c] = frame[(y * C::IW + x) * C::CH + c];
    std::vector<unsigned> offset(WINDOW);  // (ky, kx, c) order
    for (unsigned k = 0; k < WINDOW; k++) offset[k] = (k / RUN) * PW * C::CH + k % RUN;
    Vec<T, C::SIMD> word;  // constructed once: ap_int construction is not free
    for (unsigned oy = 0; oy < C::OH; oy++) {
        for (unsigned ox = 0; ox < C::OW; ox++) {
            const N *corner = &padded[(oy * C::SH * PW + ox * C::SW) * C::CH];
            for (unsigned w = 0; w < WINDOW_WORDS; w++) {
                for (unsigned e = 0; e < C::SIMD; e++) word.v[e] = corner[offset[w * C::SIMD + e]];
                push(out, word);
            }
        }
    }
}
#endif

template <class C>
void sliding_window(hls::stream<Vec<typename C::T, C::IN_WORD> > &in, hls::stream<Vec<typename C::T, C::SIMD> > &out,
                    typename C::T line_buffer[C::ROWS * C::SPLIT][C::DEPTH][C::CH], typename C::T pixel[1][1][C::CH]) {
#pragma HLS INLINE
#ifndef FG_STREAM_LOOPS
    (void)line_buffer;  // the C model keeps the whole frame instead
    (void)pixel;
    sliding_window_model<C>(in, out);
#else
    typedef typename C::T T;
    const bool WIDE = C::SIMD > C::CH;                      // a word spans PIXELS whole pixels
    const unsigned PIXELS = WIDE ? C::SIMD / C::CH : 1;     // pixels per word
    const unsigned GROUPS = WIDE ? 1 : C::CH / C::SIMD;     // words per pixel
    const unsigned WINDOW_WORDS = C::KH * C::KW * C::CH / C::SIMD;
    const unsigned EMIT = C::OW * WINDOW_WORDS;             // words emitted per output row
    const unsigned STEP_Y = PIXELS / C::KW, STEP_X = PIXELS % C::KW;   // a wide word's first pixel moves by this
    const unsigned SHIFT_Q = C::SW / C::SPLIT, SHIFT_P = C::SW % C::SPLIT;  // next window: x0 + SW, split
    const unsigned IN_PER_PIXEL = C::CH / C::IN_WORD;
    const unsigned ROW_WORDS = C::IW * IN_PER_PIXEL;        // input words per input row
    const unsigned FRAME_WORDS = C::IH * ROW_WORDS;

    // Input side: where the next input word goes.
    // pixel (declared by the layer, registers) assembles IN_PER_PIXEL input words into one whole pixel, which is
    // then written to the line buffer once: no partial-word write, no read-modify-write.
    unsigned words_read = 0, read_limit = C::READ_LIMIT0, next_limit = C::NEXT_LIMIT;
    unsigned sub = 0, wq = 0, wp = 0, wx = 0, wrow = 0;     // word in pixel; column wx = wq * SPLIT + wp; row bank
    // Output side: the current word's first element and its window's position.
    bool emitting = C::PRELOAD_WORDS == 0;
    unsigned it = 0, oy = 0, word = 0, group = 0, ky0 = 0, kx0 = 0;
    int y0 = -C::PT, x0 = -C::PL;                           // top-left input pixel of the window
    int xq = C::X0Q;                                        // x0 = xq * SPLIT + xp, 0 <= xp < SPLIT
    unsigned xp = C::X0P, rbase = C::R0;                    // rbase: row bank of input row y0

window_loop:
    for (unsigned i = 0; i < C::ITERATIONS; i++) {
#pragma HLS PIPELINE II=1
        const bool emit = emitting && it < EMIT;
        const bool take = words_read < read_limit;

        // Read every bank once, each at the address of the window column it holds.
        T px[C::ROWS][C::SPLIT][C::CH];  // the banks' outputs: wires into the lane multiplexers
#pragma HLS ARRAY_PARTITION variable=px complete dim=0
        read_columns:
        for (unsigned cb = 0; cb < C::SPLIT; cb++) {
#pragma HLS UNROLL
            int a = xq + (C::SPLIT == 1 ? int(kx0) : int(cb < xp));
            a = a < 0 ? 0 : (a >= int(C::DEPTH) ? int(C::DEPTH) - 1 : a);  // padding columns: any address
            read_rows:
            for (unsigned rb = 0; rb < C::ROWS; rb++) {
#pragma HLS UNROLL
                read_pixel:
                for (unsigned c = 0; c < C::CH; c++) {
#pragma HLS UNROLL
                    px[rb][cb][c] = line_buffer[rb * C::SPLIT + cb][a][c];
                }
            }
        }
        if (emit) {
            Vec<T, C::SIMD> w;
            lanes:
            for (unsigned e = 0; e < C::SIMD; e++) {
#pragma HLS UNROLL
                typedef WindowLane<C> L;
                const unsigned c = WIDE ? L::channel(e) : group * C::SIMD + e;
                unsigned kx = kx0 + L::dx(e), ky = ky0 + L::dy(e);
                if (kx >= C::KW) {
                    kx -= C::KW;
                    ky++;
                }
                const int iy = y0 + int(ky), ix = x0 + int(kx);
                const bool inside = iy >= 0 && iy < int(C::IH) && ix >= 0 && ix < int(C::IW);
                unsigned rb = rbase + ky;
                if (rb >= C::ROWS) rb -= C::ROWS;
                unsigned cb = C::SPLIT == 1 ? 0 : xp + kx;
                if (cb >= C::SPLIT) cb -= C::SPLIT;
                w.v[e] = inside ? px[rb][cb][c] : T(C::PAD);
            }
            push(out, w);
            // next word of the window
            if (WIDE) {
                kx0 += STEP_X;
                ky0 += STEP_Y;
                if (kx0 >= C::KW) {
                    kx0 -= C::KW;
                    ky0++;
                }
            } else if (++group == GROUPS) {
                group = 0;
                if (++kx0 == C::KW) {
                    kx0 = 0;
                    ky0++;
                }
            }
            if (++word == WINDOW_WORDS) {  // next window: SW columns on
                word = 0;
                group = 0;
                kx0 = 0;
                ky0 = 0;
                x0 += C::SW;
                xq += SHIFT_Q;
                xp += SHIFT_P;
                if (xp >= C::SPLIT) {
                    xp -= C::SPLIT;
                    xq++;
                }
            }
        }

        if (take) {
            const Vec<T, C::IN_WORD> v = pop(in);
            shift_pixel:
            for (unsigned c = 0; c + C::IN_WORD < C::CH; c++) {
#pragma HLS UNROLL
                pixel[0][0][c] = pixel[0][0][c + C::IN_WORD];  // shift down; the new word goes on top
            }
            insert_word:
            for (unsigned e = 0; e < C::IN_WORD; e++) {
#pragma HLS UNROLL
                pixel[0][0][C::CH - C::IN_WORD + e] = v.v[e];
            }
            words_read++;
            if (++sub == IN_PER_PIXEL) {  // a whole pixel: one write of one word
                sub = 0;
                write_pixel:
                for (unsigned c = 0; c < C::CH; c++) {
#pragma HLS UNROLL
                    line_buffer[wrow * C::SPLIT + wp][wq][c] = pixel[0][0][c];
                }
                if (++wp == C::SPLIT) {
                    wp = 0;
                    wq++;
                }
                if (++wx == C::IW) {
                    wx = 0;
                    wq = 0;
                    wp = 0;
                    if (++wrow == C::ROWS) wrow = 0;
                }
            }
        }

        // Phase end: the preload, or one output row.
        if (++it == (emitting ? C::ROW_ITERATIONS : C::PRELOAD_WORDS)) {
            it = 0;
            if (emitting) {
                oy++;
                y0 += C::SH;
                rbase += C::SH;
                if (rbase >= C::ROWS) rbase -= C::ROWS;
                x0 = -C::PL;
                xq = C::X0Q;
                xp = C::X0P;
                next_limit += C::SH * ROW_WORDS;
            }
            emitting = true;
            // Rows to have read by the end of the next output row: those the row after it needs, all on the last.
            read_limit = (oy + 1 < C::OH && next_limit < FRAME_WORDS) ? next_limit : FRAME_WORDS;
        }
        FG_LOOP_TRACE(in, out);
    }
#endif
}

}  // namespace fg
