// Forest kernels with AVX2: 8 rows per instruction (see forest_kernels.hpp). AVX2 has no
// compress/expand, so lanes are packed and spread with permutations from 256-entry tables.
#include "forest_kernels.hpp"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

namespace ilb::forest_kernels {
namespace avx2 {
namespace {

struct Table {
    std::uint64_t entry[256];  // 8 lane indices, one byte each
};

// compress[m]: the lanes set in m, in order, then zeros (to pack those lanes to the front).
constexpr Table make_compress() {
    Table t{};
    for (unsigned m = 0; m < 256; ++m) {
        std::uint64_t v = 0;
        int k = 0;
        for (int j = 0; j < 8; ++j)
            if (m >> j & 1) v |= static_cast<std::uint64_t>(j) << (8 * k++);
        t.entry[m] = v;
    }
    return t;
}

// expand[m]: for each lane j set in m, how many lanes of m come before it (to spread the
// front elements of a vector over the lanes of m).
constexpr Table make_expand() {
    Table t{};
    for (unsigned m = 0; m < 256; ++m) {
        std::uint64_t v = 0;
        int k = 0;
        for (int j = 0; j < 8; ++j)
            if (m >> j & 1) v |= static_cast<std::uint64_t>(k++) << (8 * j);
        t.entry[m] = v;
    }
    return t;
}

constexpr Table kCompress = make_compress();
constexpr Table kExpand = make_expand();

__m256i lanes(const Table& table, unsigned mask) {
    return _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<long long>(table.entry[mask])));
}

// Left rows are packed forward from dst[0], right rows backward from dst[n]. In the vector
// loop nl + nr = i and i + 8 <= n, so the full store at dst + nl never reaches the right rows;
// the scalar tail writes every row to both ends, and the later rows overwrite what is not theirs.
template <bool kInOrder>
int partition_rows(const std::int32_t* rows, int n, const float* column, float threshold, std::int32_t* dst) {
    const __m256 t = _mm256_set1_ps(threshold);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    // A gather merges into its destination register, so it waits for that register's last
    // writer; GCC may pick one written late in the previous iteration. Opaque zero and mask
    // operands make it copy a fresh register instead.
    __m256 zero = _mm256_setzero_ps();
    __m256 all = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    __asm__("" : "+x"(zero), "+x"(all));
    int nl = 0, nr = 0, i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i r;
        __m256 x;
        if (kInOrder) {
            r = _mm256_add_epi32(lane, _mm256_set1_epi32(i));
            x = _mm256_loadu_ps(column + i);
        } else {
            r = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows + i));
            x = _mm256_mask_i32gather_ps(zero, column, r, all, 4);
        }
        const unsigned go_left = static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(x, t, _CMP_LT_OQ)));  // NaN goes right
        const int cl = __builtin_popcount(go_left), c = 8 - cl;
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + nl), _mm256_permutevar8x32_epi32(r, lanes(kCompress, go_left)));
        _mm256_maskstore_epi32(dst + (n - nr - c), _mm256_cmpgt_epi32(_mm256_set1_epi32(c), lane),
                               _mm256_permutevar8x32_epi32(r, lanes(kCompress, go_left ^ 0xffu)));
        nl += cl;
        nr += c;
    }
    for (; i < n; ++i) {
        const std::int32_t r = kInOrder ? i : rows[i];
        const int goes_right = !(column[r] < threshold);
        dst[nl] = r;
        dst[n - 1 - nr] = r;
        nl += 1 - goes_right;
        nr += goes_right;
    }
    return nl;
}

int partition(const std::int32_t* rows, int n, const float* column, float threshold, std::int32_t* dst) {
    return rows ? partition_rows<false>(rows, n, column, threshold, dst) : partition_rows<true>(rows, n, column, threshold, dst);
}

// Four vectors of 8 lanes walk independently; a lane whose row reaches its leaf hands the
// (row, leaf) pair out and takes the next row of the list at once.
constexpr int kVectors = 4;

