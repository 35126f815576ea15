// Feature engines: whose arithmetic computes ilastik's pixel features.
//
// ilastik < 1.3 computed its features with vigra, ilastik >= 1.3 with fastfilters; a project's
// forests were trained on (and ilastik exports with) that library's exact numbers, so the core
// reproduces each of them bit for bit behind one interface. An engine is one source file that
// defines a FeatureEngine subclass and registers it by name (ILB_REGISTER_ENGINE); everything
// else (the plan, the blocking, the bindings, the Python mirror in core/engines.py) asks the
// registry.
#pragma once

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "box.hpp"

namespace ilb {

enum FeatureId : int {
    GaussianSmoothing = 0,
    LaplacianOfGaussian = 1,
    GaussianGradientMagnitude = 2,
    DifferenceOfGaussians = 3,
    StructureTensorEigenvalues = 4,
    HessianOfGaussianEigenvalues = 5,
};

// ilastik's display name of a feature ("Gaussian Smoothing", ...).
const char* feature_display_name(int feature);

struct FeatureRequest {
    int feature = 0;
    double scale = 1.0;
    bool presmooth_2d = false;  // presmoothing skips z (ComputeIn2d)
    bool filter_2d = false;     // feature filter works per z-slice (ComputeIn2d, or z too small)
};

constexpr double kPresmoothWindow = 3.5;
constexpr double kFeatureWindow = 2.0;
// Footprint of the feature stage around the target (ceil(3.5 * 0.7) in lazyflow); both engines'
// feature kernels reach at most 3 pixels (structure tensor: 2 + 1).
constexpr Index kFilterMargin = 3;

inline double presmooth_sigma(double s) { return s > 1.0 ? std::sqrt(s * s - 1.0) : s; }
inline double feature_sigma(double s) { return s > 1.0 ? 1.0 : s; }

// Where the data an engine works on sits: the image's spatial shape, so that borders are
// mirrored where the image ends (not where a block ends) and every pixel gets the arithmetic
// that the whole-image computation gives it.
struct ImageGeometry {
    Coord shape{1, 1, 1};  // (z, y, x)
    Box box() const { return Box{{0, 0, 0}, shape}; }
    bool is_2d() const { return shape[0] == 1; }
};

// Where the features go: channel c of the pixel at (z, y, x) of `target` is at
// data[pixel_index * pixel_stride + c * channel_stride]. The core's output is interleaved
// (pixel_stride = channels, channel_stride = 1); engines may fill planar tiles (pixel_stride = 1,
// channel_stride = tile size) and interleave them once a tile is complete (interleave_into).
struct FeatureOutput {
    float* data = nullptr;
    Box target;          // image coordinates
    Index channels = 0;  // channels per pixel
    Index pixel_stride = 0, channel_stride = 1;

    static FeatureOutput interleaved(float* data, const Box& target, Index channels) {
        return FeatureOutput{data, target, channels, channels, 1};
    }
    static FeatureOutput planar(float* data, const Box& tile, Index channels) {
        return FeatureOutput{data, tile, channels, 1, tile.size()};
    }

