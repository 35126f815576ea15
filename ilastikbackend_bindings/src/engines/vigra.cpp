// The vigra engine: ilastik < 1.3's features, bit for bit as Debian's python3-vigra (1.11)
// computes them (ILASTIK-SEMANTICS.md sections 3-4): vigra's kernels (double for smoothing,
// float for derivative filters), its border reflection, its structure tensor (gradient at s',
// smoothing at 0.5 s') and its closed-form eigenvalues. Its arithmetic does not depend on a
// pixel's position, so blocks only need their halo.
#include <algorithm>
#include <map>
#include <memory>
#include <tuple>
#include <utility>

#include "ilastikbackend/convolution.hpp"
#include "ilastikbackend/engine.hpp"
#include "ilastikbackend/kernels.hpp"

namespace ilb {
namespace {


// Separable filtering of a float volume onto `target`, passes x, then y, then z; a null
// kernel skips its axis. Intermediate passes cover the target grown by the radii of the
// passes still to come, clipped to the input, so the result equals full-array filtering.
Volume separable(const Volume& in, const Kernel1D* kz, const Kernel1D* ky, const Kernel1D* kx, const Box& target) {
    const Index rz = kz ? kz->radius : 0;
    const Index ry = ky ? ky->radius : 0;
    Volume cur;
    const Volume* src = &in;
    if (kx) {
        cur = convolve_axis(*src, *kx, 2, target.grown({rz, ry, 0}, in.box).with_axis(2, target));
        src = &cur;
    }
    if (ky) {
        Volume next = convolve_axis(*src, *ky, 1, target.grown({rz, 0, 0}, in.box).with_axis(1, target).with_axis(2, target));
        cur = std::move(next);
        src = &cur;
    }
    if (kz) {
        Volume next = convolve_axis(*src, *kz, 0, target);
        cur = std::move(next);
        src = &cur;
    }
    if (src == &in) {  // no kernel at all: copy the target out
        Volume v(target);
        for (Index z = target.lo[0]; z < target.hi[0]; ++z)
            for (Index y = target.lo[1]; y < target.hi[1]; ++y)
                std::copy_n(in.row(z, y) + (target.lo[2] - in.box.lo[2]), target.extent(2), v.row(z, y));
        return v;
    }
    return cur;
}

Volume presmooth(const Volume& raw, double t, bool in_2d, const Box& frame) {
    const Kernel1D k = make_kernel(t, 0, kPresmoothWindow);
    const Box rbox = raw.box;
    const Index rz = in_2d ? 0 : k.radius;
    Volume v = convolve_axis(raw, k, 2, frame.grown({rz, k.radius, 0}, rbox).with_axis(2, frame));
    v = convolve_axis(v, k, 1, frame.grown({rz, 0, 0}, rbox).with_axis(1, frame).with_axis(2, frame));
    if (!in_2d) v = convolve_axis(v, k, 0, frame);
    return v;
}

// Filter responses of one presmoothed volume, computed once per kernel combination.
class ResponseCache {
   public:
    // vigra smooths with double kernels (gaussianSmoothing, DoG) and builds its derivative
    // filters (LoG, gradient, Hessian, structure-tensor gradient) from float kernels.
    enum K { G = 0, G66, GF, D1F, D2F, STG, STD1, NK };

    ResponseCache(const Volume& p, const Box& target, bool in_2d, double s_feat, double st_inner)
        : p_(p), target_(target), in_2d_(in_2d) {
        kernels_[G] = make_kernel(s_feat, 0, kFeatureWindow, Precision::Double);
        kernels_[G66] = make_kernel(0.66 * s_feat, 0, kFeatureWindow, Precision::Double);
        kernels_[GF] = make_kernel(s_feat, 0, kFeatureWindow, Precision::Float);
        kernels_[D1F] = make_kernel(s_feat, 1, kFeatureWindow, Precision::Float);
        kernels_[D2F] = make_kernel(s_feat, 2, kFeatureWindow, Precision::Float);
        kernels_[STG] = make_kernel(st_inner, 0, kFeatureWindow, Precision::Float);
        kernels_[STD1] = make_kernel(st_inner, 1, kFeatureWindow, Precision::Float);
        for (const auto& k : kernels_) rmax_ = std::max(rmax_, k.radius);
    }

    const Kernel1D& kernel(int id) const { return kernels_[id]; }
    bool in_2d() const { return in_2d_; }

