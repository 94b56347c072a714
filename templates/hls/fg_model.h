// fpgagen static kernel library: helpers of the kernels' C models (C-simulation only, never synthesized). A kernel's
// C model pops and pushes the same words as its synthesis loops, in the same order, but computes on whole frames
// with native integers; the kernel unit tests check both forms equal (see FG_SYNTHESIS_FORM in fg_common.h).
#pragma once
#include "fg_common.h"
#ifdef FG_STREAM_LOOPS
#error "fg_model.h is the C model; synthesis and the bounded-FIFO simulation run the kernels' loops"
#else
#include <cstdint>
#include <type_traits>
#include <vector>

namespace fg {

// Bits of T as a signed integer (an unsigned type needs one more).
template <typename T>
struct SignedBits;
template <int W>
struct SignedBits<ap_int<W> > {
    static const unsigned value = W;
};
template <int W>
struct SignedBits<ap_uint<W> > {
    static const unsigned value = W + 1;
};

// The smallest native signed integer that holds every value of T.
template <typename T>
struct Native {
    static const unsigned BITS = SignedBits<T>::value;
    typedef typename std::conditional<
        BITS <= 8, int8_t,
        typename std::conditional<BITS <= 16, int16_t,
                                  typename std::conditional<BITS <= 32, int32_t, int64_t>::type>::type>::type type;
};

// A whole frame of WORDS stream words of N elements, popped into native integers in stream order.
template <typename T, unsigned N>
std::vector<typename Native<T>::type> pop_frame(hls::stream<Vec<T, N> > &in, unsigned words) {
    std::vector<typename Native<T>::type> frame(words * N);
    for (unsigned i = 0; i < words; i++) {
        const Vec<T, N> v = pop(in);
        for (unsigned e = 0; e < N; e++) frame[i * N + e] = typename Native<T>::type(v.v[e].to_int64());
    }
    return frame;
}

}  // namespace fg
#endif
