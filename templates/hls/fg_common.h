// fpgagen common definitions, shared by every generated project (a static header: templates/hls/fg_common.h).
#pragma once
#include <ap_int.h>
#include <hls_stream.h>
// --- AXI-Stream section (the top's DMA interface) ---
// ap_axiu comes from the Xilinx headers: always in synthesis, and in C-simulation whenever they are on the
// include path (a Vitis HLS install). The ap_types inside the hls4ml wheel lack ap_axi_sdata.h; only then the C
// model uses a mirror with the same field names and widths.
#if defined(__SYNTHESIS__) || (defined(__has_include) && __has_include(<ap_axi_sdata.h>))
#include <ap_axi_sdata.h>
#define FG_HAVE_AP_AXIU 1
#endif
// --- end of the AXI-Stream section ---
// The kernels' two forms. FG_SYNTHESIS_FORM is the code Vitis HLS compiles: the flat, counter-driven pipelined
// loops, the DSP and packed dot products, ap_int ROMs. Synthesis always takes it; g++ takes it with
// -DFG_CSIM_SYNTHESIS_FORM, as the kernel unit tests do to check it equal to the C model on every case. Otherwise
// C-simulation runs the C model: the same words in and out, computed in the clearest fast form. FG_STREAM_LOOPS
// (the synthesis form, and the bounded-FIFO simulation, whose deadlock check needs the loops' pop/push order)
// selects the pipelined loops; the arithmetic inside them follows FG_SYNTHESIS_FORM.
#if defined(__SYNTHESIS__) || defined(FG_CSIM_SYNTHESIS_FORM)
#define FG_SYNTHESIS_FORM 1
#endif
#if defined(FG_SYNTHESIS_FORM) || defined(FG_SIM_BOUNDED_FIFOS)
#define FG_STREAM_LOOPS 1
#endif
#ifndef __SYNTHESIS__
#include <stdexcept>
#include <string>
#ifdef FG_SIM_BOUNDED_FIFOS
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>
#endif
#include <vector>
#endif

namespace fg {

// One stream word: N integer elements that move together in one clock cycle.
template <typename T, unsigned N>
struct Vec {
    T v[N];
};

// --- AXI-Stream section (the top's DMA interface) ---
// AXI-Stream word with TLAST, as the DMA engine needs it.
#ifdef FG_HAVE_AP_AXIU
template <int W>
using AxisWord = ap_axiu<W, 0, 0, 0>;
#else
template <int W>
struct AxisWord {
    ap_uint<W> data;
    ap_uint<(W + 7) / 8> keep;
    ap_uint<(W + 7) / 8> strb;
    ap_uint<1> last;
};
#endif
// --- end of the AXI-Stream section ---

// Weight and threshold ROMs. HLS sizes a ROM from its element type, so synthesis stores ap_int<W>. g++ cannot
// constant-initialise ap_int (no constexpr constructor) and takes minutes and gigabytes on large initialiser
// lists, so the C model stores the same values in a native integer. Kernels convert on read, so every
// multiply and accumulate uses the same ap_int types in simulation and in hardware.
#ifdef FG_SYNTHESIS_FORM
#define FG_ROM_TYPE(hls_type, native_type) hls_type
#else
#define FG_ROM_TYPE(hls_type, native_type) native_type
#endif

#ifndef __SYNTHESIS__
// C-simulation normally runs the DATAFLOW processes one after another, so a read from an empty stream or a
// stream left holding data is always a bug: fail loudly instead of the header's warning and default value.
struct SimError : std::runtime_error {
    using std::runtime_error::runtime_error;
};
extern thread_local const char *current_layer;
#define FG_SIM_ENTER(name) fg::current_layer = name
#define FG_SIM_EXPECT_DRAINED(stream, name)                                                               \
    if (!(stream).empty())                                                                                \
    throw fg::SimError(std::string("stream '") + name + "' still holds " + std::to_string((stream).size()) + \
                       " words after the frame")
#else
#define FG_SIM_ENTER(name)
#define FG_SIM_EXPECT_DRAINED(stream, name)
#endif

#if defined(FG_SIM_BOUNDED_FIFOS) && !defined(__SYNTHESIS__)
// Bounded-FIFO simulation: every DATAFLOW process runs on its own thread and each internal stream holds at
// most its #pragma HLS STREAM depth, as in hardware. A write to a full stream and a read from an empty one
// block; when every live process is blocked the design has deadlocked, and the simulation says where.
struct BoundedSim {
    std::mutex lock;
    std::condition_variable changed;
    std::map<const void *, std::pair<unsigned, const char *> > depth;  // stream -> (depth, name)
    unsigned live = 0;        // processes still running
    unsigned blocked = 0;     // processes that found no progress since they last looked
    unsigned long moves = 0;  // successful reads and writes so far
    std::string deadlock;