    // Response to kernel kz along z, ky along y, kx along x, on the target box.
    const Volume& get(int kz, int ky, int kx) {
        if (in_2d_) kz = -1;
        auto key = std::make_tuple(kz, ky, kx);
        auto it = full_.find(key);
        if (it != full_.end()) return it->second;
        auto y2 = ypass_.find(std::make_pair(kx, ky));
        if (in_2d_ && y2 != ypass_.end()) return y2->second;
        const Index rz = in_2d_ ? 0 : rmax_;
        auto xit = xpass_.find(kx);
        if (xit == xpass_.end())
            xit = xpass_.emplace(kx, convolve_axis(p_, kernels_[kx], 2, target_.grown({rz, rmax_, 0}, p_.box).with_axis(2, target_))).first;
        auto ykey = std::make_pair(kx, ky);
        auto yit = ypass_.find(ykey);
        if (yit == ypass_.end()) {
            const Box b = in_2d_ ? target_ : target_.grown({rz, 0, 0}, p_.box).with_axis(1, target_).with_axis(2, target_);
            yit = ypass_.emplace(ykey, convolve_axis(xit->second, kernels_[ky], 1, b)).first;
        }
        if (in_2d_) return yit->second;
        return full_.emplace(key, convolve_axis(yit->second, kernels_[kz], 0, target_)).first->second;
    }

    // Derivative along axis a (0 z, 1 y, 2 x): `deriv` along a, `smooth` elsewhere.
    const Volume& along(int a, int deriv, int smooth) {
        return get(a == 0 ? deriv : smooth, a == 1 ? deriv : smooth, a == 2 ? deriv : smooth);
    }
    // Mixed second derivative: d1 along a and b, G elsewhere.
    const Volume& mixed(int a, int b) {
        auto pick = [&](int axis) { return (axis == a || axis == b) ? int(D1F) : int(GF); };
        return get(pick(0), pick(1), pick(2));
    }

   private:
    const Volume& p_;
    Box target_;
    bool in_2d_;
    Index rmax_ = 0;
    Kernel1D kernels_[NK];
    std::map<int, Volume> xpass_;
    std::map<std::pair<int, int>, Volume> ypass_;
    std::map<std::tuple<int, int, int>, Volume> full_;
};

// vigra::symmetric2x2Eigenvalues<float> (mathutil.hxx), same arithmetic types; descending.
void eigenvalues2(float a00, float a01, float a11, float* r) {
    const double d = std::hypot(static_cast<double>(a00 - a11), 2.0 * a01);
    r[0] = static_cast<float>(0.5 * (a00 + a11 + d));
    r[1] = static_cast<float>(0.5 * (a00 + a11 - d));
    if (r[0] < r[1]) std::swap(r[0], r[1]);
}

// vigra::symmetric3x3Eigenvalues<float> (closed form after Eberly), same arithmetic types; descending.
void eigenvalues3(float a00, float a01, float a02, float a11, float a12, float a22, float* r) {
    const double inv3 = 1.0 / 3.0, root3 = std::sqrt(3.0);
    const double c0 = a00 * a11 * a22 + 2.0 * a01 * a02 * a12 - a00 * a12 * a12 - a11 * a02 * a02 - a22 * a01 * a01;
    const double c1 = a00 * a11 - a01 * a01 + a00 * a22 - a02 * a02 + a11 * a22 - a12 * a12;
    const double c2 = a00 + a11 + a22;
    const double c2Div3 = c2 * inv3;
    double aDiv3 = (c1 - c2 * c2Div3) * inv3;
    if (aDiv3 > 0.0) aDiv3 = 0.0;
    const double mbDiv2 = 0.5 * (c0 + c2Div3 * (2.0 * c2Div3 * c2Div3 - c1));
    double q = mbDiv2 * mbDiv2 + aDiv3 * aDiv3 * aDiv3;
    if (q > 0.0) q = 0.0;
    const double magnitude = std::sqrt(-aDiv3);
    const double angle = std::atan2(std::sqrt(-q), mbDiv2) * inv3;
    const double cs = std::cos(angle), sn = std::sin(angle);
    r[0] = static_cast<float>(c2Div3 + 2.0 * magnitude * cs);
    r[1] = static_cast<float>(c2Div3 - magnitude * (cs + root3 * sn));
    r[2] = static_cast<float>(c2Div3 - magnitude * (cs - root3 * sn));
    if (r[0] < r[1]) std::swap(r[0], r[1]);
    if (r[0] < r[2]) std::swap(r[0], r[2]);
    if (r[1] < r[2]) std::swap(r[1], r[2]);
}

// Writes n consecutive channels at once: f(z, y, x, dst) fills dst[0..n).
template <class F>
void write_n(const FeatureOutput& out, Index channel, Index n, F f) {
    const Box& t = out.target;
    Index idx = 0;
    float tmp[3];
    for (Index z = t.lo[0]; z < t.hi[0]; ++z)
        for (Index y = t.lo[1]; y < t.hi[1]; ++y)
            for (Index x = t.lo[2]; x < t.hi[2]; ++x, ++idx) {
                f(z, y, x, tmp);
                for (Index e = 0; e < n; ++e) out.data[idx * out.pixel_stride + (channel + e) * out.channel_stride] = tmp[e];
            }
}

inline float at(const Volume& v, Index z, Index y, Index x) { return v.row(z, y)[x - v.box.lo[2]]; }

// Eigenvalues of a symmetric tensor given as its upper triangle in vigra's order.
void write_eigenvalues(const FeatureOutput& w, Index ch, int n, const Volume* const* t) {
    if (n == 2) {
        write_n(w, ch, 2, [&](Index z, Index y, Index x, float* ev) {
            eigenvalues2(at(*t[0], z, y, x), at(*t[1], z, y, x), at(*t[2], z, y, x), ev);
        });
    } else {
        write_n(w, ch, 3, [&](Index z, Index y, Index x, float* ev) {
            eigenvalues3(at(*t[0], z, y, x), at(*t[1], z, y, x), at(*t[2], z, y, x), at(*t[3], z, y, x),
                         at(*t[4], z, y, x), at(*t[5], z, y, x), ev);
        });
    }
}

class VigraEngine final : public FeatureEngine {
   public:
    std::string name() const override { return "vigra"; }

