// The six ilastik pixel features, computed the way ilastik's OpPixelFeaturesPresmoothed does
// (see ILASTIK-SEMANTICS.md): per scale s, presmooth the raw channel with a Gaussian of
// sigma t = sqrt(s^2 - 1) (s > 1) or s (window 3.5), then apply the feature filter at
// s' = min(s, 1) with window 2. All features of one scale share their separable passes.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "box.hpp"
#include "convolution.hpp"
#include "kernels.hpp"

namespace ilb {

enum FeatureId : int {
    GaussianSmoothing = 0,
    LaplacianOfGaussian = 1,
    GaussianGradientMagnitude = 2,
    DifferenceOfGaussians = 3,
    StructureTensorEigenvalues = 4,
    HessianOfGaussianEigenvalues = 5,
};

// vigra: gradient at the inner scale, tensor smoothed at the outer scale.
// fastfilters' Python binding swaps the two (ILASTIK-SEMANTICS.md 3.8).
enum class StructureTensorMode { Vigra, FastfiltersCompat };

struct FeatureRequest {
    int feature = 0;
    double scale = 1.0;
    bool presmooth_2d = false;  // presmoothing skips z (ComputeIn2d)
    bool filter_2d = false;     // feature filter works per z-slice (ComputeIn2d, or z too small)
};

constexpr double kPresmoothWindow = 3.5;
constexpr double kFeatureWindow = 2.0;
// Footprint of the feature stage around the target (ceil(3.5 * 0.7) in lazyflow).
constexpr Index kFilterMargin = 3;

inline double presmooth_sigma(double s) { return s > 1.0 ? std::sqrt(s * s - 1.0) : s; }
inline double feature_sigma(double s) { return s > 1.0 ? 1.0 : s; }

// Channels one request produces per input channel: 1, or one per eigenvalue.
inline Index channels_per_input(const FeatureRequest& r, bool volume_is_2d) {
    if (r.feature == StructureTensorEigenvalues || r.feature == HessianOfGaussianEigenvalues)
        return (r.filter_2d || volume_is_2d) ? 2 : 3;
    return 1;
}

struct FeaturePlan {
    std::vector<FeatureRequest> requests;
    StructureTensorMode structure_tensor = StructureTensorMode::Vigra;

    void validate() const {
        if (requests.empty()) throw std::invalid_argument("no features selected");
        for (const auto& r : requests) {
            if (r.feature < 0 || r.feature > 5)
                throw std::invalid_argument("unknown feature id " + std::to_string(r.feature));
            if (!(r.scale > 0.0) || !std::isfinite(r.scale))
                throw std::invalid_argument("feature scale must be a positive number");
        }
    }

    Index output_channels(Index input_channels, bool volume_is_2d) const {
        Index n = 0;
        for (const auto& r : requests) n += channels_per_input(r, volume_is_2d) * input_channels;
        return n;
    }

    // Halo per side (z, y, x) the raw data needs around a target: 3 + ceil(3.5 max(0.7, s_max)).
    // No halo in z when every column is computed in 2D.
    Coord halo() const {
        double smax = 0.7;
        bool z3d = false;
        for (const auto& r : requests) {
            smax = std::max(smax, r.scale);
            if (!r.presmooth_2d || !r.filter_2d) z3d = true;
        }
        const Index h = kFilterMargin + static_cast<Index>(std::ceil(kPresmoothWindow * smax));
        return Coord{z3d ? h : 0, h, h};
    }
};

// Computes the features of `target` (a box in the raw array's coordinates) into `out`,
// a C-contiguous (tz, ty, tx, C_out) float32 array, channels in request order, then input
// channel, then eigenvalue (descending). The raw array's bounds are treated as image
// bounds: it must hold the target plus plan.halo() wherever the image does.
template <class T>
void compute_features(const RawView<T>& raw, const Box& target, const FeaturePlan& plan, float* out);

}  // namespace ilb
