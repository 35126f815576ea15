// The six ilastik pixel features, computed the way ilastik's OpPixelFeaturesPresmoothed does
// (see ILASTIK-SEMANTICS.md): per scale s, presmooth the raw channel with a Gaussian of
// sigma t = sqrt(s^2 - 1) (s > 1) or s (window 3.5), then apply the feature filter at
// s' = min(s, 1) with window 2. Whose arithmetic does it is the plan's engine (engine.hpp).
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "box.hpp"
#include "engine.hpp"

namespace ilb {

// A read-only view of raw input: a C-contiguous (z, y, x, c) array of T that holds the region
// `box()` of an image of spatial shape `image` (a block with its halo, or the whole image).
template <class T>
struct RawView {
    const T* data = nullptr;
    Index shape[4] = {1, 1, 1, 1};
    Coord origin{0, 0, 0};  // image coordinates of data[0]
    Coord image{0, 0, 0};   // the image's spatial shape

    Box box() const { return Box{origin, {origin[0] + shape[0], origin[1] + shape[1], origin[2] + shape[2]}}; }
    ImageGeometry geometry() const { return ImageGeometry{image}; }
};

// Channels one request produces per input channel: 1, or one per eigenvalue.
inline Index channels_per_input(const FeatureRequest& r, bool volume_is_2d) {
    if (r.feature == StructureTensorEigenvalues || r.feature == HessianOfGaussianEigenvalues)
        return (r.filter_2d || volume_is_2d) ? 2 : 3;
    return 1;
}

struct FeaturePlan {
    std::vector<FeatureRequest> requests;
    std::shared_ptr<const FeatureEngine> engine;

    void validate() const {
        if (!engine) throw std::invalid_argument("no feature engine");
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

    // Halo per side (z, y, x) the raw data needs around a target: lazyflow's
    // 3 + ceil(3.5 max(0.7, s_max)), which covers both engines' presmoothing radius plus the
    // feature stage. No halo in z when every column is computed in 2D.
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

// Rejects images with a line shorter than one of the plan's kernels, naming feature and scale
// (ilastik's GUI forbids such scales; fastfilters would read out of bounds).
void check_image_fits(const FeaturePlan& plan, const ImageGeometry& image);

// Throws std::invalid_argument, with a message for the user, unless `raw` lies in its image,
// holds `target` plus plan.halo() (clipped to the image), and the image fits the plan's kernels.
template <class T>
void check_features_input(const RawView<T>& raw, const Box& target, const FeaturePlan& plan);

// Computes the features of `target` (image coordinates, inside raw.box()) into `out`, a
// C-contiguous (tz, ty, tx, C_out) float32 array, channels in request order, then input channel,
// then eigenvalue (descending). The raw view must hold the target grown by plan.halo() wherever
// the image does; every pixel then gets the value the whole-image computation gives it.
template <class T>
void compute_features(const RawView<T>& raw, const Box& target, const FeaturePlan& plan, float* out);

}  // namespace ilb
