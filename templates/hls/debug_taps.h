// fpgagen debug taps (C-simulation only, never synthesized; `fpgagen debug`, fpgagen/debug/taps.py).
// Force-included ahead of csim_bridge.cpp with -DFG_DEBUG_TAPS, so the project's own sources (top.cpp, layers/,
// the kernels, hand edits included) compile unchanged: every stream of fg::Vec words (the inter-layer streams)
// becomes this recording stream, which keeps a copy of each element written to it, per stream name, in order.
// The AXI and transfer-end streams are not fg::Vec streams and stay the Xilinx model's.
#pragma once
#ifdef __SYNTHESIS__
#error "the debug taps are for C-simulation only"
#endif
#include <fg_common.h>

#include <cstdint>
#include <cstring>
#include <deque>
#include <map>
#include <string>
#include <vector>

namespace fg {
struct TapLog {
    std::vector<std::string> names;           // in order of first write
    std::deque<std::vector<int64_t> > data;  // elements per name, every frame of the run (a deque: a stream
                                             // keeps a pointer to its vector while others are added)
    std::map<std::string, size_t> index;

    std::vector<int64_t> &of(const std::string &name) {
        std::map<std::string, size_t>::iterator it = index.find(name);
        if (it != index.end()) return data[it->second];
        index[name] = names.size();
        names.push_back(name);
        data.push_back(std::vector<int64_t>());
        return data.back();
    }
};

inline TapLog &tap_log() {
    static TapLog log;
    return log;
}
}  // namespace fg

namespace hls {
template <typename T, unsigned N>
class stream<fg::Vec<T, N> > {
    std::string name_;
    std::deque<fg::Vec<T, N> > data_;
    std::vector<int64_t> *tap_;

    stream(const stream &);
    stream &operator=(const stream &);

   public:
    stream() : name_("unnamed"), tap_(&fg::tap_log().of("unnamed")) {}
    stream(const std::string &name) : name_(name), tap_(&fg::tap_log().of(name)) {}
    stream(const char *name) : name_(name), tap_(&fg::tap_log().of(name)) {}
    bool empty() const { return data_.empty(); }
    bool full() const { return false; }
    size_t size() const { return data_.size(); }
    fg::Vec<T, N> read() {
        if (data_.empty()) throw fg::SimError("stream '" + name_ + "' read while empty (debug taps)");
        fg::Vec<T, N> word = data_.front();
        data_.pop_front();
        return word;
    }
    void read(fg::Vec<T, N> &word) { word = read(); }
    void write(const fg::Vec<T, N> &word) {
        for (unsigned i = 0; i < N; i++) tap_->push_back((int64_t)word.v[i]);
        data_.push_back(word);
    }
    void operator>>(fg::Vec<T, N> &word) { word = read(); }
    void operator<<(const fg::Vec<T, N> &word) { write(word); }
};
}  // namespace hls

extern "C" {
int fg_tap_count() { return (int)fg::tap_log().names.size(); }
const char *fg_tap_name(int i) { return fg::tap_log().names[i].c_str(); }
long long fg_tap_size(int i) { return (long long)fg::tap_log().data[i].size(); }
void fg_tap_copy(int i, int64_t *out) {
    const std::vector<int64_t> &d = fg::tap_log().data[i];
    if (!d.empty()) std::memcpy(out, &d[0], d.size() * sizeof(int64_t));
}
void fg_tap_clear() {
    fg::TapLog &log = fg::tap_log();
    for (size_t i = 0; i < log.data.size(); i++) log.data[i].clear();
}
}