    // Writes f(z, y, x) into channel `ch` for every target pixel.
    template <class F>
    void write(Index ch, F f) const {
        Index idx = 0;
        float* d = data + ch * channel_stride;
        for (Index z = target.lo[0]; z < target.hi[0]; ++z)
            for (Index y = target.lo[1]; y < target.hi[1]; ++y)
                for (Index x = target.lo[2]; x < target.hi[2]; ++x, ++idx) d[idx * pixel_stride] = f(z, y, x);
    }
    // Channel `ch` of the first pixel of target row (z, y); the row's pixels are pixel_stride apart.
    float* row(Index z, Index y, Index ch) const {
        return data + (((z - target.lo[0]) * target.extent(1) + (y - target.lo[1])) * target.extent(2)) * pixel_stride +
               ch * channel_stride;
    }
};

// Copies a complete planar tile into the interleaved output (AVX where the CPU has it).
void interleave_into(const FeatureOutput& planar_tile, const FeatureOutput& out);

// Tiles of a target for an engine's feature stage: long rows (up to 512 pixels), whole z when the
// volume is thin (up to 32 slices), and as many rows as keep a tile near 32768 pixels, so that a
// tile's planar channels and intermediates stay in cache.
inline std::vector<Box> feature_tiles(const Box& t) {
    constexpr Index kTileVoxels = 32768;
    const Index tx = std::min<Index>(t.extent(2), 512);
    const Index tz = std::min<Index>(t.extent(0), 32);
    const Index ty = std::clamp<Index>(kTileVoxels / (tz * tx), std::min<Index>(4, t.extent(1)), t.extent(1));
    std::vector<Box> tiles;
    for (Index z0 = t.lo[0]; z0 < t.hi[0]; z0 += tz)
        for (Index y0 = t.lo[1]; y0 < t.hi[1]; y0 += ty)
            for (Index x0 = t.lo[2]; x0 < t.hi[2]; x0 += tx)
                tiles.push_back(Box{{z0, y0, x0}, {std::min(z0 + tz, t.hi[0]), std::min(y0 + ty, t.hi[1]), std::min(x0 + tx, t.hi[2])}});
    return tiles;
}

// One request on one input channel, and the output channel of its first value.
struct ChannelJob {
    FeatureRequest request;
    Index input;
    Index channel;
};

// Jobs that share a presmoothed image and a feature stage: same input channel, scale and 2D flags.
struct JobGroup {
    Index input;
    double scale;
    bool presmooth_2d, filter_2d;
    std::vector<const ChannelJob*> jobs;
};

inline std::vector<JobGroup> group_jobs(const std::vector<ChannelJob>& jobs) {
    std::vector<JobGroup> groups;
    for (const ChannelJob& j : jobs) {
        const FeatureRequest& r = j.request;
        auto it = std::find_if(groups.begin(), groups.end(), [&](const JobGroup& g) {
            return g.input == j.input && g.scale == r.scale && g.presmooth_2d == r.presmooth_2d &&
                   g.filter_2d == r.filter_2d;
        });
        if (it == groups.end()) groups.push_back(JobGroup{j.input, r.scale, r.presmooth_2d, r.filter_2d, {&j}});
        else it->jobs.push_back(&j);
    }
    return groups;
}

class FeatureEngine {
   public:
    virtual ~FeatureEngine() = default;
    virtual std::string name() const = 0;

    // Radius of the kernel that filters along one axis for a request: the presmoothing kernel
    // (presmoothing = true) or the widest kernel of the feature stage. Used to reject images
    // whose lines are shorter than a kernel.
    virtual Index presmooth_radius(double scale) const = 0;
    virtual Index feature_radius(const FeatureRequest& r) const = 0;

    // Computes the jobs' channels. `raw[c]` holds input channel c as float32 on a box of image
    // coordinates that covers the target grown by plan.halo() (clipped to the image).
    virtual void compute(const std::vector<Volume>& raw, const ImageGeometry& image, const std::vector<ChannelJob>& jobs,
                         const FeatureOutput& out) const = 0;

    // The engine's separable Gaussian (derivative) filter of the given order along every axis of
    // a whole image (z = 1: 2D), as its library's gaussianDerivative computes it. For tests and
    // tools; engines that do not offer it throw.
    virtual Volume gaussian_derivative(const Volume& image, int order, double sigma, double window) const {
        (void)image, (void)order, (void)sigma, (void)window;
        throw std::invalid_argument("the " + name() + " engine offers no plain Gaussian filter");
    }
};

using EngineFactory = std::function<std::shared_ptr<const FeatureEngine>()>;

// The registry: name -> factory. Engines register themselves at load time.
bool register_engine(const std::string& name, EngineFactory factory);
std::shared_ptr<const FeatureEngine> make_engine(const std::string& name);  // throws std::invalid_argument
std::vector<std::string> engine_names();

#define ILB_REGISTER_ENGINE(NAME, CLASS) \
    static const bool ilb_registered_##CLASS = ::ilb::register_engine(NAME, [] { return std::make_shared<const CLASS>(); })

}  // namespace ilb
