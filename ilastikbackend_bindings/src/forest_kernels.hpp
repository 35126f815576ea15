// The two inner loops of the forest evaluation, one implementation per instruction set.
//
// Each kernel file is compiled with its own instruction-set flags and chosen at run time, so
// it must not define or instantiate anything that could be shared with other files (no
// std:: templates, no inline functions from headers other than intrinsics): the linker could
// otherwise keep the AVX-512 copy of a function for everyone. Everything lives in an
// ISA-specific namespace and uses plain loops and intrinsics.
//
// Both loops only route rows (x < threshold goes left, anything else, NaN included, right,
// as vigra does); no floating-point arithmetic happens here, so every kernel gives the same
// leaves and the results cannot depend on the instruction set.
#pragma once

#include <cstdint>

namespace ilb::forest_kernels {

// A block of rows stored column by column: the value of feature f in row r is
// columns[(f << log_stride) + r], rows numbered from 0 within the block.
struct Block {
    const float* columns;
    int log_stride;
};

// Routes rows[0, n) (row numbers within the block) at a split on `column` (the block's
// column of the split's feature) at `threshold`: writes the rows going left to dst[0, nl) and
// those going right to dst[nl, n), each side in any order, and returns nl. dst has room for
// exactly n values and must not be written past dst[n - 1]. rows == nullptr stands for the
// rows 0, 1, .., n - 1 (the root of a tree: the column is read in order, not gathered).
using PartitionFn = int (*)(const std::int32_t* rows, int n, const float* column, float threshold, std::int32_t* dst);

// Walks row rows[i] from node starts[i] of a tree (see Forest::tree_nodes) down to its leaf,
// for i < n, and hands out the n pairs (row, leaf index) as pair_rows[j], pair_leaves[j], in
// any order. rows and starts may be read up to index n + 15; pair_rows and pair_leaves need
// room for n + 16 values.
using WalkFn = void (*)(const std::uint64_t* nodes, int feature_bits, Block block, const std::int32_t* rows,
                        const std::int32_t* starts, int n, std::int32_t* pair_rows, std::int32_t* pair_leaves);

struct Kernels {
    PartitionFn partition;
    WalkFn walk;
    // Nodes reached by fewer rows than this are walked, not partitioned: a partition pass costs
    // a little per row plus a fixed amount per node, a walk step costs more per row (measured).
    int min_partition_rows;
};

// nullptr where the build has no such kernel (not x86-64); the caller checks the CPU.
const Kernels* portable_kernels();
const Kernels* avx2_kernels();
const Kernels* avx512_kernels();

}  // namespace ilb::forest_kernels
