// The fastfilters engine: ilastik >= 1.3's features, bit for bit as the fastfilters library
// (github ilastik/fastfilters, GCC -Ofast AVX/FMA build, as ilastik's packages shipped it)
// computes them when lazyflow calls it on the whole image (ILASTIK-SEMANTICS.md 3.10,
// FASTFILTERS-OFAST.md).
//
// In that library a pixel's last bits depend on where it sits: in the x pass on its position in
// its line (left border, prefix, AVX body, tail, right border run different float orders), in
// the combine steps on its index in the flat image (the last n mod 8 elements take scalar or
// rsqrt-based routes). This engine gives every pixel the arithmetic of its position in the whole
// image, computed from its image coordinates and the image shape, so any block, halo or ROI
// equals the whole-image result bit for bit. Passes that several features share (the same
// kernels on the same input) are computed once: that changes no bit, only the time.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <stdexcept>
#include <tuple>
#include <vector>

#include "fastfilters_simd.hpp"
#include "ilastikbackend/engine.hpp"

namespace ilb {
namespace {

// ---------------------------------------------------------------------------------------------
// Kernels, built as fir_kernel.c builds them: double arithmetic, half kernel c[0..r] stored as
// float and re-rounded after each step.

struct FirKernel {
    int radius = 0;
    bool symmetric = true;  // orders 0 and 2; order 1 is antisymmetric
    std::vector<float> c;   // c[0..radius]
};

// floor(window * sigma + 0.5) with a window (lazyflow always passes one), else ceil((3 + order/2) sigma).
int fir_radius(double sigma, float window, int order = 0) {
    if (std::fabs(sigma) < 1e-6) return 0;
    if (window > 0) return static_cast<int>(std::floor(static_cast<double>(window) * sigma + 0.5));
    return static_cast<int>(std::ceil((3.0 + 0.5 * order) * sigma));
}

FirKernel fir_kernel(int order, double sigma, float window) {
    if (!(sigma > 0.0) || order < 0 || order > 2) throw std::invalid_argument("invalid Gaussian kernel");
    FirKernel k;
    k.radius = fir_radius(sigma, window, order);
    k.symmetric = order != 1;
    const int r = k.radius;
    k.c.assign(static_cast<std::size_t>(r) + 1, 0.0f);
    const double sigma2 = -0.5 / sigma / sigma;
    const double norm = order == 0 ? 1.0 / (std::sqrt(2.0 * M_PI) * sigma) : -1.0 / (std::sqrt(2.0 * M_PI) * std::pow(sigma, 3));
    for (int x = 0; x <= r; ++x) {
        const double g = norm * std::exp(static_cast<double>(x * x) * sigma2);
        const double xs = static_cast<double>(x) / sigma;
        k.c[x] = static_cast<float>(order == 0 ? g : order == 1 ? static_cast<double>(x) * g : (1.0 - xs * xs) * g);
    }
    if (order == 2) {  // remove the DC the truncation leaves
        double dc = k.c[0];
        for (int x = 1; x <= r; ++x) dc += static_cast<double>(2.0f * k.c[x]);
        dc /= 2.0 * r + 1.0;
        for (int x = 0; x <= r; ++x) k.c[x] = static_cast<float>(static_cast<double>(k.c[x]) - dc);
    }
    double sum = 0.0;
    if (order == 0) {
        sum = k.c[0];
        for (int x = 1; x <= r; ++x) sum += static_cast<double>(2.0f * k.c[x]);
    } else {
        const double faculty = order == 2 ? 2.0 : 1.0;
        const float sign = k.symmetric ? 1.0f : -1.0f;
        for (int x = 1; x <= r; ++x) {
            sum += static_cast<double>(k.c[x]) * std::pow(-static_cast<double>(x), order) / faculty;
            sum += static_cast<double>(sign * k.c[x]) * std::pow(static_cast<double>(x), order) / faculty;
        }
    }
    for (int x = 0; x <= r; ++x) k.c[x] = static_cast<float>(static_cast<double>(k.c[x]) / sum);
    if (!k.symmetric)
        for (float& v : k.c) v = -v;
    // A radius-0 kernel is the identity in fastfilters whatever its (possibly NaN) tap.
    return k;
}

// ---------------------------------------------------------------------------------------------
// Scratch volumes. A fresh allocation of a few MB costs more in page faults than the pass that
// fills it, so float buffers are recycled per thread (and trimmed after each call).

class ScratchPool {
   public:
    static ScratchPool& local() {
        thread_local ScratchPool pool;
        return pool;
    }
    std::unique_ptr<float[]> take(std::size_t n, std::size_t* cap) {
        std::size_t best = free_.size();
        for (std::size_t i = 0; i < free_.size(); ++i)
            if (free_[i].cap >= n && (best == free_.size() || free_[i].cap < free_[best].cap)) best = i;
        if (best == free_.size()) {
            *cap = n;
            return std::unique_ptr<float[]>(new float[n]);
        }
        Entry e = std::move(free_[best]);
        free_.erase(free_.begin() + static_cast<std::ptrdiff_t>(best));
        held_ -= e.cap;
        *cap = e.cap;
        return std::move(e.buf);
    }
    void give(std::unique_ptr<float[]> buf, std::size_t cap) {
        held_ += cap;
        free_.push_back(Entry{std::move(buf), cap});
    }
    // Keeps at most `floats` floats of free buffers, the largest first.
    void trim(std::size_t floats) {
        std::sort(free_.begin(), free_.end(), [](const Entry& a, const Entry& b) { return a.cap > b.cap; });
        std::size_t kept = 0, i = 0;
        for (; i < free_.size() && kept + free_[i].cap <= floats; ++i) kept += free_[i].cap;
        free_.resize(i);
        held_ = kept;
    }

