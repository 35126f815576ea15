// Forest kernels with AVX-512 (F, DQ, VL, BW): 16 rows per instruction (see forest_kernels.hpp).
#include "forest_kernels.hpp"

#if defined(__x86_64__) || defined(_M_X64)
// GCC 12's AVX-512 headers trip its own uninitialized-variable warnings (_mm512_undefined_*
// inside the intrinsics, GCC bug 105593).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

namespace ilb::forest_kernels {
namespace avx512 {
namespace {

// Left rows are packed forward from dst[0], right rows backward from dst[n]. In the main loop
// nl + nr = i and i + 16 <= n, so the full store at dst + nl never reaches the right rows.
template <bool kInOrder>
int partition_rows(const std::int32_t* rows, int n, const float* column, float threshold, std::int32_t* dst) {
    const __m512 t = _mm512_set1_ps(threshold);
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    // A gather merges into its destination register, so it waits for that register's last
    // writer. GCC drops a constant zero source and may reuse a register written late in the
    // previous iteration, chaining the iterations; an opaque zero (and mask) keeps a fresh one.
    __m512 zero = _mm512_setzero_ps();
    __mmask16 all = 0xffff;
    __asm__("" : "+v"(zero), "+k"(all));
    int nl = 0, nr = 0, i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i r;
        __m512 x;
        if (kInOrder) {
            r = _mm512_add_epi32(lane, _mm512_set1_epi32(i));
            x = _mm512_loadu_ps(column + i);
        } else {
            r = _mm512_loadu_si512(rows + i);
            x = _mm512_mask_i32gather_ps(zero, all, r, column, 4);
        }
        const __mmask16 go_right = _mm512_cmp_ps_mask(x, t, _CMP_NLT_UQ);  // !(x < t): NaN goes right, as in vigra
        const int c = __builtin_popcount(go_right);
        _mm512_storeu_si512(dst + nl, _mm512_maskz_compress_epi32(static_cast<__mmask16>(~go_right), r));
        _mm512_mask_storeu_epi32(dst + (n - nr - c), static_cast<__mmask16>((1u << c) - 1), _mm512_maskz_compress_epi32(go_right, r));
        nr += c;
        nl += 16 - c;
    }
    if (i < n) {
        const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
        __m512i r;
        __m512 x;
        if (kInOrder) {
            r = _mm512_add_epi32(lane, _mm512_set1_epi32(i));
            x = _mm512_maskz_loadu_ps(m, column + i);
        } else {
            r = _mm512_maskz_loadu_epi32(m, rows + i);
            x = _mm512_mask_i32gather_ps(zero, m, r, column, 4);
        }
        const __mmask16 go_right = _mm512_mask_cmp_ps_mask(m, x, t, _CMP_NLT_UQ);
        const __mmask16 go_left = m & static_cast<__mmask16>(~go_right);
        const int cl = __builtin_popcount(go_left), c = __builtin_popcount(go_right);
        _mm512_mask_storeu_epi32(dst + nl, static_cast<__mmask16>((1u << cl) - 1), _mm512_maskz_compress_epi32(go_left, r));
        _mm512_mask_storeu_epi32(dst + (n - nr - c), static_cast<__mmask16>((1u << c) - 1), _mm512_maskz_compress_epi32(go_right, r));
        nl += cl;
    }
    return nl;
}

int partition(const std::int32_t* rows, int n, const float* column, float threshold, std::int32_t* dst) {
    return rows ? partition_rows<false>(rows, n, column, threshold, dst) : partition_rows<true>(rows, n, column, threshold, dst);
}

// Four vectors of 16 lanes walk independently; a lane whose row reaches its leaf hands the
// (row, leaf) pair out and takes the next row of the list at once, so lanes never idle
// until the list runs out.
constexpr int kVectors = 4;

void walk(const std::uint64_t* nodes, int feature_bits, Block block, const std::int32_t* rows, const std::int32_t* starts, int n,
          std::int32_t* pair_rows, std::int32_t* pair_leaves) {
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i one = _mm512_set1_epi32(1);
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_add_epi32(even, one);
    const __m512i feature_mask = _mm512_set1_epi32(static_cast<int>((1u << feature_bits) - 1));
    const __m512i leaf_mask = _mm512_set1_epi32(0x7fffffff);
    const __m512i count = _mm512_set1_epi32(n);
    const __m128i child_shift = _mm_cvtsi32_si128(feature_bits);
    const __m128i stride_shift = _mm_cvtsi32_si128(block.log_stride);
    int next = 0, pairs = 0;
    __m512i node[kVectors], row[kVectors];
    __mmask16 active[kVectors];
    for (int v = 0; v < kVectors; ++v) {
        active[v] = _mm512_cmplt_epi32_mask(_mm512_add_epi32(lane, _mm512_set1_epi32(next)), count);
        row[v] = _mm512_maskz_loadu_epi32(active[v], rows + next);
        node[v] = _mm512_maskz_loadu_epi32(active[v], starts + next);
        next += 16;
    }
    if (next > n) next = n;
    for (;;) {
        __mmask16 any = 0;
        for (int v = 0; v < kVectors; ++v) {
            // Gather the 8-byte nodes (threshold, packed) of 8 lanes at a time and split them.
            const __m512i lo = _mm512_mask_i32gather_epi64(_mm512_setzero_si512(), static_cast<__mmask8>(active[v]),
                                                           _mm512_castsi512_si256(node[v]), nodes, 8);
            const __m512i hi = _mm512_mask_i32gather_epi64(_mm512_setzero_si512(), static_cast<__mmask8>(active[v] >> 8),
                                                           _mm512_extracti64x4_epi64(node[v], 1), nodes, 8);
            const __m512 threshold = _mm512_castsi512_ps(_mm512_permutex2var_epi32(lo, even, hi));
            const __m512i packed = _mm512_permutex2var_epi32(lo, odd, hi);
            // Lanes at a leaf: hand out (row, leaf) and refill from the list.
            const __mmask16 at_leaf = active[v] & _mm512_movepi32_mask(packed);
            _mm512_storeu_si512(pair_rows + pairs, _mm512_maskz_compress_epi32(at_leaf, row[v]));
            _mm512_storeu_si512(pair_leaves + pairs, _mm512_maskz_compress_epi32(at_leaf, _mm512_and_si512(packed, leaf_mask)));
            const int finished = __builtin_popcount(at_leaf);
            pairs += finished;
            const __m512i position = _mm512_maskz_expand_epi32(at_leaf, _mm512_add_epi32(lane, _mm512_set1_epi32(next)));
            const __m512i new_row = _mm512_maskz_expand_epi32(at_leaf, _mm512_loadu_si512(rows + next));
            const __m512i new_node = _mm512_maskz_expand_epi32(at_leaf, _mm512_loadu_si512(starts + next));
            next += finished;
            if (next > n) next = n;
            const __mmask16 walking = active[v] & static_cast<__mmask16>(~at_leaf);
            active[v] = walking | _mm512_mask_cmplt_epi32_mask(at_leaf, position, count);
            any |= active[v];
            row[v] = _mm512_mask_mov_epi32(row[v], at_leaf, new_row);
            // One step down for the lanes still walking.
            const __m512i column = _mm512_sll_epi32(_mm512_and_si512(packed, feature_mask), stride_shift);
            const __m512 x = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), walking, _mm512_or_si512(column, row[v]), block.columns, 4);
            const __mmask16 go_right = _mm512_mask_cmp_ps_mask(walking, x, threshold, _CMP_NLT_UQ);
            const __m512i left = _mm512_srl_epi32(packed, child_shift);
            node[v] = _mm512_mask_mov_epi32(_mm512_mask_add_epi32(left, go_right, left, one), at_leaf, new_node);
        }
        if (!any) break;
    }
}

constexpr Kernels kKernels{partition, walk, 128};

}  // namespace
}  // namespace avx512

const Kernels* avx512_kernels() { return &avx512::kKernels; }

}  // namespace ilb::forest_kernels

#else

namespace ilb::forest_kernels {
const Kernels* avx512_kernels() { return nullptr; }
}  // namespace ilb::forest_kernels

#endif
