// fpgagen static kernel library: multi-threshold requantization of one lane, shared by the graph kinds that
// requantize codes (Concat, AddStreams). The thresholds of a channel are sorted; the count of those the value
// reaches is its output code minus the base.
#pragma once
#include "fg_common.h"

namespace fg {

// #{k : value >= row[k]}, NT comparators side by side (one level each), in the stored type THR.
template <unsigned NT, typename THR, typename TROM, typename V>
inline unsigned thresholds_reached(const V &value, const TROM row[NT]) {
#pragma HLS INLINE
    unsigned reached = 0;
thresholds_levels:
    for (unsigned k = 0; k < NT; k++) {
#pragma HLS UNROLL
        reached += (value >= THR(row[k]));
    }
    return reached;
}

}  // namespace fg