   private:
    struct Entry {
        std::unique_ptr<float[]> buf;
        std::size_t cap;
    };
    std::vector<Entry> free_;
    std::size_t held_ = 0;
};

// A float volume on a box of image coordinates, its storage from the thread's pool.
class Scratch {
   public:
    Scratch() = default;
    explicit Scratch(const Box& b) : box(b) {
        const std::size_t n = static_cast<std::size_t>(std::max<Index>(b.size(), 1));
        buf_ = ScratchPool::local().take(n, &cap_);
    }
    Scratch(Scratch&&) = default;
    Scratch& operator=(Scratch&& o) noexcept {
        release();
        box = o.box;
        buf_ = std::move(o.buf_);
        cap_ = o.cap_;
        return *this;
    }
    ~Scratch() { release(); }

    float* data() { return buf_.get(); }
    const float* data() const { return buf_.get(); }
    float* row(Index z, Index y) { return data() + ((z - box.lo[0]) * box.extent(1) + (y - box.lo[1])) * box.extent(2); }
    const float* row(Index z, Index y) const {
        return data() + ((z - box.lo[0]) * box.extent(1) + (y - box.lo[1])) * box.extent(2);
    }

    Box box;

   private:
    void release() {
        if (buf_) ScratchPool::local().give(std::move(buf_), cap_);
    }
    std::unique_ptr<float[]> buf_;
    std::size_t cap_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Separable passes on boxes of image coordinates, mirrored at the image's borders.

inline Index mirror(Index i, Index n) { return i < 0 ? -i : (i >= n ? 2 * (n - 1) - i : i); }

void require_inside(const Box& need, const Box& have) {
    if (!have.contains(need)) throw std::logic_error("fastfilters engine: a pass reads outside its input (halo too small)");
}

template <class Src>
Scratch copy_box(const Src& src, const Box& box) {
    require_inside(box, src.box);
    Scratch out(box);
    for (Index z = box.lo[0]; z < box.hi[0]; ++z)
        for (Index y = box.lo[1]; y < box.hi[1]; ++y)
            std::copy_n(src.row(z, y) + (box.lo[2] - src.box.lo[2]), box.extent(2), out.row(z, y));
    return out;
}

// x pass onto `box`: every output pixel with the float order of its position in its image line.
template <class Src>
Scratch xpass(const Src& src, const FirKernel& k, Index n, const Box& box) {
    if (k.radius == 0) return copy_box(src, box);
    const Index r = k.radius;
    const Index x0 = box.lo[2], x1 = box.hi[2];
    require_inside(box.grown({0, 0, r}, Box{{box.lo[0], box.lo[1], 0}, {box.hi[0], box.hi[1], n}}), src.box);
    Scratch out(box);
    const auto& K = ffsimd::kernels();
    const Index sx0 = src.box.lo[2], sx1 = src.box.hi[2];
    const bool direct = x0 - r >= sx0 && x1 + r <= sx1;
    std::vector<float> line(direct ? 0 : static_cast<std::size_t>(x1 - x0 + 2 * r));
    for (Index z = box.lo[0]; z < box.hi[0]; ++z)
        for (Index y = box.lo[1]; y < box.hi[1]; ++y) {
            const float* row = src.row(z, y);
            const float* in;
            if (direct) {
                in = row + (x0 - r - sx0);
            } else {  // the part inside the image as it is, the rest mirrored at the image's ends
                const Index lo = std::max<Index>(x0 - r, 0), hi = std::min(x1 + r, n);
                float* l = line.data() - (x0 - r);  // l[x] is position x
                std::copy(row + (lo - sx0), row + (hi - sx0), l + lo);
                for (Index x = x0 - r; x < lo; ++x) l[x] = row[mirror(x, n) - sx0];
                for (Index x = hi; x < x1 + r; ++x) l[x] = row[mirror(x, n) - sx0];
                in = line.data();
            }
            K.xpass(in, out.row(z, y), x0, x1, n, k.c.data(), static_cast<int>(r), k.symmetric);
        }
    return out;
}

// y (axis 1) or z (axis 0) pass onto `box`: a sequential FMA chain, the same for every pixel.
template <class Src>
Scratch outer_pass(const Src& src, const FirKernel& k, int axis, Index n, const Box& box) {
    if (k.radius == 0) return copy_box(src, box);
    const Index r = k.radius;
    Box reach = box;
    reach.lo[axis] = std::max<Index>(0, box.lo[axis] - r);
    reach.hi[axis] = std::min(n, box.hi[axis] + r);
    require_inside(reach, src.box);
    Scratch out(box);
    const auto& K = ffsimd::kernels();
    const Index xoff = box.lo[2] - src.box.lo[2];
    std::vector<const float*> rows(static_cast<std::size_t>(2 * r + 1));
    for (Index z = box.lo[0]; z < box.hi[0]; ++z)
        for (Index y = box.lo[1]; y < box.hi[1]; ++y) {
            const Index p = axis == 0 ? z : y;
            for (Index j = -r; j <= r; ++j) {
                const Index q = mirror(p + j, n);
                rows[static_cast<std::size_t>(j + r)] = (axis == 0 ? src.row(q, y) : src.row(z, q)) + xoff;
            }
            K.seq_rows(rows.data(), k.c.data(), static_cast<int>(r), k.symmetric, box.extent(2), out.row(z, y));
        }
    return out;
}

// Full separable filter of `src` onto `target`: x, then y, then z (unless in_2d).
template <class Src>
Scratch convolve(const Src& src, const FirKernel& kz, const FirKernel& ky, const FirKernel& kx, bool in_2d,
                 const ImageGeometry& image, const Box& target) {
    const Box ibox = image.box();
    const Index rz = in_2d ? 0 : kz.radius;
    Scratch v = xpass(src, kx, image.shape[2], target.grown({rz, ky.radius, 0}, ibox).with_axis(2, target));
    v = outer_pass(v, ky, 1, image.shape[1], target.grown({rz, 0, 0}, ibox).with_axis(1, target).with_axis(2, target));
    if (!in_2d) v = outer_pass(v, kz, 0, image.shape[0], target);
    return v;
}

// Responses of one input volume to kernel combinations (z, y, x), on one box, each pass computed
// once: the x pass per x kernel, the y pass per (x, y) kernel pair.
class Responses {
   public:
    Responses(const Scratch& src, const Box& box, bool in_2d, const ImageGeometry& image, std::vector<const FirKernel*> kernels)
        : src_(src), box_(box), in_2d_(in_2d), image_(image), kernels_(std::move(kernels)) {
        for (const FirKernel* k : kernels_) rmax_ = std::max(rmax_, static_cast<Index>(k->radius));
    }

