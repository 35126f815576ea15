#include "ilastikbackend/forest.hpp"

#include <algorithm>
#include <cmath>
#include <functional>

namespace ilb {
namespace {

constexpr std::int32_t kThresholdNode = 0;
constexpr std::int32_t kConstProbLeaf = 0x40000000;

// The smallest float f with (x < t) == (x < f) for every float x.
float float_threshold(double t) {
    float f = static_cast<float>(t);
    if (static_cast<double>(f) < t) f = std::nextafter(f, std::numeric_limits<float>::infinity());
    return f;
}

constexpr Index kRowsPerGroup = 16;

}  // namespace

void Forest::add_tree(const std::int32_t* topo, std::size_t nt, const double* par, std::size_t np) {
    const std::string where = "tree " + std::to_string(roots_.size());
    if (nt < 4) throw std::invalid_argument(where + ": topology too short");
    if (topo[0] != column_count_ || topo[1] != class_count_)
        throw std::invalid_argument(where + ": topology says " + std::to_string(topo[0]) + " columns and " +
                                    std::to_string(topo[1]) + " classes, the forest " + std::to_string(column_count_) +
                                    " and " + std::to_string(class_count_));
    const std::size_t base = nodes_.size();
    std::vector<std::int32_t> index_of(nt, -1);  // topology offset -> flattened node
    std::vector<std::size_t> order;
    // Depth-first over topology offsets, so that every referenced node is visited once.
    std::vector<std::pair<std::size_t, int>> stack{{2, 1}};
    int max_depth = 0;
    std::vector<std::size_t> offsets;
    while (!stack.empty()) {
        auto [n, depth] = stack.back();
        stack.pop_back();
        if (n + 1 >= nt) throw std::invalid_argument(where + ": node offset " + std::to_string(n) + " outside the topology");
        if (index_of[n] != -1) throw std::invalid_argument(where + ": node " + std::to_string(n) + " reached twice");
        index_of[n] = static_cast<std::int32_t>(base + offsets.size());
        offsets.push_back(n);
        max_depth = std::max(max_depth, depth);
        const std::int32_t type = topo[n];
        if (type == kThresholdNode) {
            if (n + 4 >= nt) throw std::invalid_argument(where + ": truncated threshold node");
            stack.push_back({static_cast<std::size_t>(topo[n + 3]), depth + 1});
            stack.push_back({static_cast<std::size_t>(topo[n + 2]), depth + 1});
        } else if (type != kConstProbLeaf) {
            throw std::invalid_argument(where + ": unsupported vigra node type " + std::to_string(type) +
                                        " (only threshold splits and constant-probability leaves, as ilastik trains them)");
        }
    }
    for (std::size_t n : offsets) {
        const std::int32_t type = topo[n];
        const std::size_t a = static_cast<std::size_t>(topo[n + 1]);
        Node node{};
        const std::int32_t self = index_of[n];
        if (type == kThresholdNode) {
            if (a + 1 >= np) throw std::invalid_argument(where + ": parameter offset outside the parameters");
            const std::int32_t col = topo[n + 4];
            if (col < 0 || col >= column_count_)
                throw std::invalid_argument(where + ": split on column " + std::to_string(col) + " of " + std::to_string(column_count_));
            node.feature = col;
            node.threshold = float_threshold(par[a + 1]);
            node.child[0] = index_of[static_cast<std::size_t>(topo[n + 2])];
            node.child[1] = index_of[static_cast<std::size_t>(topo[n + 3])];
            leaf_of_node_.push_back(-1);
        } else {
            if (a + static_cast<std::size_t>(class_count_) >= np)
                throw std::invalid_argument(where + ": leaf parameters outside the parameters");
            const double w = weighted_ ? par[a] : 1.0;
            double total = 0.0;
            for (int l = 0; l < class_count_; ++l) {
                const double v = par[a + 1 + static_cast<std::size_t>(l)] * w;
                leaf_values_.push_back(static_cast<float>(v));
                total += v;
            }
            leaf_totals_.push_back(total);
            node.feature = 0;
            node.threshold = std::numeric_limits<float>::infinity();
            node.child[0] = node.child[1] = self;
            leaf_of_node_.push_back(static_cast<std::int32_t>(leaf_totals_.size() - 1));
        }
        nodes_.push_back(node);
    }
    roots_.push_back(static_cast<std::int32_t>(base));
    depths_.push_back(max_depth - 1);  // steps from the root to the deepest leaf
}

void Forest::accumulate(const float* X, Index n, float* acc) const {
    const Index F = column_count_, K = class_count_;
    const float tree_count = static_cast<float>(roots_.size());
    std::vector<float> prob(static_cast<std::size_t>(kRowsPerGroup * K));
    std::vector<double> total(kRowsPerGroup);
    std::int32_t cur[kRowsPerGroup];
    for (Index g0 = 0; g0 < n; g0 += kRowsPerGroup) {
        const Index B = std::min(kRowsPerGroup, n - g0);
        const float* rows = X + g0 * F;
        std::fill(prob.begin(), prob.end(), 0.0f);
        std::fill(total.begin(), total.end(), 0.0);
        for (std::size_t t = 0; t < roots_.size(); ++t) {
            for (Index b = 0; b < B; ++b) cur[b] = roots_[t];
            // Leaves loop onto themselves, so `depth` steps land every row on its leaf.
            for (std::int32_t d = 0; d < depths_[t]; ++d) {
                for (Index b = 0; b < B; ++b) {
                    const Node& nd = nodes_[static_cast<std::size_t>(cur[b])];
                    cur[b] = nd.child[rows[b * F + nd.feature] >= nd.threshold];
                }
            }
            for (Index b = 0; b < B; ++b) {
                const std::int32_t leaf = leaf_of_node_[static_cast<std::size_t>(cur[b])];
                const float* v = leaf_values_.data() + static_cast<std::size_t>(leaf) * K;
                for (Index l = 0; l < K; ++l) prob[b * K + l] += v[l];
                total[b] += leaf_totals_[static_cast<std::size_t>(leaf)];
            }
        }
        for (Index b = 0; b < B; ++b) {
            const float* row = rows + b * F;
            bool nan = false;
            for (Index f = 0; f < F; ++f) nan |= std::isnan(row[f]);
            float* dst = acc + (g0 + b) * K;
            const float tot = static_cast<float>(total[b]);
            for (Index l = 0; l < K; ++l) dst[l] += nan ? 0.0f : (prob[b * K + l] / tot) * tree_count;
        }
    }
}

Ensemble::Ensemble(std::vector<Forest> forests, std::vector<int> channel_of_class, int output_channels)
    : forests_(std::move(forests)), channel_of_class_(std::move(channel_of_class)), n_out_(output_channels) {
    if (forests_.empty()) throw std::invalid_argument("no forests");
    const int K = forests_.front().class_count(), F = forests_.front().column_count();
    double trees = 0;
    for (std::size_t i = 0; i < forests_.size(); ++i) {
        const auto& f = forests_[i];
        if (f.class_count() != K || f.column_count() != F)
            throw std::invalid_argument("forest " + std::to_string(i) + " disagrees with forest 0 on classes or feature columns");
        if (f.tree_count() == 0) throw std::invalid_argument("forest " + std::to_string(i) + " has no trees");
        trees += static_cast<double>(f.tree_count());
    }
    total_trees_ = static_cast<float>(trees);
    if (static_cast<int>(channel_of_class_.size()) != K)
        throw std::invalid_argument("need one output channel per forest class (" + std::to_string(K) + ")");
    for (int c : channel_of_class_)
        if (c < 0 || c >= n_out_) throw std::invalid_argument("class mapped to output channel " + std::to_string(c) + " of " + std::to_string(n_out_));
}

void Ensemble::predict(const float* X, Index n, float* out) const {
    const Index K = forests_.front().class_count();
    std::vector<float> acc(static_cast<std::size_t>(n * K), 0.0f);
    for (const auto& f : forests_) f.accumulate(X, n, acc.data());
    std::fill(out, out + n * n_out_, 0.0f);
    for (Index i = 0; i < n; ++i)
        for (Index l = 0; l < K; ++l) out[i * n_out_ + channel_of_class_[static_cast<std::size_t>(l)]] = acc[i * K + l] / total_trees_;
}

}  // namespace ilb
