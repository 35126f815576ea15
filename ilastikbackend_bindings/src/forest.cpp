#include "ilastikbackend/forest.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#if __has_include(<unistd.h>)
#include <unistd.h>
#endif

#include "forest_kernels.hpp"

namespace ilb {
namespace {

constexpr std::int32_t kThresholdNode = 0;
constexpr std::int32_t kConstProbLeaf = 0x40000000;

// The smallest float f with (x < t) == (x < f) for every float x (vigra compares the float
// feature, promoted to double, with its double threshold).
float float_threshold(double t) {
    constexpr float kMax = std::numeric_limits<float>::max();
    if (std::isnan(t)) return std::numeric_limits<float>::quiet_NaN();  // nothing is < NaN
    if (t > static_cast<double>(kMax)) return std::numeric_limits<float>::infinity();
    if (t == -std::numeric_limits<double>::infinity()) return -std::numeric_limits<float>::infinity();
    if (t < -static_cast<double>(kMax)) return -kMax;  // only -inf is below t
    float f = static_cast<float>(t);
    if (static_cast<double>(f) < t) f = std::nextafter(f, std::numeric_limits<float>::infinity());
    return f;
}

std::uint32_t float_bits(float f) {
    std::uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    return u;
}

float bits_float(std::uint32_t u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

// The smallest q >= 0 with v * 2^q an integer, or -1 if there is none below 64.
int fraction_bits(double v) {
    for (int q = 0; q < 64; ++q) {
        const double s = std::ldexp(v, q);
        if (s == std::floor(s)) return q;
    }
    return -1;
}

}  // namespace

// ------------------------------------------------------------------------------------------
// Building

Forest::Forest(int class_count, int column_count, bool predict_weighted)
    : class_count_(class_count), column_count_(column_count), weighted_(predict_weighted) {
    if (class_count < 1) throw std::invalid_argument("forest needs at least one class");
    if (column_count < 1) throw std::invalid_argument("forest needs at least one feature column");
    while ((std::int64_t{1} << feature_bits_) < column_count) ++feature_bits_;
    if (feature_bits_ > 24) throw std::invalid_argument("forest has too many feature columns (" + std::to_string(column_count) + ")");
}

void Forest::add_tree(const std::int32_t* topo, std::size_t nt, const double* par, std::size_t np) {
    const std::string where = "tree " + std::to_string(tree_count());
    if (nt < 4) throw std::invalid_argument(where + ": topology too short");
    if (topo[0] != column_count_ || topo[1] != class_count_)
        throw std::invalid_argument(where + ": topology says " + std::to_string(topo[0]) + " columns and " +
                                    std::to_string(topo[1]) + " classes, the forest " + std::to_string(column_count_) +
                                    " and " + std::to_string(class_count_));
    // Breadth-first from the root (topology offset 2): position p of the flattened tree holds
    // topology node order[p]; a split's children get the next two free positions.
    std::vector<std::size_t> order{2};
    std::vector<char> reached(nt, 0);
    reached[2] = 1;
    for (std::size_t p = 0; p < order.size(); ++p) {
        const std::size_t n = order[p];
        if (n + 1 >= nt) throw std::invalid_argument(where + ": node offset " + std::to_string(n) + " outside the topology");
        const std::int32_t type = topo[n];
        if (type == kThresholdNode) {
            if (n + 4 >= nt) throw std::invalid_argument(where + ": truncated threshold node");
            for (int side = 0; side < 2; ++side) {
                const std::int64_t c = topo[n + 2 + static_cast<std::size_t>(side)];
                if (c < 0 || static_cast<std::size_t>(c) + 1 >= nt)
                    throw std::invalid_argument(where + ": node offset " + std::to_string(c) + " outside the topology");
                if (reached[static_cast<std::size_t>(c)])
                    throw std::invalid_argument(where + ": node " + std::to_string(c) + " reached twice");
                reached[static_cast<std::size_t>(c)] = 1;
                order.push_back(static_cast<std::size_t>(c));
            }
        } else if (type != kConstProbLeaf) {
            throw std::invalid_argument(where + ": unsupported vigra node type " + std::to_string(type) +
                                        " (only threshold splits and constant-probability leaves, as ilastik trains them)");
        }
    }
    const std::uint64_t max_child = std::uint64_t{1} << (31 - feature_bits_);
    if (order.size() > max_child)
        throw std::invalid_argument(where + " has " + std::to_string(order.size()) + " nodes; with " + std::to_string(column_count_) +
                                    " feature columns a tree may have at most " + std::to_string(max_child));
    const std::size_t K = static_cast<std::size_t>(class_count_);
    std::vector<std::uint64_t> nodes(order.size());
    std::vector<float> values;
    std::vector<double> weights, totals;
    std::vector<std::int32_t> hot_classes;
    std::vector<float> hot_values;
    bool one_hot = true;
    std::uint32_t next_child = 1;
    for (std::size_t p = 0; p < order.size(); ++p) {
        const std::size_t n = order[p];
        const std::size_t a = static_cast<std::size_t>(static_cast<std::uint32_t>(topo[n + 1]));
        if (topo[n] == kThresholdNode) {
            if (topo[n + 1] < 0 || a + 1 >= np) throw std::invalid_argument(where + ": parameter offset outside the parameters");
            const std::int32_t col = topo[n + 4];
            if (col < 0 || col >= column_count_)
                throw std::invalid_argument(where + ": split on column " + std::to_string(col) + " of " + std::to_string(column_count_));
            const std::uint32_t packed = (next_child << feature_bits_) | static_cast<std::uint32_t>(col);
            next_child += 2;
            nodes[p] = float_bits(float_threshold(par[a + 1])) | (std::uint64_t{packed} << 32);
        } else {
            if (topo[n + 1] < 0 || a + K >= np) throw std::invalid_argument(where + ": leaf parameters outside the parameters");
            const std::size_t leaf = leaf_totals_.size() + totals.size();
            if (leaf >= kLeafFlag) throw std::invalid_argument(where + ": too many leaves");
            // vigra: cur_w = p_l * (weighted * leaf_weight + (1 - weighted)), in double.
            const double weighted = weighted_ ? 1.0 : 0.0;
            const double factor = weighted * par[a] + (1.0 - weighted);
            double total = 0.0;
            std::int32_t hot = -1;
            for (std::size_t l = 0; l < K; ++l) {
                const double v = par[a + 1 + l] * factor;
                values.push_back(static_cast<float>(v));
                weights.push_back(v);
                total += v;
                if (v != 0.0) {
                    if (hot != -1) one_hot = false;
                    hot = static_cast<std::int32_t>(l);
                }
            }
            totals.push_back(total);
            hot_classes.push_back(hot);
            hot_values.push_back(hot == -1 ? 0.0f : values[values.size() - K + static_cast<std::size_t>(hot)]);
            nodes[p] = std::uint64_t{kLeafFlag | static_cast<std::uint32_t>(leaf)} << 32;
        }
    }
    tree_first_node_.push_back(static_cast<std::uint32_t>(nodes_.size()));
    if (nodes_.size() + nodes.size() > std::numeric_limits<std::uint32_t>::max())
        throw std::invalid_argument(where + ": the forest has too many nodes");
    nodes_.insert(nodes_.end(), nodes.begin(), nodes.end());
    leaf_values_.insert(leaf_values_.end(), values.begin(), values.end());
    leaf_weights_.insert(leaf_weights_.end(), weights.begin(), weights.end());
    leaf_totals_.insert(leaf_totals_.end(), totals.begin(), totals.end());
    leaf_hot_class_.insert(leaf_hot_class_.end(), hot_classes.begin(), hot_classes.end());
    leaf_hot_value_.insert(leaf_hot_value_.end(), hot_values.begin(), hot_values.end());
    one_hot_ = one_hot_ && one_hot;
    update_exactness();
}

// vigra sums float(p_l * w) over the trees in float, and every p_l * w in double, in tree
// order. If every such value is a non-negative multiple of 2^-q, exactly a float, and the
// largest possible sums stay below 2^24 * 2^-q (float) and 2^53 * 2^-q (double), then every
// partial sum is exact, so any order of the additions gives vigra's bits: trees grown to
// purity without weights have leaves (0, .., 1, .., 0), and their sums are vote counts.
void Forest::update_exactness() {
    const std::size_t K = static_cast<std::size_t>(class_count_);
    // The leaves of the tree just added.
    const std::uint64_t* nodes = tree_nodes(tree_count() - 1);
    const std::size_t n_nodes = nodes_.size() - tree_first_node_.back();
    double max_value = 0.0, max_total = 0.0;
    for (std::size_t p = 0; p < n_nodes; ++p) {
        const std::uint32_t packed = static_cast<std::uint32_t>(nodes[p] >> 32);
        if (!(packed & kLeafFlag)) continue;
        const std::size_t leaf = packed & ~kLeafFlag;
        const double total = leaf_totals_[leaf];
        if (std::isnan(first_leaf_total_)) first_leaf_total_ = total;
        if (!(total == first_leaf_total_)) same_leaf_totals_ = false;
        max_total = std::max(max_total, total);
        for (std::size_t l = 0; l < K; ++l) {
            const double v = leaf_weights_[leaf * K + l];
            if (!(v >= 0.0) || !std::isfinite(v) || static_cast<double>(static_cast<float>(v)) != v) {
                exact_ = false;
                continue;
            }
            const int q = fraction_bits(v);
            if (q < 0) exact_ = false;
            fraction_bits_ = std::max(fraction_bits_, q);
            max_value = std::max(max_value, v);
        }
    }
    sum_of_max_value_ += max_value;
    sum_of_max_total_ += max_total;
    if (exact_ && (std::ldexp(sum_of_max_value_, fraction_bits_) >= 0x1p24 || std::ldexp(sum_of_max_total_, fraction_bits_) >= 0x1p53))
        exact_ = false;
    constant_total_ = exact_ && same_leaf_totals_ ? static_cast<double>(tree_count()) * first_leaf_total_
                                                  : std::numeric_limits<double>::quiet_NaN();
}

// ------------------------------------------------------------------------------------------
// The previous evaluation, kept as a reference

void Forest::accumulate_reference(const float* X, Index n, float* acc) const {
    struct Node {
        std::int32_t feature;
        float threshold;
        std::int32_t child[2];
    };
    // Depth-first copies of the trees; leaves loop onto themselves, so that `depth` steps land
    // every row on its leaf.
    std::vector<Node> nodes;
    std::vector<std::int32_t> leaf_of_node, roots, depths;
    for (std::size_t t = 0; t < tree_count(); ++t) {
        const std::uint64_t* tn = tree_nodes(t);
        const std::size_t count = (t + 1 < tree_count() ? tree_first_node_[t + 1] : nodes_.size()) - tree_first_node_[t];
        const std::int32_t base = static_cast<std::int32_t>(nodes.size());
        std::vector<std::int32_t> index_of(count);
        std::vector<std::uint32_t> order;  // breadth-first positions in depth-first order
        std::vector<std::pair<std::uint32_t, int>> stack{{0, 0}};
        int max_depth = 0;
        while (!stack.empty()) {
            auto [p, depth] = stack.back();
            stack.pop_back();
            index_of[p] = base + static_cast<std::int32_t>(order.size());
            order.push_back(p);
            max_depth = std::max(max_depth, depth);
            const std::uint32_t packed = static_cast<std::uint32_t>(tn[p] >> 32);
            if (!(packed & kLeafFlag)) {
                stack.push_back({(packed >> feature_bits_) + 1, depth + 1});
                stack.push_back({packed >> feature_bits_, depth + 1});
            }
        }
        for (std::uint32_t p : order) {
            const std::uint32_t packed = static_cast<std::uint32_t>(tn[p] >> 32);
            Node nd{};
            if (packed & kLeafFlag) {
                nd.threshold = std::numeric_limits<float>::infinity();
                nd.child[0] = nd.child[1] = index_of[p];
                leaf_of_node.push_back(static_cast<std::int32_t>(packed & ~kLeafFlag));
            } else {
                nd.feature = static_cast<std::int32_t>(packed & ((1u << feature_bits_) - 1));
                nd.threshold = bits_float(static_cast<std::uint32_t>(tn[p]));
                nd.child[0] = index_of[packed >> feature_bits_];
                nd.child[1] = index_of[(packed >> feature_bits_) + 1];
                leaf_of_node.push_back(-1);
            }
            nodes.push_back(nd);
        }
        roots.push_back(base);
        depths.push_back(max_depth);
    }
    constexpr Index kRowsPerGroup = 16;
    const Index F = column_count_, K = class_count_;
    const float tree_count_f = static_cast<float>(tree_count());
    std::vector<float> prob(static_cast<std::size_t>(kRowsPerGroup * K));
    std::vector<double> total(kRowsPerGroup);
    std::int32_t cur[kRowsPerGroup];
    for (Index g0 = 0; g0 < n; g0 += kRowsPerGroup) {
        const Index B = std::min(kRowsPerGroup, n - g0);
        const float* rows = X + g0 * F;
        std::fill(prob.begin(), prob.end(), 0.0f);
        std::fill(total.begin(), total.end(), 0.0);
        for (std::size_t t = 0; t < roots.size(); ++t) {
            for (Index b = 0; b < B; ++b) cur[b] = roots[t];
            for (std::int32_t d = 0; d < depths[t]; ++d) {
                for (Index b = 0; b < B; ++b) {
                    const Node& nd = nodes[static_cast<std::size_t>(cur[b])];
                    cur[b] = nd.child[!(rows[b * F + nd.feature] < nd.threshold)];
                }
            }
            for (Index b = 0; b < B; ++b) {
                const std::size_t leaf = static_cast<std::size_t>(leaf_of_node[static_cast<std::size_t>(cur[b])]);
                for (Index l = 0; l < K; ++l) {
                    prob[static_cast<std::size_t>(b * K + l)] += leaf_values_[leaf * static_cast<std::size_t>(K) + static_cast<std::size_t>(l)];
                    total[static_cast<std::size_t>(b)] += leaf_weights_[leaf * static_cast<std::size_t>(K) + static_cast<std::size_t>(l)];
                }
            }
        }
        for (Index b = 0; b < B; ++b) {
            const float* row = rows + b * F;
            bool nan = false;
            for (Index f = 0; f < F; ++f) nan |= std::isnan(row[f]);
            float* dst = acc + (g0 + b) * K;
            const float tot = static_cast<float>(total[static_cast<std::size_t>(b)]);
            for (Index l = 0; l < K; ++l)
                dst[l] += nan ? 0.0f : (prob[static_cast<std::size_t>(b * K + l)] / tot) * tree_count_f;
        }
    }
}

// ------------------------------------------------------------------------------------------
// Choosing the kernels

namespace {

bool cpu_has(ForestIsa isa) {
#if defined(__x86_64__) || defined(_M_X64)
    __builtin_cpu_init();
    if (isa == ForestIsa::Avx512)
        return forest_kernels::avx512_kernels() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("popcnt");
    if (isa == ForestIsa::Avx2)
        return forest_kernels::avx2_kernels() && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt");
#endif
    return isa == ForestIsa::Portable;
}

const forest_kernels::Kernels* kernels_for(ForestIsa isa) {
    if (isa == ForestIsa::Auto) {
        static const ForestIsa best = cpu_has(ForestIsa::Avx512) ? ForestIsa::Avx512
                                      : cpu_has(ForestIsa::Avx2) ? ForestIsa::Avx2
                                                                 : ForestIsa::Portable;
        isa = best;
    }
    if (!cpu_has(isa)) throw std::invalid_argument(std::string("this CPU cannot run the ") + forest_isa_name(isa) + " forest kernels");
    switch (isa) {
        case ForestIsa::Avx512: return forest_kernels::avx512_kernels();
        case ForestIsa::Avx2: return forest_kernels::avx2_kernels();
        default: return forest_kernels::portable_kernels();
    }
}

}  // namespace

const char* forest_isa_name(ForestIsa isa) {
    switch (isa) {
        case ForestIsa::Auto: return "auto";
        case ForestIsa::Portable: return "portable";
        case ForestIsa::Avx2: return "avx2";
        case ForestIsa::Avx512: return "avx512";
    }
    return "?";
}

ForestIsa forest_isa_from_name(const std::string& name) {
    for (ForestIsa isa : {ForestIsa::Auto, ForestIsa::Portable, ForestIsa::Avx2, ForestIsa::Avx512})
        if (name == forest_isa_name(isa)) return isa;
    throw std::invalid_argument("forest implementation must be auto, portable, avx2 or avx512, not '" + name + "'");
}

std::vector<std::string> forest_isas_available() {
    std::vector<std::string> names;
    for (ForestIsa isa : {ForestIsa::Avx512, ForestIsa::Avx2, ForestIsa::Portable})
        if (cpu_has(isa)) names.push_back(forest_isa_name(isa));
    return names;
}

// ------------------------------------------------------------------------------------------
// The ensemble

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

std::size_t Ensemble::tree_count() const {
    std::size_t n = 0;
    for (const auto& f : forests_) n += f.tree_count();
    return n;
}

std::size_t Ensemble::node_count() const {
    std::size_t n = 0;
    for (const auto& f : forests_) n += f.node_count();
    return n;
}

void Ensemble::predict_reference(const float* X, Index n, float* out) const {
    const Index K = forests_.front().class_count();
    std::vector<float> acc(static_cast<std::size_t>(n * K), 0.0f);
    for (const auto& f : forests_) f.accumulate_reference(X, n, acc.data());
    std::fill(out, out + n * n_out_, 0.0f);
    for (Index i = 0; i < n; ++i)
        for (Index l = 0; l < K; ++l) out[i * n_out_ + channel_of_class_[static_cast<std::size_t>(l)]] = acc[i * K + l] / total_trees_;
}

void Ensemble::predict(const float* X, Index n, float* out, ForestIsa isa) const {
    Workspace ws;
    predict(X, n, out, ws, isa);
}

namespace {

constexpr int kMaxLogBlockRows = 13;

// A block's feature columns are read again by every tree, so they should stay in the core's
// L2 cache, next to the tree being walked and the row lists: half of it (512 KiB where the
// system does not say). More rows per block mean more rows per node, and fewer nodes per row.
std::size_t block_bytes() {
    static const std::size_t bytes = [] {
        long l2 = -1;
#ifdef _SC_LEVEL2_CACHE_SIZE
        l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
        if (l2 <= 0) return std::size_t{512} << 10;
        return std::clamp(static_cast<std::size_t>(l2) / 2, std::size_t{256} << 10, std::size_t{2} << 20);
    }();
    return bytes;
}

// Sends every row of a block through one tree and calls reached(leaf, rows, count) for each
// group of rows that reaches a leaf, every row exactly once. Depth first from the root, each
// node reached by at least k.min_partition_rows rows partitions their list by its split (one
// pass for all of them, reading one column); the rows of smaller nodes are collected and
// walked down lane by lane from there (k.walk), as vigra walks each row.
template <class Reached>
void route_block(const Forest& forest, std::size_t tree, const forest_kernels::Kernels& k, const forest_kernels::Block& block,
                 int rows, Ensemble::Workspace& ws, Reached&& reached) {
    const std::uint64_t* nodes = forest.tree_nodes(tree);
    const int fb = forest.feature_bits();
    const std::uint32_t fmask = (1u << fb) - 1;
    std::int32_t* a = ws.rows_a.data();
    std::int32_t* b = ws.rows_b.data();
    int stragglers = 0;
    ws.stack.clear();
    // A node's rows are rows[begin, end) of buffer a or b. The ranges of pending nodes never
    // overlap, so each node partitions its range into the same range of the other buffer.
    auto arrive = [&](std::uint32_t node, std::int32_t begin, std::int32_t end, bool in_b) {
        if (begin == end) return;
        const std::int32_t* rows_here = (in_b ? b : a) + begin;
        const std::uint32_t packed = static_cast<std::uint32_t>(nodes[node] >> 32);
        if (packed & Forest::kLeafFlag) {
            reached(static_cast<std::int32_t>(packed & ~Forest::kLeafFlag), rows_here, end - begin);
        } else if (end - begin < k.min_partition_rows) {
            std::memcpy(ws.straggler_rows.data() + stragglers, rows_here, sizeof(std::int32_t) * static_cast<std::size_t>(end - begin));
            std::fill_n(ws.straggler_nodes.data() + stragglers, end - begin, static_cast<std::int32_t>(node));
            stragglers += end - begin;
        } else {
            ws.stack.push_back({static_cast<std::int32_t>(node), begin, end, in_b});
        }
    };
    const std::uint32_t root = static_cast<std::uint32_t>(nodes[0] >> 32);
    if (!(root & Forest::kLeafFlag) && rows >= k.min_partition_rows) {
        ws.stack.push_back({0, 0, rows, false});  // rows 0, 1, .., rows - 1: no list needed yet
    } else {
        for (int i = 0; i < rows; ++i) a[i] = i;
        arrive(0, 0, rows, false);
    }
    while (!ws.stack.empty()) {
        const Ensemble::Workspace::Pending p = ws.stack.back();
        ws.stack.pop_back();
        const std::uint64_t nd = nodes[p.node];
        const std::uint32_t packed = static_cast<std::uint32_t>(nd >> 32);
        const float* column = block.columns + (static_cast<std::size_t>(packed & fmask) << block.log_stride);
        const std::int32_t* src = p.node == 0 ? nullptr : (p.in_b ? b : a) + p.begin;
        std::int32_t* dst = (p.in_b ? a : b) + p.begin;
        const int nl = k.partition(src, p.end - p.begin, column, bits_float(static_cast<std::uint32_t>(nd)), dst);
        const std::uint32_t left = packed >> fb;
        arrive(left + 1, p.begin + nl, p.end, !p.in_b);
        arrive(left, p.begin, p.begin + nl, !p.in_b);  // pushed last: partitioned next, while its rows are warm
    }
    if (stragglers > 0) {
        k.walk(nodes, fb, block, ws.straggler_rows.data(), ws.straggler_nodes.data(), stragglers, ws.pair_rows.data(), ws.pair_leaves.data());
        for (int i = 0; i < stragglers; ++i) reached(ws.pair_leaves[static_cast<std::size_t>(i)], ws.pair_rows.data() + i, 1);
    }
}

}  // namespace

void Ensemble::predict(const float* X, Index n, float* out, Workspace& ws, ForestIsa isa) const {
    const forest_kernels::Kernels& k = *kernels_for(isa);
    const Index F = column_count();
    const Index K = forests_.front().class_count();
    // Block rows: a power of two (the column stride), as many as fit block_bytes(), at least 16.
    int log_stride = 4;
    while (log_stride < kMaxLogBlockRows && (std::size_t{4} << (log_stride + 1)) * static_cast<std::size_t>(F) <= block_bytes()) ++log_stride;
    while (log_stride > 0 && (Index{1} << (log_stride - 1)) >= n) --log_stride;
    const Index stride = Index{1} << log_stride;
    const std::size_t S = static_cast<std::size_t>(stride);
    ws.columns.resize(S * static_cast<std::size_t>(F));
    ws.prob.resize(S * static_cast<std::size_t>(K));
    ws.acc.resize(S * static_cast<std::size_t>(K));
    ws.total.resize(S);
    ws.row_total.resize(S);
    ws.has_nan.resize(S);
    for (auto* v : {&ws.rows_a, &ws.rows_b, &ws.straggler_rows, &ws.straggler_nodes, &ws.leaf_of_row, &ws.pair_rows,
                    &ws.pair_leaves})
        v->assign(S + 16, 0);
    const forest_kernels::Block block{ws.columns.data(), log_stride};

    for (Index r0 = 0; r0 < n; r0 += stride) {
        const int rows = static_cast<int>(std::min(stride, n - r0));
        const float* Xb = X + r0 * F;
        // Transpose the block to columns, 64 rows at a time (the rows stay in L1 while each
        // column gets 64 values in a row); then note the rows holding a NaN (vigra answers 0
        // for them), column by column.
        for (int i0 = 0; i0 < rows; i0 += 64) {
            const int i1 = std::min(rows, i0 + 64);
            // The block most likely comes from memory: ask for the next 64 rows meanwhile.
            const char* next = reinterpret_cast<const char*>(Xb + static_cast<std::size_t>(i1) * static_cast<std::size_t>(F));
            const std::size_t next_bytes = sizeof(float) * static_cast<std::size_t>(std::min(64, rows - i1)) * static_cast<std::size_t>(F);
            for (std::size_t byte = 0; byte < next_bytes; byte += 64) __builtin_prefetch(next + byte);
            for (Index f = 0; f < F; ++f) {
                float* dst = ws.columns.data() + (static_cast<std::size_t>(f) << log_stride);
                for (int i = i0; i < i1; ++i) dst[i] = Xb[static_cast<std::size_t>(i) * static_cast<std::size_t>(F) + static_cast<std::size_t>(f)];
            }
        }
        unsigned char* has_nan = ws.has_nan.data();
        std::fill_n(has_nan, rows, 0);
        for (Index f = 0; f < F; ++f) {
            const float* column = ws.columns.data() + (static_cast<std::size_t>(f) << log_stride);
            for (int i = 0; i < rows; ++i) has_nan[i] |= column[i] != column[i];
        }
        std::fill(ws.acc.begin(), ws.acc.end(), 0.0f);
        for (const Forest& forest : forests_) {
            const double constant_total = forest.constant_row_total();
            const bool per_row_total = std::isnan(constant_total);
            std::fill(ws.prob.begin(), ws.prob.end(), 0.0f);
            if (per_row_total) std::fill(ws.total.begin(), ws.total.end(), 0.0);
            float* prob = ws.prob.data();
            double* total = ws.total.data();
            if (forest.leaves_are_one_hot()) {
                // Every sum is exact, so each leaf adds its one value where the rows reach it.
                const std::int32_t* hot_class = forest.leaf_hot_classes();
                const float* hot_value = forest.leaf_hot_values();
                const double* leaf_totals = forest.leaf_totals();
                for (std::size_t t = 0; t < forest.tree_count(); ++t) {
                    route_block(forest, t, k, block, rows, ws, [&](std::int32_t leaf, const std::int32_t* r, int count) {
                        const std::int32_t c = hot_class[leaf];
                        if (c >= 0) {
                            float* p = prob + static_cast<std::size_t>(c) * S;
                            const float v = hot_value[leaf];
                            for (int i = 0; i < count; ++i) p[r[i]] += v;
                        }
                        if (per_row_total) {
                            const double lt = leaf_totals[leaf];
                            for (int i = 0; i < count; ++i) total[r[i]] += lt;
                        }
                    });
                }
            } else {
                // vigra, per row and tree: prob[l] += float(v_l) for each class, in float;
                // total += v_l for each class, in double. Rows are independent, so this runs
                // across rows; each row still sees its trees and classes in vigra's order.
                const bool exact = forest.sums_are_exact();
                const float* values = forest.leaf_values();
                const double* weights = forest.leaf_weights();
                const double* leaf_totals = forest.leaf_totals();
                std::int32_t* leaf = ws.leaf_of_row.data();
                for (std::size_t t = 0; t < forest.tree_count(); ++t) {
                    route_block(forest, t, k, block, rows, ws, [&](std::int32_t l, const std::int32_t* r, int count) {
                        for (int i = 0; i < count; ++i) leaf[r[i]] = l;
                    });
                    for (Index l = 0; l < K; ++l) {
                        float* p = prob + static_cast<std::size_t>(l) * S;
                        const float* v = values + l;
                        for (int i = 0; i < rows; ++i) p[i] += v[static_cast<std::size_t>(leaf[i]) * static_cast<std::size_t>(K)];
                    }
                    if (!per_row_total) continue;
                    if (exact) {  // the order of the double additions cannot matter
                        for (int i = 0; i < rows; ++i) total[i] += leaf_totals[leaf[i]];
                    } else {
                        for (int i = 0; i < rows; ++i) {
                            const double* w = weights + static_cast<std::size_t>(leaf[i]) * static_cast<std::size_t>(K);
                            double sum = total[i];
                            for (Index l = 0; l < K; ++l) sum += w[l];
                            total[i] = sum;
                        }
                    }
                }
            }
            // vigra: prob[l] /= float(total), a row holding NaN gets 0; ilastik: P_f *= tree count;
            // sum += P_f (float32).
            const float tree_count_f = static_cast<float>(forest.tree_count());
            float* __restrict row_total = ws.row_total.data();
            if (per_row_total) {
                for (int i = 0; i < rows; ++i) row_total[i] = static_cast<float>(total[i]);
            } else {
                std::fill_n(row_total, rows, static_cast<float>(constant_total));
            }
            const unsigned char* __restrict nan = ws.has_nan.data();
            for (Index l = 0; l < K; ++l) {
                const float* __restrict p = ws.prob.data() + static_cast<std::size_t>(l) * S;
                float* __restrict acc = ws.acc.data() + static_cast<std::size_t>(l) * S;
                for (int i = 0; i < rows; ++i) {
                    const float share = (p[i] / row_total[i]) * tree_count_f;
                    acc[i] += nan[i] ? 0.0f : share;
                }
            }
        }
        // ilastik: sum /= total tree count; class l goes to channel channel_of_class[l].
        float* o = out + r0 * n_out_;
        std::fill(o, o + static_cast<Index>(rows) * n_out_, 0.0f);
        for (Index l = 0; l < K; ++l) {
            const float* acc = ws.acc.data() + static_cast<std::size_t>(l) * S;
            const int ch = channel_of_class_[static_cast<std::size_t>(l)];
            for (int i = 0; i < rows; ++i) o[static_cast<Index>(i) * n_out_ + ch] = acc[i] / total_trees_;
        }
    }
}

}  // namespace ilb
