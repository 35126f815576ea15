// vigra random forests as ilastik stores them (RandomForest HDF5 layout, version 0.1),
// flattened for fast traversal, and ilastik's tree-count-weighted combination of forests.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "box.hpp"

namespace ilb {

class Forest {
   public:
    Forest(int class_count, int column_count, bool predict_weighted)
        : class_count_(class_count), column_count_(column_count), weighted_(predict_weighted) {
        if (class_count < 1) throw std::invalid_argument("forest needs at least one class");
        if (column_count < 1) throw std::invalid_argument("forest needs at least one feature column");
    }

    // Adds one tree from vigra's `topology` (int32) and `parameters` (float64) arrays.
    void add_tree(const std::int32_t* topology, std::size_t n_topology, const double* parameters, std::size_t n_parameters);

    int class_count() const { return class_count_; }
    int column_count() const { return column_count_; }
    std::size_t tree_count() const { return roots_.size(); }
    std::size_t node_count() const { return nodes_.size(); }

    // Adds this forest's predictProbabilities for rows [0, n) of X (n x column_count, row-major)
    // into `acc` (n x class_count), each row scaled by the tree count as ilastik does
    // (P_f *= treeCount; total += P_f), in float32. Rows holding NaN get 0, like vigra.
    void accumulate(const float* X, Index n, float* acc) const;

   private:
    // Internal nodes split on `feature` at `threshold`; leaves loop onto themselves so that a
    // walk can run a fixed number of steps without branches.
    struct Node {
        std::int32_t feature;
        float threshold;  // the smallest float >= vigra's double threshold: x < t  <=>  x < float_t
        std::int32_t child[2];
    };
    int class_count_, column_count_;
    bool weighted_;
    std::vector<Node> nodes_;
    std::vector<std::int32_t> roots_;
    std::vector<std::int32_t> depths_;
    std::vector<std::int32_t> leaf_of_node_;  // -1 for internal nodes
    std::vector<float> leaf_values_;          // float(p_l * w), class_count per leaf
    std::vector<double> leaf_totals_;         // sum_l p_l * w (vigra accumulates it in double)
};

class Ensemble {
   public:
    // channel_of_class[i]: output channel of the forests' class i (ilastik: known_label - 1).
    Ensemble(std::vector<Forest> forests, std::vector<int> channel_of_class, int output_channels);

    int column_count() const { return forests_.front().column_count(); }
    int output_channels() const { return n_out_; }
    const std::vector<Forest>& forests() const { return forests_; }

    // out: n x output_channels, float32.
    void predict(const float* X, Index n, float* out) const;

   private:
    std::vector<Forest> forests_;
    std::vector<int> channel_of_class_;
    int n_out_;
    float total_trees_;
};

}  // namespace ilb