    const Scratch& get(int kz, int ky, int kx) {
        if (in_2d_) kz = -1;
        const auto key = std::make_tuple(kz, ky, kx);
        if (auto it = full_.find(key); it != full_.end()) return it->second;
        const Box ibox = image_.box();
        const Index rz = in_2d_ ? 0 : rmax_;
        auto xit = x_.find(kx);
        if (xit == x_.end())
            xit = x_.emplace(kx, xpass(src_, *kernels_[kx], image_.shape[2], box_.grown({rz, rmax_, 0}, ibox).with_axis(2, box_))).first;
        const auto ykey = std::make_pair(kx, ky);
        auto yit = y_.find(ykey);
        if (yit == y_.end()) {
            const Box b = box_.grown({rz, 0, 0}, ibox).with_axis(1, box_).with_axis(2, box_);
            yit = y_.emplace(ykey, outer_pass(xit->second, *kernels_[ky], 1, image_.shape[1], b)).first;
        }
        if (in_2d_) return yit->second;
        return full_.emplace(key, outer_pass(yit->second, *kernels_[kz], 0, image_.shape[0], box_)).first->second;
    }

   private:
    const Scratch& src_;
    Box box_;
    bool in_2d_;
    ImageGeometry image_;
    std::vector<const FirKernel*> kernels_;
    Index rmax_ = 0;
    std::map<int, Scratch> x_;
    std::map<std::pair<int, int>, Scratch> y_;
    std::map<std::tuple<int, int, int>, Scratch> full_;
};

// ---------------------------------------------------------------------------------------------
// The combine steps' scalar routes (linalg_avx*.c), for the last n mod 8 elements of a flat image.

// GCC's vectorised remainder copy of sqrtf: rsqrtps, masked where x == 0, one Newton step.
float rsqrt_newton_sqrt(float x) {
    float r = _mm_cvtss_f32(_mm_rsqrt_ss(_mm_set_ss(x)));
    if (x == 0.0f) r = 0.0f;
    const float e = x * r;
    return ((e * r) + -3.0f) * (e * -0.5f);
}

// The scalar remainder of _ev3d_avx2 (-Ofast, mixed float/double, libm atan2 and sincosf).
void ev3d_scalar(float a00, float a01, float a02, float a11, float a12, float a22, float* e0, float* e1, float* e2) {
    using D = double;
    auto fmax = [](float a, float b) { return a > b ? a : b; };
    const float mx = fmax(fmax(fmax(std::fabs(a00), std::fabs(a01)), fmax(std::fabs(a02), std::fabs(a11))),
                          fmax(std::fabs(a12), std::fabs(a22)));
    if (mx == 0.0f) {
        *e0 = *e1 = *e2 = 0.0f;
        return;
    }
    const float inv = 1.0f / mx;
    const float b00 = inv * a00, b01 = inv * a01, b02 = inv * a02, b11 = inv * a11, b12 = inv * a12, b22 = inv * a22;
    const float inv3 = 1.0f / 3.0f;
    const float s0011 = b11 + b00;
    const float t862 = b22 * s0011;
    const float p0011 = b11 * b00;
    const float t860 = p0011 * b22;
    const D t853 = (D(b02) * D(b01)) * (D(b12) * 2.0);
    const float b12sq = b12 * b12;
    const float t851 = b12sq * b00;
    const D t118 = t853 - D(t851);
    const float b02sq = b02 * b02;
    const float t846 = b02sq * b11;
    const float b01sq = b01 * b01;
    const float t842 = b01sq * b22;
    const D t120 = t118 - (D(t842) + D(t846));
    const float c0 = static_cast<float>(t120 + D(t860));
    const float c1 = ((t862 - b01sq) - (b02sq + b12sq)) + p0011;
    const float c2 = b22 + s0011;
    const float c2_3 = c2 * inv3;
    const float a_3raw = (c1 - c2_3 * c2) * inv3;
    const float a_3 = a_3raw < 0.0f ? a_3raw : 0.0f;
    const D d = c2_3;
    const float mb_2 = static_cast<float>((((d * d) * 2.0 - D(c1)) * d + D(c0)) * 0.5);
    const float qraw = ((a_3 * a_3) * a_3) + mb_2 * mb_2;
    const float q = qraw < 0.0f ? qraw : 0.0f;
    const float mag = std::sqrt(-a_3);
    const float angle = static_cast<float>(std::atan2(std::sqrt(D(-q)), D(mb_2)) * D(inv3));
    float sn, cs;
    ::sincosf(angle, &sn, &cs);
    const float root3 = std::sqrt(3.0f);
    float r0 = static_cast<float>((D(mag) * 2.0) * D(cs) + d);
    const float t795 = sn * root3;
    float r1 = c2_3 - (t795 + cs) * mag;
    float r2 = (t795 - cs) * mag + c2_3;
    if (r0 < r1) std::swap(r0, r1);
    if (r0 < r2) std::swap(r0, r2);
    if (r1 < r2) std::swap(r1, r2);
    *e0 = r0 * mx;
    *e1 = r1 * mx;
    *e2 = r2 * mx;
}

// Indices of the flat image fastfilters' combine functions see: the whole (z, y, x) volume for
// 3D filters, one (y, x) slice for 2D ones.
struct FlatImage {
    Index n = 0, ny = 0, nx = 0;
    bool per_slice = false;
    Index base(Index z, Index y) const { return ((per_slice ? 0 : z) * ny + y) * nx; }
    Index vector_end() const { return n & ~Index(7); }
    // [lo, hi) of the elements that GCC's 128-bit remainder copy handles (rsqrt-based sqrt).
    Index nr_lo() const { return vector_end(); }
    Index nr_hi() const { return n - vector_end() >= 4 ? vector_end() + 4 : vector_end(); }
};

// ---------------------------------------------------------------------------------------------

// One tile's output channels, each a contiguous (z, y, x) plane; transposed into the
// (pixel, channel) output once the tile is complete, so that no pass writes with a stride.
struct TilePlanes {
    Box tile;
    Index channels = 0;
    Scratch data;  // channels x tile.size()
    float* row(Index ch, Index z, Index y) {
        return data.data() + ch * tile.size() + ((z - tile.lo[0]) * tile.extent(1) + (y - tile.lo[1])) * tile.extent(2);
    }
};

// f(z, y, dst[]) fills dst[c][0..m) of channels ch .. ch + n - 1 for every row of the tile.
template <class F>
void write_rows(TilePlanes& planes, Index ch, int n, F f) {
    const Box& t = planes.tile;
    float* dst[3];
    for (Index z = t.lo[0]; z < t.hi[0]; ++z)
        for (Index y = t.lo[1]; y < t.hi[1]; ++y) {
            for (int c = 0; c < n; ++c) dst[c] = planes.row(ch + c, z, y);
            f(z, y, dst);
        }
}

inline const float* at_row(const Scratch& v, Index z, Index y, Index x0) { return v.row(z, y) + (x0 - v.box.lo[2]); }

// _ev2d_avx on a symmetric 2x2 tensor (xx, xy, yy): largest eigenvalue first.
void write_eigenvalues_2d(TilePlanes& out, Index ch, const FlatImage& flat, const Scratch& xx, const Scratch& xy,
                          const Scratch& yy) {
    const auto& K = ffsimd::kernels();
    const Index x0 = out.tile.lo[2], m = out.tile.extent(2);
    write_rows(out, ch, 2, [&](Index z, Index y, float** d) {
        const float* a = at_row(xx, z, y, x0);
        const float* b = at_row(xy, z, y, x0);
        const float* c = at_row(yy, z, y, x0);
        K.ev2d(a, b, c, d[0], d[1], m);
        const Index base = flat.base(z, y) + x0;
        for (Index i = std::max<Index>(0, flat.nr_lo() - base); i < m && base + i < flat.nr_hi(); ++i) {
            const float mean = (a[i] + c[i]) * 0.5f, t = (a[i] - c[i]) * 0.5f;
            const float root = rsqrt_newton_sqrt(t * t + b[i] * b[i]);
            const float e0 = mean + root, e1 = mean - root;
            d[0][i] = e0 > e1 ? e0 : e1;
            d[1][i] = e0 < e1 ? e0 : e1;
        }
    });
}

// _ev3d_avx2 on a symmetric 3x3 tensor given in the binding's order (zz, yz, xz, yy, xy, xx):
// eigenvalues in descending order.
void write_eigenvalues_3d(TilePlanes& out, Index ch, const FlatImage& flat, const Scratch& a00, const Scratch& a01,
                          const Scratch& a02, const Scratch& a11, const Scratch& a12, const Scratch& a22) {
    const auto& K = ffsimd::kernels();
    const Index x0 = out.tile.lo[2], m = out.tile.extent(2);
    write_rows(out, ch, 3, [&](Index z, Index y, float** d) {
        const float* p[6] = {at_row(a00, z, y, x0), at_row(a01, z, y, x0), at_row(a02, z, y, x0),
                             at_row(a11, z, y, x0), at_row(a12, z, y, x0), at_row(a22, z, y, x0)};
        K.ev3d(p[0], p[1], p[2], p[3], p[4], p[5], d[0], d[1], d[2], m);
        const Index base = flat.base(z, y) + x0;
        for (Index i = std::max<Index>(0, flat.vector_end() - base); i < m; ++i)
            ev3d_scalar(p[0][i], p[1][i], p[2][i], p[3][i], p[4][i], p[5][i], d[0] + i, d[1] + i, d[2] + i);
    });
}

// A scale column of one input channel, presmoothed, with its feature kernels.
struct Column {
    const JobGroup* group;
    Scratch P;          // presmoothed on the target + 3 (the feature stage's reach)
    FirKernel fk[4];    // G(s'), G(0.66 s'), G'(s'), G''(s')
    FirKernel st[2];    // the structure tensor's gradient kernels: G(0.5 s'), G'(0.5 s')
    FlatImage flat;     // what the combine steps see as their flat array
};

class FastfiltersEngine final : public FeatureEngine {
   public:
    std::string name() const override { return "fastfilters"; }
    Index presmooth_radius(double scale) const override { return fir_radius(presmooth_sigma(scale), kPresmoothWindow); }
    Index feature_radius(const FeatureRequest& r) const override { return fir_radius(feature_sigma(r.scale), kFeatureWindow); }
    void compute(const std::vector<Volume>& raw, const ImageGeometry& image, const std::vector<ChannelJob>& jobs,
                 const FeatureOutput& out) const override;

