// Separable convolution passes over boxes, with vigra's reflective border (the vigra engine).
//
// A pass along one axis produces values on `out_box`; it reads the input along that axis
// on out_box +- radius and mirrors at the input's own bounds. Callers make sure that the
// input's bounds are either real image bounds or far enough away (the halo), which is what
// makes blockwise results equal whole-image results.
#pragma once

#include <cstdint>
#include <vector>

#include "box.hpp"
#include "kernels.hpp"

namespace ilb {

// Kernel taps reversed, so that out[i] = sum_j kf[j] * line[i + j] with line[0] = in[i - r]:
// the same terms, summed in the same order, as vigra's convolveLine.
template <class K>
std::vector<K> flipped_taps(const Kernel1D& k) {
    std::vector<K> f(k.taps.size());
    for (std::size_t j = 0; j < f.size(); ++j) f[j] = static_cast<K>(k.taps[k.taps.size() - 1 - j]);
    return f;
}

// Throws vigra's error when mirroring would have to leave the line a second time.
inline void check_line(Index out_lo, Index out_hi, Index r, Index in_lo, Index in_hi) {
    const Index len = in_hi - in_lo;
    if (out_lo - r < in_lo - (len - 1) || out_hi - 1 + r > in_hi - 1 + (len - 1))
        throw std::invalid_argument("image too small for sigma: kernel of radius " + std::to_string(r) +
                                    " is longer than a line of " + std::to_string(len) + " pixels");
}

// One output row of n values from 2r+1 input rows: acc[i] = sum_j kf[j] * rows[j][i], in
// the accumulator type Acc (double for vigra's smoothing kernels, float for derivative ones).
// Term is the type each product is formed in before it is added (double for VectorDouble).
template <class Acc, class RowAt, class Term = Acc>
inline void accumulate_rows(RowAt row_at, const std::vector<Term>& kf, Index n, float* out, std::vector<Acc>& acc) {
    acc.assign(static_cast<std::size_t>(n), Acc(0));
    Acc* a = acc.data();
    for (std::size_t j = 0; j < kf.size(); ++j) {
        const Term w = kf[j];
        const float* src = row_at(static_cast<Index>(j));
        for (Index i = 0; i < n; ++i) a[i] += static_cast<Acc>(w * static_cast<Term>(src[i]));
    }
    for (Index i = 0; i < n; ++i) out[i] = static_cast<float>(a[i]);
}

template <class Acc, class Getter, class Term = Acc>
inline void convolve_line_x(Getter get, Index in_lo, Index in_hi, float* out, Index out_lo, Index out_hi,
                            const std::vector<Term>& kf, std::vector<float>& buf, std::vector<Acc>& acc) {
    const Index r = static_cast<Index>(kf.size() / 2);
    const Index n = out_hi - out_lo;
    buf.resize(static_cast<std::size_t>(n + 2 * r));
    for (Index j = 0; j < n + 2 * r; ++j) buf[static_cast<std::size_t>(j)] = get(reflect(out_lo - r + j, in_lo, in_hi));
    const float* b = buf.data();
    accumulate_rows<Acc>([&](Index j) { return b + j; }, kf, n, out, acc);

}

template <class Acc, class Term = Acc>
void convolve_axis_impl(const Volume& in, const Kernel1D& k, int axis, const Box& out_box, Volume& out) {
    const auto kf = flipped_taps<Term>(k);
    const Index r = k.radius;
    const Index nx = out_box.extent(2);
    const Index xoff = out_box.lo[2] - in.box.lo[2];
    std::vector<Acc> acc;
    if (axis == 2) {
        std::vector<float> buf;
        for (Index z = out_box.lo[0]; z < out_box.hi[0]; ++z)
            for (Index y = out_box.lo[1]; y < out_box.hi[1]; ++y) {
                const float* line = in.row(z, y) - in.box.lo[2];
                convolve_line_x<Acc>([&](Index x) { return line[x]; }, in.box.lo[2], in.box.hi[2], out.row(z, y),
                                     out_box.lo[2], out_box.hi[2], kf, buf, acc);
            }
        return;
    }
    for (Index z = out_box.lo[0]; z < out_box.hi[0]; ++z)
        for (Index y = out_box.lo[1]; y < out_box.hi[1]; ++y) {
            const Index p = axis == 0 ? z : y;
            accumulate_rows<Acc>(
                [&](Index j) {
                    const Index q = reflect(p - r + j, in.box.lo[axis], in.box.hi[axis]);
                    return (axis == 0 ? in.row(q, y) : in.row(z, q)) + xoff;
                },
                kf, nx, out.row(z, y), acc);
        }
}

// A pass along `axis` (0 = z, 1 = y, 2 = x) on a float volume.
inline Volume convolve_axis(const Volume& in, const Kernel1D& k, int axis, const Box& out_box) {
    check_line(out_box.lo[axis], out_box.hi[axis], k.radius, in.box.lo[axis], in.box.hi[axis]);
    Volume out(out_box);
    if (k.precision == Precision::Double) convolve_axis_impl<double>(in, k, axis, out_box, out);
    else if (k.precision == Precision::VectorDouble) convolve_axis_impl<float, double>(in, k, axis, out_box, out);
    else convolve_axis_impl<float>(in, k, axis, out_box, out);
    return out;
}

}  // namespace ilb
