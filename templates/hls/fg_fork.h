// fpgagen static kernel library: StreamFork (fpgagen/ir/kinds/fork.py). One input stream duplicated to K.
#pragma once
#include "fg_common.h"

namespace fg {

// Push one word to every stream of the pack (expanded at compile time: one push per output, no recursion at
// run time).
template <typename W>
inline void push_each(const W &) {}

template <typename W, typename S, typename... Rest>
inline void push_each(const W &word, S &first, Rest &... rest) {
#pragma HLS INLINE
    push(first, word);
    push_each(word, rest...);
}

// C: T (element type), PE (elements per word), WORDS (words per frame), K (outputs).
template <class C, typename... Outs>
void stream_fork(hls::stream<Vec<typename C::T, C::PE> > &in, Outs &... outs) {
    static_assert(sizeof...(Outs) == C::K, "one output stream per fork branch");
fork_words:
    for (unsigned i = 0; i < C::WORDS; i++) {
#pragma HLS PIPELINE II=1
        const Vec<typename C::T, C::PE> word = pop(in);
        push_each(word, outs...);
    }
}

}  // namespace fg
