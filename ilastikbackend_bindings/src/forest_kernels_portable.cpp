// Forest kernels in plain C++, for every CPU (see forest_kernels.hpp).
#include "forest_kernels.hpp"

namespace ilb::forest_kernels {
namespace {

constexpr std::uint32_t kLeafFlag = 0x80000000u;

float as_float(std::uint32_t u) {
    union {
        std::uint32_t u;
        float f;
    } v{u};
    return v.f;
}

int partition(const std::int32_t* rows, int n, const float* column, float threshold, std::int32_t* dst) {
    // Branch-free: every row is written to both ends (left rows forward from dst[0], right rows
    // backward from dst[n]) and only one end's count moves on; a later row always overwrites
    // the slot a row wrote that is not its own.
    int nl = 0, nr = 0;
    for (int i = 0; i < n; ++i) {
        const std::int32_t r = rows ? rows[i] : i;
        const int goes_right = !(column[r] < threshold);
        dst[nl] = r;
        dst[n - 1 - nr] = r;
        nl += 1 - goes_right;
        nr += goes_right;
    }
    return nl;
}

void walk(const std::uint64_t* nodes, int feature_bits, Block block, const std::int32_t* rows, const std::int32_t* starts, int n,
          std::int32_t* pair_rows, std::int32_t* pair_leaves) {
    const std::uint32_t feature_mask = (1u << feature_bits) - 1;
    // Four rows at a time, each until its leaf: independent walks keep the core busy while
    // one of them waits for memory.
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        std::uint32_t node[4] = {static_cast<std::uint32_t>(starts[i]), static_cast<std::uint32_t>(starts[i + 1]),
                                 static_cast<std::uint32_t>(starts[i + 2]), static_cast<std::uint32_t>(starts[i + 3])};
        unsigned done = 0;
        while (done != 0xf) {
            for (int j = 0; j < 4; ++j) {
                if (done >> j & 1) continue;
                const std::uint64_t nd = nodes[node[j]];
                const std::uint32_t packed = static_cast<std::uint32_t>(nd >> 32);
                if (packed & kLeafFlag) {
                    pair_rows[i + j] = rows[i + j];
                    pair_leaves[i + j] = static_cast<std::int32_t>(packed & ~kLeafFlag);
                    done |= 1u << j;
                    continue;
                }
                const float x = block.columns[(static_cast<std::size_t>(packed & feature_mask) << block.log_stride) +
                                              static_cast<std::size_t>(rows[i + j])];
                node[j] = (packed >> feature_bits) + !(x < as_float(static_cast<std::uint32_t>(nd)));
            }
        }
    }
    for (; i < n; ++i) {
        std::uint32_t node = static_cast<std::uint32_t>(starts[i]);
        for (;;) {
            const std::uint64_t nd = nodes[node];
            const std::uint32_t packed = static_cast<std::uint32_t>(nd >> 32);
            if (packed & kLeafFlag) {
                pair_rows[i] = rows[i];
                pair_leaves[i] = static_cast<std::int32_t>(packed & ~kLeafFlag);
                break;
            }
            const float x =
                block.columns[(static_cast<std::size_t>(packed & feature_mask) << block.log_stride) + static_cast<std::size_t>(rows[i])];
            node = (packed >> feature_bits) + !(x < as_float(static_cast<std::uint32_t>(nd)));
        }
    }
}

constexpr Kernels kKernels{partition, walk, 32};

}  // namespace

const Kernels* portable_kernels() { return &kKernels; }

}  // namespace ilb::forest_kernels
