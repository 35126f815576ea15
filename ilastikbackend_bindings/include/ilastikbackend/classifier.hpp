// Features + forests for a region: what a worker runs per block.
#pragma once

#include <atomic>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "features.hpp"
#include "forest.hpp"

namespace ilb {

class PixelClassifierCore {
   public:
    PixelClassifierCore(FeaturePlan plan, Ensemble ensemble) : plan_(std::move(plan)), ensemble_(std::move(ensemble)) {
        plan_.validate();
    }

    const FeaturePlan& plan() const { return plan_; }
    const Ensemble& ensemble() const { return ensemble_; }

    // Probabilities for `target` (raw-array coordinates) into out: (tz, ty, tx, output_channels).
    // The target is cut into tiles that are computed independently on n_threads threads, so
    // memory stays bounded by the tile's feature matrix per thread.
    template <class T>
    void predict(const RawView<T>& raw, const Box& target, float* out, int n_threads, const Coord& tile) const {
        const bool is2d = raw.shape[0] == 1;
        const Index F = plan_.output_channels(raw.shape[3], is2d);
        if (F != ensemble_.column_count())
            throw std::invalid_argument("the features give " + std::to_string(F) + " channels for " + std::to_string(raw.shape[3]) +
                                        " input channel(s), the forests expect " + std::to_string(ensemble_.column_count()));
        if (!raw.box().contains(target) || target.size() <= 0) throw std::invalid_argument("target box outside the raw array or empty");
        std::vector<Box> tiles;
        for (Index z = target.lo[0]; z < target.hi[0]; z += tile[0])
            for (Index y = target.lo[1]; y < target.hi[1]; y += tile[1])
                for (Index x = target.lo[2]; x < target.hi[2]; x += tile[2])
                    tiles.push_back(Box{{z, y, x},
                                        {std::min(z + tile[0], target.hi[0]), std::min(y + tile[1], target.hi[1]),
                                         std::min(x + tile[2], target.hi[2])}});
        const Index K = ensemble_.output_channels();
        std::atomic<std::size_t> next{0};
        std::exception_ptr error;
        std::mutex error_mutex;
        auto work = [&]() {
            std::vector<float> feats, probs;
            Ensemble::Workspace forest_scratch;  // reused by every tile of this thread
            try {
                for (std::size_t i = next++; i < tiles.size(); i = next++) {
                    const Box& t = tiles[i];
                    feats.resize(static_cast<std::size_t>(t.size() * F));
                    probs.resize(static_cast<std::size_t>(t.size() * K));
                    compute_features(raw, t, plan_, feats.data());
                    ensemble_.predict(feats.data(), t.size(), probs.data(), forest_scratch);
                    Index idx = 0;
                    for (Index z = t.lo[0]; z < t.hi[0]; ++z)
                        for (Index y = t.lo[1]; y < t.hi[1]; ++y) {
                            const Index o = (((z - target.lo[0]) * target.extent(1) + (y - target.lo[1])) * target.extent(2) +
                                             (t.lo[2] - target.lo[2])) * K;
                            std::copy_n(probs.data() + idx * K, t.extent(2) * K, out + o);
                            idx += t.extent(2);
                        }
                }
            } catch (...) {
                std::lock_guard<std::mutex> lock(error_mutex);
                if (!error) error = std::current_exception();
                next = tiles.size();
            }
        };
        const int n = std::max(1, std::min<int>(n_threads, static_cast<int>(tiles.size())));
        std::vector<std::thread> pool;
        for (int i = 1; i < n; ++i) pool.emplace_back(work);
        work();
        for (auto& th : pool) th.join();
        if (error) std::rethrow_exception(error);
    }

   private:
    FeaturePlan plan_;
    Ensemble ensemble_;
};

}  // namespace ilb