    // Called with the lock held by a process that cannot proceed. Deadlock means every live process has
    // looked again after the last read or write anywhere and still cannot proceed.
    void wait(std::unique_lock<std::mutex> &held, const std::string &why) {
        if (deadlock.empty() && ++blocked == live) deadlock = why;
        const unsigned long seen = moves;
        changed.wait(held, [&] { return moves != seen || !deadlock.empty(); });
        if (!deadlock.empty()) {
            changed.notify_all();
            throw SimError("deadlock with bounded FIFOs: " + deadlock);
        }
    }

    // Any read, write or finished process may unblock the others: they all look again and re-count.
    void progress() {
        moves++;
        blocked = 0;
        changed.notify_all();
    }

    void leave() {
        std::lock_guard<std::mutex> held(lock);
        live--;
        progress();
    }
};
extern BoundedSim *bounded_sim;

template <typename T>
T pop(hls::stream<T> &s) {
    std::unique_lock<std::mutex> held(bounded_sim->lock);
    while (s.empty()) bounded_sim->wait(held, std::string(current_layer) + " waits on an empty stream");
    T value = s.read();
    bounded_sim->progress();
    return value;
}

template <typename T>
void push(hls::stream<T> &s, const T &value) {
    std::unique_lock<std::mutex> held(bounded_sim->lock);
    auto it = bounded_sim->depth.find(&s);
    while (it != bounded_sim->depth.end() && s.size() >= it->second.first)
        bounded_sim->wait(held, std::string(current_layer) + " waits on full stream '" + it->second.second +
                                    "' (depth " + std::to_string(it->second.first) + ")");
    s.write(value);
    bounded_sim->progress();
}
#else
template <typename T>
T pop(hls::stream<T> &s) {
#ifndef __SYNTHESIS__
    if (s.empty()) throw SimError(std::string("stream read while empty in layer ") + current_layer);
#endif
    return s.read();
}

template <typename T>
void push(hls::stream<T> &s, const T &value) {
    s.write(value);
}
#endif

// --- AXI-Stream section (the top's DMA interface) ---
// A frame on the wire is its elements in stream order, element e at bit e*B of a little-endian bit stream,
// zero-padded at the end to a whole AXI word (fpgagen/packing.py writes and reads the same layout). The adapters
// below convert between that and the first/last layer's stream words of N elements: one pipelined loop each,
// at most one AXI word and one stream word per cycle, through a bit buffer of W + N*B bits.

// Several frames per DMA transfer: frame boundaries are by count (AXI_WORDS words a frame) and TLAST marks the
// transfer's end only, so one transfer may carry N whole frames, TLAST on the last word of the N-th. The input
// adapter tells the output adapter, through the one-bit `transfer_end` channel (one flag per frame), whether the
// frame closed its transfer; the output side puts TLAST on that frame's last word only, so one S2MM transfer of N
// frames receives them all and then completes.
// The input adapter's per-frame status word (a one-word packet with TLAST on the status port): bit 0 = TLAST came
// before the frame's last word (an aborted or short transfer: the rest of the frame is zero-filled, so the next
// transfer starts a new frame), bit 1 = no TLAST on the frame's last word (the transfer goes on with the next
// frame: expected on every frame of a transfer but its last; on the last one it means a long transfer, whose extra
// words then form a short frame, or a missing TLAST, which loses nothing because frames are counted), bits 31..2 =
// how many words were zero-filled (saturating). No word is ever dropped, so no error shifts the frames after it.
enum : unsigned { FRAME_SHORT = 1u, FRAME_CONTINUES = 2u };

inline AxisWord<32> status_word(bool short_frame, bool continues, unsigned count) {
    AxisWord<32> s;
    const unsigned saturated = count > 0x3FFFFFFFu ? 0x3FFFFFFFu : count;
    s.data = (ap_uint<32>(saturated) << 2) | (continues ? FRAME_CONTINUES : 0u) | (short_frame ? FRAME_SHORT : 0u);
    s.keep = -1;
    s.strb = -1;
    s.last = 1;
    return s;
}

// AXI words of packed elements -> stream words of N elements of B bits. TRIPS = max(AXI_WORDS, STREAM_WORDS)
// iterations always suffice: a word is read whenever the buffer holds less than a stream word. One frame per call;
// a TLAST on its last word (or before it) ends the transfer, which the flag on `transfer_end` passes on.
template <typename T, unsigned N, unsigned B, int W, unsigned AXI_WORDS, unsigned STREAM_WORDS>
void axis_to_stream(hls::stream<AxisWord<W> > &in, hls::stream<Vec<T, N> > &out,
                    hls::stream<AxisWord<32> > &status, hls::stream<ap_uint<1> > &transfer_end) {
    const unsigned NB = N * B;
    const unsigned TRIPS = AXI_WORDS > STREAM_WORDS ? AXI_WORDS : STREAM_WORDS;
    ap_uint<W + NB> buf = 0;
    ap_uint<16> fill = 0;  // valid bits in buf
    unsigned reads = 0, filled = 0;
    bool ended = false, early = false;
axis_unpack:
    for (unsigned i = 0; i < TRIPS; i++) {
#pragma HLS PIPELINE II=1
        if (fill < NB && reads < AXI_WORDS) {
            ap_uint<W> data = 0;
            if (!ended) {
                const AxisWord<W> word = pop(in);
                data = word.data;
                ended = word.last;
                early = word.last && reads + 1 < AXI_WORDS;
            } else {
                filled++;  // after an early TLAST: zero words complete the frame
            }
            buf |= ap_uint<W + NB>(data) << fill;
            fill += W;
            reads++;
        }
        if (fill >= NB) {
            Vec<T, N> word;
        axis_unpack_elements:
            for (unsigned e = 0; e < N; e++) {
#pragma HLS UNROLL
                word.v[e] = buf.range(e * B + B - 1, e * B);
            }
            push(out, word);
            buf >>= NB;
            fill -= NB;
        }
    }
    push(transfer_end, ap_uint<1>(ended));
    // A blocking write: no status word is ever dropped. The host reads one per frame (the status FIFO holds 512);
    // one that never reads stalls the accelerator there, visibly, instead of losing words silently.
    status.write(status_word(early, !ended, filled));
}

// Stream words of N elements of B bits -> packed AXI words, TLAST on the frame's last word when the frame closed
// its input transfer (the flag on `transfer_end`, read only when that word is written: by then the input adapter
// has finished the frame, so the read never waits on data still upstream). One more trip than
// max(AXI_WORDS, STREAM_WORDS) flushes a last, partly filled AXI word. With several outputs each is one segment
// of the frame, written by one call in output order: LAST_SEGMENT = false leaves TLAST off its last word and
// the flag to the last segment.
template <typename T, unsigned N, unsigned B, int W, unsigned STREAM_WORDS, unsigned AXI_WORDS,
          bool LAST_SEGMENT = true>
void stream_to_axis(hls::stream<Vec<T, N> > &in, hls::stream<AxisWord<W> > &out,
                    hls::stream<ap_uint<1> > &transfer_end) {
    const unsigned NB = N * B;
    const unsigned TRIPS = (AXI_WORDS > STREAM_WORDS ? AXI_WORDS : STREAM_WORDS) + 1;
    ap_uint<W + NB> buf = 0;
    ap_uint<16> fill = 0;
    unsigned pops = 0, sent = 0;
axis_pack:
    for (unsigned i = 0; i < TRIPS; i++) {
#pragma HLS PIPELINE II=1
        if (fill < W && pops < STREAM_WORDS) {
            const Vec<T, N> word = pop(in);
            ap_uint<NB> bits;
        axis_pack_elements:
            for (unsigned e = 0; e < N; e++) {
#pragma HLS UNROLL
                bits.range(e * B + B - 1, e * B) = ap_uint<B>(word.v[e]);
            }
            buf |= ap_uint<W + NB>(bits) << fill;
            fill += NB;
            pops++;
        }
        if (sent < AXI_WORDS && (fill >= W || (pops == STREAM_WORDS && fill > 0))) {
            AxisWord<W> axi;
            axi.data = buf.range(W - 1, 0);
            axi.keep = -1;
            axi.strb = -1;
            axi.last = LAST_SEGMENT && sent == AXI_WORDS - 1 ? bool(pop(transfer_end)) : false;
            out.write(axi);
            buf >>= W;
            fill = fill > W ? ap_uint<16>(fill - W) : ap_uint<16>(0);
            sent++;
        }
    }
}
// --- end of the AXI-Stream section ---

}  // namespace fg