    Volume gaussian_derivative(const Volume& in, int order, double sigma, double window) const override {
        const FirKernel k = fir_kernel(order, sigma, static_cast<float>(window));
        const ImageGeometry image{{in.box.extent(0), in.box.extent(1), in.box.extent(2)}};
        for (int a = image.is_2d() ? 1 : 0; a < 3; ++a)
            if (k.radius >= image.shape[a]) throw std::invalid_argument("image too small for the kernel");
        const Scratch r = convolve(in, k, k, k, image.is_2d(), image, image.box());
        Volume v(image.box());
        std::copy_n(r.data(), v.data.size(), v.data.data());
        return v;
    }

   private:
    Column prepare(const Volume& raw, const ImageGeometry& image, const JobGroup& g, const Box& target) const;
    void feature_stage(const Column& col, const ImageGeometry& image, TilePlanes& out) const;
};

void FastfiltersEngine::compute(const std::vector<Volume>& raw, const ImageGeometry& image,
                                const std::vector<ChannelJob>& jobs, const FeatureOutput& out) const {
    const Box& T = out.target;
    const std::vector<JobGroup> groups = group_jobs(jobs);
    std::vector<Column> columns;
    for (const JobGroup& g : groups) columns.push_back(prepare(raw[static_cast<std::size_t>(g.input)], image, g, T));

    // The feature stage tile by tile, every column of a tile in turn, so that the tile's part of
    // the (pixel, channel) output and the stage's intermediates stay in cache. Every pixel's
    // arithmetic follows from its image position, so tiles change no bit.
    TilePlanes planes;
    for (const Box& tile : feature_tiles(T)) {
        planes.tile = tile;
        planes.channels = out.channels;
        planes.data = Scratch(Box{{0, 0, 0}, {1, out.channels, tile.size()}});
        for (const Column& col : columns) feature_stage(col, image, planes);
        interleave_into(FeatureOutput::planar(planes.data.data(), tile, out.channels), out);
    }
    columns.clear();
    ScratchPool::local().trim(std::size_t(16) << 20);  // keep up to 64 MB for the next call
}

Column FastfiltersEngine::prepare(const Volume& raw, const ImageGeometry& image, const JobGroup& g, const Box& T) const {
    const Box ibox = image.box();
    const bool f2 = g.filter_2d;
    const Index X = image.shape[2], Y = image.shape[1], Z = image.shape[0];
    Column col;
    col.group = &g;
    col.flat = FlatImage{f2 ? Y * X : Z * Y * X, Y, X, f2};
    // Presmoothing (window 3.5) on the frame the feature kernels read: the target + 3.
    const Box frame = T.grown({f2 ? 0 : kFilterMargin, kFilterMargin, kFilterMargin}, ibox);
    const FirKernel kp = fir_kernel(0, presmooth_sigma(g.scale), static_cast<float>(kPresmoothWindow));
    col.P = convolve(raw, kp, kp, kp, g.presmooth_2d, image, frame);
    // Feature kernels (window 2). The structure tensor: lazyflow's Python binding hands its
    // scales to the C function swapped, so the gradient is taken at 0.5 s' and the products are
    // smoothed at s' (ILASTIK-SEMANTICS.md 3.8).
    const double sf = feature_sigma(g.scale);
    const float w = static_cast<float>(kFeatureWindow);
    col.fk[0] = fir_kernel(0, sf, w);
    col.fk[1] = fir_kernel(0, 0.66 * sf, w);
    col.fk[2] = fir_kernel(1, sf, w);
    col.fk[3] = fir_kernel(2, sf, w);
    col.st[0] = fir_kernel(0, 0.5 * sf, w);
    col.st[1] = fir_kernel(1, 0.5 * sf, w);
    return col;
}

void FastfiltersEngine::feature_stage(const Column& col, const ImageGeometry& image, TilePlanes& out) const {
    const auto& K = ffsimd::kernels();
    const JobGroup& g = *col.group;
    const Scratch& P = col.P;
    const FlatImage& flat = col.flat;
    const FirKernel* fk = col.fk;
    const FirKernel* st = col.st;
    const Box& S = out.tile;
    const Box ibox = image.box();
    const bool f2 = g.filter_2d;
    const Index x0 = S.lo[2], m = S.extent(2);
    enum { G = 0, G66, D1, D2 };
    Responses resp(P, S, f2, image, {&fk[G], &fk[G66], &fk[D1], &fk[D2]});

    for (const ChannelJob* job : g.jobs) {
        const Index ch = job->channel;
        switch (job->request.feature) {
            case GaussianSmoothing: {
                const Scratch& v = resp.get(G, G, G);
                write_rows(out, ch, 1, [&](Index z, Index y, float** d) { std::copy_n(at_row(v, z, y, x0), m, d[0]); });
                break;
            }
            case DifferenceOfGaussians: {  // a float32 numpy difference in lazyflow
                const Scratch& a = resp.get(G, G, G);
                const Scratch& b = resp.get(G66, G66, G66);
                write_rows(out, ch, 1, [&](Index z, Index y, float** d) { K.sub(at_row(a, z, y, x0), at_row(b, z, y, x0), d[0], m); });
                break;
            }
            case LaplacianOfGaussian: {
                const Scratch& xx = resp.get(G, G, D2);
                const Scratch& yy = resp.get(G, D2, G);
                if (f2) {
                    write_rows(out, ch, 1, [&](Index z, Index y, float** d) { K.add2(at_row(yy, z, y, x0), at_row(xx, z, y, x0), d[0], m); });
                } else {
                    const Scratch& zz = resp.get(D2, G, G);
                    write_rows(out, ch, 1, [&](Index z, Index y, float** d) {
                        K.add3(at_row(xx, z, y, x0), at_row(yy, z, y, x0), at_row(zz, z, y, x0), d[0], m);
                    });
                }
                break;
            }
            case GaussianGradientMagnitude: {
                const Scratch& gx = resp.get(G, G, D1);
                const Scratch& gy = resp.get(G, D1, G);
                const Scratch* gz = f2 ? nullptr : &resp.get(D1, G, G);
                write_rows(out, ch, 1, [&](Index z, Index y, float** d) {
                    const float* a = at_row(gx, z, y, x0);
                    const float* b = at_row(gy, z, y, x0);
                    const float* c = gz ? at_row(*gz, z, y, x0) : nullptr;
                    if (c) K.addsqrt3(a, b, c, d[0], m);
                    else K.addsqrt2(b, a, d[0], m);
                    const Index base = flat.base(z, y) + x0;
                    for (Index i = std::max<Index>(0, flat.nr_lo() - base); i < m && base + i < flat.nr_hi(); ++i)
                        d[0][i] = rsqrt_newton_sqrt(c ? (a[i] * a[i] + b[i] * b[i]) + c[i] * c[i] : b[i] * b[i] + a[i] * a[i]);
                });
                break;
            }
            case HessianOfGaussianEigenvalues: {
                if (f2) {
                    write_eigenvalues_2d(out, ch, flat, resp.get(G, G, D2), resp.get(G, D1, D1), resp.get(G, D2, G));
                } else {
                    write_eigenvalues_3d(out, ch, flat, resp.get(D2, G, G), resp.get(D1, D1, G), resp.get(D1, G, D1),
                                         resp.get(G, D2, G), resp.get(G, D1, D1), resp.get(G, G, D2));
                }
                break;
            }
            case StructureTensorEigenvalues: {
                const FirKernel& smooth = fk[G];
                const Index rs = smooth.radius;
                const Box rbox = S.grown({f2 ? 0 : rs, rs, rs}, ibox);
                Responses grad(P, rbox, f2, image, {&st[0], &st[1]});
                const Scratch& gx = grad.get(0, 0, 1);
                const Scratch& gy = grad.get(0, 1, 0);
                auto product = [&](const Scratch& a, const Scratch& b) {
                    Scratch p(rbox);
                    K.mul(a.data(), b.data(), p.data(), rbox.size());
                    return convolve(p, smooth, smooth, smooth, f2, image, S);
                };
                if (f2) {
                    const Scratch xx = product(gx, gx), yy = product(gy, gy), xy = product(gx, gy);
                    write_eigenvalues_2d(out, ch, flat, xx, xy, yy);
                } else {
                    const Scratch& gz = grad.get(1, 0, 0);
                    const Scratch xx = product(gx, gx), yy = product(gy, gy), zz = product(gz, gz);
                    const Scratch xy = product(gx, gy), xz = product(gx, gz), yz = product(gy, gz);
                    write_eigenvalues_3d(out, ch, flat, zz, yz, xz, yy, xy, xx);
                }
                break;
            }
        }
    }
}

}  // namespace

ILB_REGISTER_ENGINE("fastfilters", FastfiltersEngine);

}  // namespace ilb
