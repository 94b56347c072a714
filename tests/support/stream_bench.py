"""The g++ testbench shared by the one-port streaming kernels' unit tests (test_kernels_stream, test_letterbox):
per case it reads frames of words, runs the layer and prints each frame's per-iteration pop/push trace and output
words; ``%INCLUDES%`` and ``%DISPATCH%`` are filled in by the test."""

TESTBENCH = r"""
#include <cstdio>
#include <vector>
static std::vector<int> fg_trace;  // per loop iteration: 1 = popped, 2 = pushed
static size_t fg_in_before = 0, fg_out_before = 0;
#define FG_LOOP_TRACE(in, out)                                                                              \
    do {                                                                                                    \
        fg_trace.push_back((in.size() < fg_in_before) + 2 * (out.size() > fg_out_before));                  \
        fg_in_before = in.size();                                                                           \
        fg_out_before = out.size();                                                                         \
    } while (0)
#include "fg_common.h"
#include "fg_sliding_window.h"
#include "fg_maxpool.h"
#include "fg_width_converter.h"
#include "fg_mvau.h"
%INCLUDES%
thread_local const char *fg::current_layer = "";

template <class TI, unsigned NI, class TO, unsigned NO>
static int run(void (*kernel)(hls::stream<fg::Vec<TI, NI> > &, hls::stream<fg::Vec<TO, NO> > &), FILE *f) {
    unsigned words, frames;
    if (fscanf(f, "%u %u", &words, &frames) != 2) return 3;
    for (unsigned fr = 0; fr < frames; fr++) {
        hls::stream<fg::Vec<TI, NI> > in("in");
        hls::stream<fg::Vec<TO, NO> > out("out");
        for (unsigned i = 0; i < words; i++) {
            fg::Vec<TI, NI> w;
            for (unsigned e = 0; e < NI; e++) {
                long long v;
                if (fscanf(f, "%lld", &v) != 1) return 3;
                w.v[e] = v;
            }
            in.write(w);
        }
        fg_trace.clear();
        fg_in_before = in.size();
        fg_out_before = 0;
        kernel(in, out);
        if (!in.empty()) return 4;
        printf("trace");
        for (int t : fg_trace) printf(" %d", t);
        printf("\nout");
        while (!out.empty()) {
            const fg::Vec<TO, NO> w = out.read();
            for (unsigned e = 0; e < NO; e++) printf(" %lld", (long long)w.v[e].to_int64());
        }
        printf("\n");
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    const std::string name = argv[1];
    FILE *f = fopen(argv[2], "r");
    if (!f) return 2;
%DISPATCH%
    return 2;
}
"""
