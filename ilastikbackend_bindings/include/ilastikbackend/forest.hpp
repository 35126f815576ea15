// vigra random forests as ilastik stores them (RandomForest HDF5 layout, version 0.1),
// flattened for fast traversal, and ilastik's tree-count-weighted combination of forests.
//
// Every evaluation here gives vigra's predictProbabilities bit for bit: each row takes the
// path vigra takes in every tree, and its leaf values are summed with the same float/double
// operations in the same order (trees in order, classes in order). What differs is how rows
// meet the trees (see Ensemble::predict).
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "box.hpp"

namespace ilb {

class Forest {
   public:
    Forest(int class_count, int column_count, bool predict_weighted);

    // Adds one tree from vigra's `topology` (int32) and `parameters` (float64) arrays.
    void add_tree(const std::int32_t* topology, std::size_t n_topology, const double* parameters, std::size_t n_parameters);

    int class_count() const { return class_count_; }
    int column_count() const { return column_count_; }
    std::size_t tree_count() const { return tree_first_node_.size(); }
    std::size_t node_count() const { return nodes_.size(); }
    std::size_t leaf_count() const { return leaf_totals_.size(); }
    // Whether every sum of leaf values this forest can make is exact in float and double, so
    // that the order of the additions cannot change a bit (ilastik's trees grown to purity).
    bool sums_are_exact() const { return exact_; }

    // Nodes of tree t start at tree_nodes(t): breadth-first from the root (node 0), the two
    // children of a split next to each other (left, right). A node is 8 bytes:
    //   bits  0..31: a split's threshold as a float, chosen so that x < float_t <=> x < t for
    //                every float x, t being vigra's double threshold (the smallest float >= t);
    //   bits 32..63: a split: (index of its left child within the tree) << feature_bits |
    //                feature column; a leaf: kLeafFlag | index of the leaf in the forest.
    static constexpr std::uint32_t kLeafFlag = 0x80000000u;
    const std::uint64_t* tree_nodes(std::size_t t) const { return nodes_.data() + tree_first_node_[t]; }
    int feature_bits() const { return feature_bits_; }
    // Per leaf, class_count values: float(p_l * w) (what vigra adds into its float row) and
    // p_l * w (what it adds into its double total), w = leaf weight if predict_weighted else 1.
    const float* leaf_values() const { return leaf_values_.data(); }
    const double* leaf_weights() const { return leaf_weights_.data(); }
    // Per leaf, sum_l p_l * w; meaningful as a summand only when sums_are_exact().
    const double* leaf_totals() const { return leaf_totals_.data(); }
    // When sums_are_exact() and every leaf has the same total, vigra's per-row total is this
    // constant (tree_count * that total); NaN otherwise.
    double constant_row_total() const { return constant_total_; }
    // Whether sums_are_exact() and no leaf has more than one non-zero value: then leaf i adds
    // leaf_hot_values()[i] to class leaf_hot_classes()[i] (-1: to none) and nothing else, and
    // adding the zeros can be skipped (x + 0 == x).
    bool leaves_are_one_hot() const { return exact_ && one_hot_; }
    const std::int32_t* leaf_hot_classes() const { return leaf_hot_class_.data(); }
    const float* leaf_hot_values() const { return leaf_hot_value_.data(); }

    // The evaluation the core used before Ensemble::predict: 16 rows at a time through every
    // tree, a fixed number of steps per tree (leaves loop onto themselves), 16-byte nodes in
    // depth-first order. Kept as an independent reference for tests and bench/forest.py.
    // Adds this forest's probabilities times its tree count into acc (n x class_count).
    void accumulate_reference(const float* X, Index n, float* acc) const;

   private:
    void update_exactness();

    int class_count_, column_count_;
    bool weighted_;
    int feature_bits_ = 0;
    std::vector<std::uint64_t> nodes_;
    std::vector<std::uint32_t> tree_first_node_;
    std::vector<float> leaf_values_;
    std::vector<double> leaf_weights_;
    std::vector<double> leaf_totals_;
    std::vector<std::int32_t> leaf_hot_class_;
    std::vector<float> leaf_hot_value_;
    bool one_hot_ = true;
    // Exactness bookkeeping: every leaf value is a multiple of 2^-fraction_bits_, and the sums
    // below bound every partial sum (in units of 2^-fraction_bits_ once scaled).
    bool exact_ = true;
    int fraction_bits_ = 0;
    double sum_of_max_value_ = 0.0, sum_of_max_total_ = 0.0;
    double first_leaf_total_ = std::numeric_limits<double>::quiet_NaN();
    bool same_leaf_totals_ = true;
    double constant_total_ = std::numeric_limits<double>::quiet_NaN();
};

// Which instruction set walks the trees. All give the same bits.
enum class ForestIsa { Auto, Portable, Avx2, Avx512 };
// Names of the implementations this CPU (and this build) can run, best first.
std::vector<std::string> forest_isas_available();
ForestIsa forest_isa_from_name(const std::string& name);
const char* forest_isa_name(ForestIsa isa);

class Ensemble {
   public:
    // channel_of_class[i]: output channel of the forests' class i (ilastik: known_label - 1).
    Ensemble(std::vector<Forest> forests, std::vector<int> channel_of_class, int output_channels);

    int column_count() const { return forests_.front().column_count(); }
    int output_channels() const { return n_out_; }
    const std::vector<Forest>& forests() const { return forests_; }
    std::size_t tree_count() const;
    std::size_t node_count() const;

    // Scratch memory of one predict call; reuse it across calls on one thread.
    struct Workspace {
        std::vector<float> columns, prob, acc, row_total;
        std::vector<double> total;
        std::vector<std::int32_t> rows_a, rows_b, straggler_rows, straggler_nodes, leaf_of_row, pair_rows, pair_leaves;
        std::vector<unsigned char> has_nan;
        struct Pending {
            std::int32_t node, begin, end;
            bool in_b;
        };
        std::vector<Pending> stack;
    };

    // ilastik's probabilities for rows [0, n) of X (n x column_count, row-major) into out
    // (n x output_channels), float32. Rows are taken in blocks that stay in cache; each tree
    // sorts a block's rows down from its root (partitioning the row list at every node that
    // many rows reach, so one node serves them all), and walks the few rows left at deep
    // nodes lane by lane with SIMD gathers.
    void predict(const float* X, Index n, float* out, ForestIsa isa = ForestIsa::Auto) const;
    void predict(const float* X, Index n, float* out, Workspace& ws, ForestIsa isa = ForestIsa::Auto) const;
    // The same numbers from the core's previous evaluation (Forest::accumulate_reference).
    void predict_reference(const float* X, Index n, float* out) const;

   private:
    std::vector<Forest> forests_;
    std::vector<int> channel_of_class_;
    int n_out_;
    float total_trees_;
};

}  // namespace ilb
