// fpgagen static kernel library: arithmetic shared by every kind that thresholds (the MVAU, Threshold, XnorMVAU,
// AddStreams, Concat, GlobalAveragePool): ROM reads and multi-threshold comparisons.
#pragma once
#include "fg_common.h"

namespace fg {

// A ROM value as the kernel's arithmetic type. Synthesis stores the ap_int type itself; the C model stores a
// native integer of the same value (FG_ROM_TYPE in fg_common.h) and converts on read.
template <typename T, typename ROM>
inline T rom_value(const ROM &stored) {
    return T(stored);
}

// value >= threshold, in the declared types (synthesis) or the same values as native integers (C model).
template <typename THR, typename V, typename TROM>
inline bool reaches(const V &value, const TROM &threshold) {
#ifdef FG_SYNTHESIS_FORM
    return value >= rom_value<THR>(threshold);
#else
    return value.to_int64() >= (long long)threshold;
#endif
}

// Parallel thresholds: how many of the NT thresholds word[base .. base+NT-1] (one lane's share of the ROM word
// read at the fold's address) the value reaches. Constant indices after unrolling: no multiplexer into the word.
// Every kind stores its thresholds so (fpgagen.ir.kinds.base.threshold_memories): [1][folds][PE*NT], lane p at
// base p*NT.
template <unsigned NT, typename THR, typename V, typename TROM>
inline unsigned count_passed(const V &value, const TROM word[], unsigned base) {
    unsigned passed = 0;
count_thresholds:
    for (unsigned k = 0; k < NT; k++) {
#pragma HLS UNROLL
        passed += reaches<THR>(value, word[base + k]);
    }
    return passed;
}

// Binary search over sorted thresholds, one memory per stage (as finn-rtllib's thresholding). Stage S holds,
// per output fold nf, the 2^S thresholds a search can meet at that stage. A stage's memory has BANKS banks, each
// serving LANES = PE / BANKS lanes (PEs) at offsets lane*NF*2^S (two lanes share a BRAM through its two read
// ports). Lane p reads address ((lane*NF + nf) << S) | j of bank p / LANES, j being the answer's top S bits so
// far, and appends the comparison as the next bit. After the last stage j = #{k : value >= T_k} (the padding
// above the real thresholds never passes).
template <unsigned S, unsigned NF, unsigned PE, typename THR, typename V>
inline unsigned search_passed(const V &, unsigned, unsigned, unsigned j) {
    return j;
}

template <unsigned S, unsigned NF, unsigned PE, typename THR, typename V, typename TROM, unsigned BANKS,
          unsigned DEPTH, typename... Rest>
inline unsigned search_passed(const V &value, unsigned p, unsigned nf, unsigned j,
                              const TROM (&stage)[BANKS][DEPTH][1], const Rest &...rest) {
    static_assert(PE % BANKS == 0 && DEPTH == (PE / BANKS) * (NF << S), "stage memory shape");
    // p is a constant after unrolling, so are its bank and lane (LANES is 1 or 2); nf << S is wiring.
    const unsigned address = (((p % (PE / BANKS)) * NF + nf) << S) | j;
    const unsigned next = (j << 1) | unsigned(reaches<THR>(value, stage[p / (PE / BANKS)][address][0]));
    return search_passed<S + 1, NF, PE, THR>(value, p, nf, next, rest...);
}

}  // namespace fg
