// Boxes and dense float volumes in (z, y, x) order.
//
// Every array the core handles is a 3D volume; 2D data is a volume with z = 1.
// A Volume remembers the box it covers in the coordinates of the raw input, so that
// separable passes can be chained on boxes of different sizes without index juggling.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

namespace ilb {

using Index = std::ptrdiff_t;
using Coord = std::array<Index, 3>;

struct Box {
    Coord lo{0, 0, 0};
    Coord hi{0, 0, 0};

    Index extent(int axis) const { return hi[axis] - lo[axis]; }
    Index size() const { return extent(0) * extent(1) * extent(2); }
    bool contains(const Box& o) const {
        for (int a = 0; a < 3; ++a)
            if (o.lo[a] < lo[a] || o.hi[a] > hi[a]) return false;
        return true;
    }
    // This box grown by r[a] on both sides of every axis, then clipped to `limit`.
    Box grown(const Coord& r, const Box& limit) const {
        Box b;
        for (int a = 0; a < 3; ++a) {
            b.lo[a] = std::max(lo[a] - r[a], limit.lo[a]);
            b.hi[a] = std::min(hi[a] + r[a], limit.hi[a]);
        }
        return b;
    }
    // The same box with axis `axis` replaced by the range of `o`.
    Box with_axis(int axis, const Box& o) const {
        Box b = *this;
        b.lo[axis] = o.lo[axis];
        b.hi[axis] = o.hi[axis];
        return b;
    }
};

struct Volume {
    Box box;
    std::vector<float> data;

    Volume() = default;
    explicit Volume(const Box& b) : box(b), data(static_cast<std::size_t>(b.size())) {}

    Index stride(int axis) const {
        if (axis == 2) return 1;
        if (axis == 1) return box.extent(2);
        return box.extent(1) * box.extent(2);
    }
    float* row(Index z, Index y) {
        return data.data() + ((z - box.lo[0]) * box.extent(1) + (y - box.lo[1])) * box.extent(2);
    }
    const float* row(Index z, Index y) const {
        return data.data() + ((z - box.lo[0]) * box.extent(1) + (y - box.lo[1])) * box.extent(2);
    }
};

// Mirror an index into [lo, hi) the way vigra's BORDER_TREATMENT_REFLECT does:
// x[lo - k] = x[lo + k], x[hi - 1 + k] = x[hi - 1 - k] (the edge sample is not repeated).
inline Index reflect(Index i, Index lo, Index hi) {
    if (i < lo) return 2 * lo - i;
    if (i >= hi) return 2 * (hi - 1) - i;
    return i;
}

}  // namespace ilb