    Index presmooth_radius(double scale) const override {
        return kernel_radius(presmooth_sigma(scale), 0, kPresmoothWindow);
    }
    Index feature_radius(const FeatureRequest& r) const override {
        return kernel_radius(feature_sigma(r.scale), 0, kFeatureWindow);  // the widest of its kernels
    }

    void compute(const std::vector<Volume>& raw, const ImageGeometry& image, const std::vector<ChannelJob>& jobs,
                 const FeatureOutput& out) const override;
};

void VigraEngine::compute(const std::vector<Volume>& channels, const ImageGeometry& /*image*/,
                          const std::vector<ChannelJob>& jobs, const FeatureOutput& out) const {
    // Each channel covers the target plus halo, clipped to the image: its bounds are image bounds
    // wherever a kernel can reach them.
    // Presmoothing once per scale column, on the frame the feature kernels read (the target + 3);
    // then the feature stage tile by tile into planar buffers (no strided writes), interleaved into
    // the output once a tile is complete. vigra's arithmetic does not depend on a pixel's position,
    // so tiles change no bit.
    const std::vector<JobGroup> groups = group_jobs(jobs);
    std::vector<Volume> presmoothed;
    for (const JobGroup& g : groups) {
        const Volume& raw = channels[static_cast<std::size_t>(g.input)];
        const Index fz = g.filter_2d ? 0 : kFilterMargin;
        const Box frame = out.target.grown({fz, kFilterMargin, kFilterMargin}, raw.box);
        presmoothed.push_back(presmooth(raw, presmooth_sigma(g.scale), g.presmooth_2d, frame));
    }
    std::vector<float> planes;
    for (const Box& tile : feature_tiles(out.target)) {
        planes.resize(static_cast<std::size_t>(out.channels * tile.size()));
        const FeatureOutput w = FeatureOutput::planar(planes.data(), tile, out.channels);
        const Box& target = tile;
        for (std::size_t gi = 0; gi < groups.size(); ++gi) {
            const JobGroup& g = groups[gi];
            const Volume& p = presmoothed[gi];
            const Box& frame = p.box;
            const double sf = feature_sigma(g.scale);
            // vigra: gradient at the inner scale s', tensor smoothed at the outer scale 0.5 s'.
            const double st_inner = sf;
            const double st_outer = 0.5 * sf;
            const bool has_st = std::any_of(g.jobs.begin(), g.jobs.end(), [&](const ChannelJob* j) {
                return j->request.feature == StructureTensorEigenvalues;
            });
            const Kernel1D outer = make_kernel(st_outer, 0, kFeatureWindow, Precision::VectorDouble);
            // The structure tensor's gradient is needed on the target grown by the outer radius.
            const Index ro = has_st ? outer.radius : 0;
            const Box resp_box = target.grown({g.filter_2d ? 0 : ro, ro, ro}, frame);
            ResponseCache rc(p, resp_box, g.filter_2d, sf, st_inner);
            using K = ResponseCache;
            // Spatial axes in vigra's order (x first), as indices into our (z, y, x) volumes.
            const int na = g.filter_2d ? 2 : 3;
            const int axes[3] = {2, 1, 0};

            for (const ChannelJob* job : g.jobs) {
                const FeatureRequest& r = job->request;
                const Index ch = job->channel;
                switch (r.feature) {
                    case GaussianSmoothing: {
                        const Volume& v = rc.get(K::G, K::G, K::G);
                        w.write(ch, [&](Index z, Index y, Index x) { return at(v, z, y, x); });
                        break;
                    }
                    case LaplacianOfGaussian: {
                        // vigra sums the second derivatives in its axis order: x, then y, then z.
                        const Volume* d[3];
                        for (int i = 0; i < na; ++i) d[i] = &rc.along(axes[i], K::D2F, K::GF);
                        w.write(ch, [&](Index z, Index y, Index x) {
                            float s = at(*d[0], z, y, x);
                            for (int i = 1; i < na; ++i) s = s + at(*d[i], z, y, x);
                            return s;
                        });
                        break;
                    }
                    case GaussianGradientMagnitude: {
                        const Volume* d[3];
                        for (int i = 0; i < na; ++i) d[i] = &rc.along(axes[i], K::D1F, K::GF);
                        w.write(ch, [&](Index z, Index y, Index x) {
                            // vigra's squaredNorm of a TinyVector: g0^2 + (g1^2 + g2^2).
                            float s = 0.0f;
                            for (int i = na - 1; i >= 0; --i) {
                                const float v = at(*d[i], z, y, x);
                                s = i == na - 1 ? v * v : v * v + s;
                            }
                            return std::sqrt(s);
                        });
                        break;
                    }
                    case DifferenceOfGaussians: {
                        const Volume& a = rc.get(K::G, K::G, K::G);
                        const Volume& b = rc.get(K::G66, K::G66, K::G66);
                        w.write(ch, [&](Index z, Index y, Index x) { return at(a, z, y, x) - at(b, z, y, x); });
                        break;
                    }
                    case HessianOfGaussianEigenvalues: {
                        // Upper triangle in vigra's axis order (x, y[, z]).
                        const Volume* h[6];
                        int n = 0;
                        for (int i = 0; i < na; ++i)
                            for (int j = i; j < na; ++j)
                                h[n++] = i == j ? &rc.along(axes[i], K::D2F, K::GF) : &rc.mixed(axes[i], axes[j]);
                        write_eigenvalues(w, ch, na, h);
                        break;
                    }
                    case StructureTensorEigenvalues: {
                        const Volume* grad[3];
                        for (int i = 0; i < na; ++i) grad[i] = &rc.along(axes[i], K::STD1, K::STG);
                        const Box& gb = grad[0]->box;
                        // Upper triangle of the gradient's outer product, each smoothed at the outer scale.
                        std::vector<Volume> tensor;
                        for (int i = 0; i < na; ++i)
                            for (int j = i; j < na; ++j) {
                                Volume prod(gb);
                                const auto& gi = grad[i]->data;
                                const auto& gj = grad[j]->data;
                                for (std::size_t m = 0; m < prod.data.size(); ++m) prod.data[m] = gi[m] * gj[m];
                                tensor.push_back(separable(prod, g.filter_2d ? nullptr : &outer, &outer, &outer, target));
                            }
                        const Volume* t[6];
                        for (std::size_t m = 0; m < tensor.size(); ++m) t[m] = &tensor[m];
                        write_eigenvalues(w, ch, na, t);
                        break;
                    }
                }
            }
        }
        interleave_into(w, out);
    }
}

}  // namespace

ILB_REGISTER_ENGINE("vigra", VigraEngine);

}  // namespace ilb