void walk(const std::uint64_t* nodes, int feature_bits, Block block, const std::int32_t* rows, const std::int32_t* starts, int n,
          std::int32_t* pair_rows, std::int32_t* pair_leaves) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i feature_mask = _mm256_set1_epi32(static_cast<int>((1u << feature_bits) - 1));
    const __m256i leaf_mask = _mm256_set1_epi32(0x7fffffff);
    const __m256i count = _mm256_set1_epi32(n);
    const __m128i child_shift = _mm_cvtsi32_si128(feature_bits);
    const __m128i stride_shift = _mm_cvtsi32_si128(block.log_stride);
    const long long* node_words = reinterpret_cast<const long long*>(nodes);
    int next = 0, pairs = 0;
    __m256i node[kVectors], row[kVectors], active[kVectors];
    for (int v = 0; v < kVectors; ++v) {
        active[v] = _mm256_cmpgt_epi32(count, _mm256_add_epi32(lane, _mm256_set1_epi32(next)));
        row[v] = _mm256_maskload_epi32(rows + next, active[v]);
        node[v] = _mm256_maskload_epi32(starts + next, active[v]);
        next += 8;
    }
    if (next > n) next = n;
    for (;;) {
        int any = 0;
        for (int v = 0; v < kVectors; ++v) {
            // Gather the 8-byte nodes (threshold, packed) of 4 lanes at a time and split them.
            const __m256i lo = _mm256_mask_i32gather_epi64(_mm256_setzero_si256(), node_words, _mm256_castsi256_si128(node[v]),
                                                           _mm256_cvtepi32_epi64(_mm256_castsi256_si128(active[v])), 8);
            const __m256i hi = _mm256_mask_i32gather_epi64(_mm256_setzero_si256(), node_words, _mm256_extracti128_si256(node[v], 1),
                                                           _mm256_cvtepi32_epi64(_mm256_extracti128_si256(active[v], 1)), 8);
            const __m256 lo_f = _mm256_castsi256_ps(lo), hi_f = _mm256_castsi256_ps(hi);
            const __m256 threshold = _mm256_castpd_ps(
                _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo_f, hi_f, _MM_SHUFFLE(2, 0, 2, 0))), _MM_SHUFFLE(3, 1, 2, 0)));
            const __m256i packed = _mm256_castpd_si256(
                _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo_f, hi_f, _MM_SHUFFLE(3, 1, 3, 1))), _MM_SHUFFLE(3, 1, 2, 0)));
            // Lanes at a leaf: hand out (row, leaf) and refill from the list.
            const __m256i at_leaf = _mm256_and_si256(active[v], _mm256_srai_epi32(packed, 31));
            const unsigned finished_lanes = static_cast<unsigned>(_mm256_movemask_ps(_mm256_castsi256_ps(at_leaf)));
            const __m256i pack = lanes(kCompress, finished_lanes);
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(pair_rows + pairs), _mm256_permutevar8x32_epi32(row[v], pack));
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(pair_leaves + pairs),
                                _mm256_permutevar8x32_epi32(_mm256_and_si256(packed, leaf_mask), pack));
            const int finished = __builtin_popcount(finished_lanes);
            pairs += finished;
            const __m256i spread = lanes(kExpand, finished_lanes);
            const __m256i position = _mm256_add_epi32(spread, _mm256_set1_epi32(next));
            const __m256i new_row =
                _mm256_permutevar8x32_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows + next)), spread);
            const __m256i new_node =
                _mm256_permutevar8x32_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(starts + next)), spread);
            next += finished;
            if (next > n) next = n;
            const __m256i walking = _mm256_andnot_si256(at_leaf, active[v]);
            active[v] = _mm256_or_si256(walking, _mm256_and_si256(at_leaf, _mm256_cmpgt_epi32(count, position)));
            any |= _mm256_movemask_ps(_mm256_castsi256_ps(active[v]));
            row[v] = _mm256_blendv_epi8(row[v], new_row, at_leaf);
            // One step down for the lanes still walking.
            const __m256i column = _mm256_sll_epi32(_mm256_and_si256(packed, feature_mask), stride_shift);
            const __m256 x = _mm256_mask_i32gather_ps(_mm256_setzero_ps(), block.columns, _mm256_or_si256(column, row[v]),
                                                      _mm256_castsi256_ps(walking), 4);
            const __m256i go_right = _mm256_castps_si256(_mm256_cmp_ps(x, threshold, _CMP_NLT_UQ));  // all ones: +1
            const __m256i left = _mm256_srl_epi32(packed, child_shift);
            node[v] = _mm256_blendv_epi8(_mm256_sub_epi32(left, go_right), new_node, at_leaf);
        }
        if (!any) break;
    }
}

constexpr Kernels kKernels{partition, walk, 64};

}  // namespace
}  // namespace avx2

const Kernels* avx2_kernels() { return &avx2::kKernels; }

}  // namespace ilb::forest_kernels

#else

namespace ilb::forest_kernels {
const Kernels* avx2_kernels() { return nullptr; }
}  // namespace ilb::forest_kernels

#endif
