// The engine registry and the engine-independent part of feature computation: checks, channel
// layout, and the conversion of the raw input to float32 (ilastik casts its input first).
#include "ilastikbackend/features.hpp"

#include <algorithm>
#include <map>
#include <cstdio>
#include <mutex>

namespace ilb {
namespace {

std::map<std::string, EngineFactory>& registry() {
    static std::map<std::string, EngineFactory> engines;
    return engines;
}
std::mutex& registry_mutex() {
    static std::mutex m;
    return m;
}

std::string scale_text(double s) {
    // Python's str(float) for the scales ilastik offers (0.3, 1.0, 3.5, ...).
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.15g", s);
    std::string t = buf;
    if (t.find_first_of(".e") == std::string::npos) t += ".0";
    return t;
}

const char* axis_name(int axis) { return axis == 0 ? "z" : axis == 1 ? "y" : "x"; }

}  // namespace

const char* feature_display_name(int feature) {
    static const char* names[] = {"Gaussian Smoothing",          "Laplacian of Gaussian",
                                  "Gaussian Gradient Magnitude", "Difference of Gaussians",
                                  "Structure Tensor Eigenvalues", "Hessian of Gaussian Eigenvalues"};
    return feature >= 0 && feature < 6 ? names[feature] : "unknown feature";
}

bool register_engine(const std::string& name, EngineFactory factory) {
    std::lock_guard<std::mutex> lock(registry_mutex());
    return registry().emplace(name, std::move(factory)).second;
}

std::vector<std::string> engine_names() {
    std::lock_guard<std::mutex> lock(registry_mutex());
    std::vector<std::string> names;
    for (const auto& [name, _] : registry()) names.push_back(name);
    return names;
}

std::shared_ptr<const FeatureEngine> make_engine(const std::string& name) {
    EngineFactory factory;
    {
        std::lock_guard<std::mutex> lock(registry_mutex());
        auto it = registry().find(name);
        if (it != registry().end()) factory = it->second;
    }
    if (!factory) {
        std::string known;
        for (const auto& n : engine_names()) known += (known.empty() ? "" : ", ") + n;
        throw std::invalid_argument("unknown feature engine '" + name + "' (known: " + known + ")");
    }
    return factory();
}

void check_image_fits(const FeaturePlan& plan, const ImageGeometry& image) {
    const bool image_2d = image.is_2d();
    for (const FeatureRequest& r : plan.requests) {
        struct Stage {
            const char* what;
            Index radius;
            bool in_2d;
        };
        const Stage stages[2] = {{"presmoothing", plan.engine->presmooth_radius(r.scale), r.presmooth_2d || image_2d},
                                 {"filter", plan.engine->feature_radius(r), r.filter_2d || image_2d}};
        for (const Stage& st : stages)
            for (int axis = st.in_2d ? 1 : 0; axis < 3; ++axis)
                if (st.radius >= image.shape[axis])
                    throw std::invalid_argument(
                        "image too small for " + std::string(feature_display_name(r.feature)) + " at scale " +
                        scale_text(r.scale) + ": its " + st.what + " kernel (radius " + std::to_string(st.radius) +
                        ") is longer than the image's " + axis_name(axis) + " axis (" +
                        std::to_string(image.shape[axis]) + " pixels)");
    }
}

template <class T>
void check_features_input(const RawView<T>& raw, const Box& target, const FeaturePlan& plan) {
    plan.validate();
    const ImageGeometry image = raw.geometry();
    const Box ibox = image.box();
    const Box rbox = raw.box();
    for (int a = 0; a < 3; ++a)
        if (image.shape[a] < 1) throw std::invalid_argument("image shape must be positive");
    if (!ibox.contains(rbox)) throw std::invalid_argument("the raw block reaches outside the image");
    for (int a = 0; a < 3; ++a)
        if (target.extent(a) <= 0) throw std::invalid_argument("the target region is empty");
    if (!rbox.contains(target)) throw std::invalid_argument("the target region reaches outside the raw block");
    if (!rbox.contains(target.grown(plan.halo(), ibox)))
        throw std::invalid_argument("the raw block lacks the halo the features need around the target");
    check_image_fits(plan, image);
}

template <class T>
void compute_features(const RawView<T>& raw, const Box& target, const FeaturePlan& plan, float* out) {
    check_features_input(raw, target, plan);
    const ImageGeometry image = raw.geometry();
    const Box ibox = image.box();
    const Box rbox = raw.box();
    const Box need = target.grown(plan.halo(), ibox);

    const bool volume_2d = image.is_2d();
    const Index n_in = raw.shape[3];
    const Index n_out = plan.output_channels(n_in, volume_2d);
    std::vector<Index> base(plan.requests.size());
    for (std::size_t q = 0, b = 0; q < plan.requests.size(); ++q) {
        base[q] = static_cast<Index>(b);
        b += static_cast<std::size_t>(channels_per_input(plan.requests[q], volume_2d) * n_in);
    }

    const FeatureOutput output = FeatureOutput::interleaved(out, target, n_out);
    std::vector<Volume> channels;
    for (Index c = 0; c < n_in; ++c) {
        Volume channel(need);
        for (Index z = need.lo[0]; z < need.hi[0]; ++z)
            for (Index y = need.lo[1]; y < need.hi[1]; ++y) {
                const T* src = raw.data +
                               (((z - rbox.lo[0]) * raw.shape[1] + (y - rbox.lo[1])) * raw.shape[2] + (need.lo[2] - rbox.lo[2])) *
                                   n_in +
                               c;
                float* dst = channel.row(z, y);
                for (Index x = 0; x < need.extent(2); ++x) dst[x] = static_cast<float>(src[x * n_in]);
            }
        channels.push_back(std::move(channel));
    }
    std::vector<ChannelJob> jobs;
    for (std::size_t q = 0; q < plan.requests.size(); ++q) {
        FeatureRequest r = plan.requests[q];
        if (volume_2d) r.presmooth_2d = r.filter_2d = true;
        const Index k = channels_per_input(plan.requests[q], volume_2d);
        for (Index c = 0; c < n_in; ++c) jobs.push_back(ChannelJob{r, c, base[q] + c * k});
    }
    plan.engine->compute(channels, image, jobs, output);
}

template void check_features_input<std::uint8_t>(const RawView<std::uint8_t>&, const Box&, const FeaturePlan&);
template void check_features_input<std::uint16_t>(const RawView<std::uint16_t>&, const Box&, const FeaturePlan&);
template void check_features_input<float>(const RawView<float>&, const Box&, const FeaturePlan&);
template void compute_features<std::uint8_t>(const RawView<std::uint8_t>&, const Box&, const FeaturePlan&, float*);
template void compute_features<std::uint16_t>(const RawView<std::uint16_t>&, const Box&, const FeaturePlan&, float*);
template void compute_features<float>(const RawView<float>&, const Box&, const FeaturePlan&, float*);

}  // namespace ilb
