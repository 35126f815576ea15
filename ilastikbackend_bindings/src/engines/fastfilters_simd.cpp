// The instruction sets behind ffsimd::Kernels. fastfilters_simd.inc holds the arithmetic once;
// it is compiled here twice: for one float lane with baseline x86-64 instructions (the portable
// path: std::fma is correctly rounded everywhere, SSE's rsqrtss/rcpss are the same tables as
// AVX's vrsqrtps/vrcpps), and for eight lanes under `target("avx2,fma")`, used when the CPU
// has both. Nothing here may be contracted into FMAs by the compiler (-ffp-contract=off).
#include "fastfilters_simd.hpp"

#include "ilastikbackend/engine.hpp"

#include <immintrin.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace ilb {
namespace ffsimd {

namespace portable {

// One float lane. Masks are all-ones / all-zeros bit patterns, as in SSE/AVX.
struct Lane {
    static constexpr int W = 1;
    using I = std::int32_t;
    float v;

    static Lane load(const float* p) { return {*p}; }
    void store(float* p) const { *p = v; }
    static Lane set1(float x) { return {x}; }
    Lane operator+(Lane b) const { return {v + b.v}; }
    Lane operator-(Lane b) const { return {v - b.v}; }
    Lane operator*(Lane b) const { return {v * b.v}; }
    static Lane fma(Lane a, Lane b, Lane c) { return {std::fma(a.v, b.v, c.v)}; }
    static Lane sqrt(Lane a) { return {std::sqrt(a.v)}; }
    static Lane rsqrt(Lane a) { return {_mm_cvtss_f32(_mm_rsqrt_ss(_mm_set_ss(a.v)))}; }
    static Lane rcp(Lane a) { return {_mm_cvtss_f32(_mm_rcp_ss(_mm_set_ss(a.v)))}; }
    static Lane min(Lane a, Lane b) { return {a.v < b.v ? a.v : b.v}; }  // minps: second operand unless a < b
    static Lane max(Lane a, Lane b) { return {a.v > b.v ? a.v : b.v}; }

    static std::uint32_t u(Lane a) {
        std::uint32_t x;
        std::memcpy(&x, &a.v, 4);
        return x;
    }
    static Lane f(std::uint32_t x) {
        Lane a;
        std::memcpy(&a.v, &x, 4);
        return a;
    }
    static Lane mask(bool b) { return f(b ? 0xffffffffu : 0u); }
    static Lane band(Lane a, Lane b) { return f(u(a) & u(b)); }
    static Lane bor(Lane a, Lane b) { return f(u(a) | u(b)); }
    static Lane bxor(Lane a, Lane b) { return f(u(a) ^ u(b)); }
    static Lane bandnot(Lane a, Lane b) { return f(~u(a) & u(b)); }
    static Lane neg(Lane a) { return f(u(a) ^ 0x80000000u); }
    static Lane cmp_eq(Lane a, Lane b) { return mask(a.v == b.v); }
    static Lane cmp_eq_uq(Lane a, Lane b) { return mask(a.v == b.v || std::isnan(a.v) || std::isnan(b.v)); }
    static Lane cmp_neq_uq(Lane a, Lane b) { return mask(!(a.v == b.v)); }
    static Lane cmp_gt(Lane a, Lane b) { return mask(a.v > b.v); }
    static Lane select(Lane m, Lane a, Lane b) { return u(m) ? a : b; }

    static I cvtt(Lane a) { return _mm_cvttss_si32(_mm_set_ss(a.v)); }  // 0x80000000 when out of range, as cvttps2dq
    static Lane cvt(I i) { return {static_cast<float>(i)}; }
    static I as_int(Lane a) { return static_cast<I>(u(a)); }
    static Lane as_float(I i) { return f(static_cast<std::uint32_t>(i)); }
    static I iset1(I x) { return x; }
    static I iadd(I a, I b) { return static_cast<I>(static_cast<std::uint32_t>(a) + static_cast<std::uint32_t>(b)); }
    static I isub(I a, I b) { return static_cast<I>(static_cast<std::uint32_t>(a) - static_cast<std::uint32_t>(b)); }
    static I iand(I a, I b) { return a & b; }
    static I iandnot(I a, I b) { return ~a & b; }
    static I isll29(I a) { return static_cast<I>(static_cast<std::uint32_t>(a) << 29); }
    static I icmpeq(I a, I b) { return a == b ? -1 : 0; }
};
using Vec = Lane;

#include "fastfilters_simd.inc"

}  // namespace portable

#pragma GCC push_options
#pragma GCC target("avx2,fma")

namespace avx2 {

// One float lane with the VEX encodings of the same instructions (for the ends of spans).
struct Lane {
    static constexpr int W = 1;
    using I = std::int32_t;
    float v;

    static Lane load(const float* p) { return {*p}; }
    void store(float* p) const { *p = v; }
    static Lane set1(float x) { return {x}; }
    Lane operator+(Lane b) const { return {v + b.v}; }
    Lane operator-(Lane b) const { return {v - b.v}; }
    Lane operator*(Lane b) const { return {v * b.v}; }
    static Lane fma(Lane a, Lane b, Lane c) { return {_mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(a.v), _mm_set_ss(b.v), _mm_set_ss(c.v)))}; }
    static Lane sqrt(Lane a) { return {_mm_cvtss_f32(_mm_sqrt_ss(_mm_set_ss(a.v)))}; }
    static Lane rsqrt(Lane a) { return {_mm_cvtss_f32(_mm_rsqrt_ss(_mm_set_ss(a.v)))}; }
    static Lane rcp(Lane a) { return {_mm_cvtss_f32(_mm_rcp_ss(_mm_set_ss(a.v)))}; }
    static Lane min(Lane a, Lane b) { return {_mm_cvtss_f32(_mm_min_ss(_mm_set_ss(a.v), _mm_set_ss(b.v)))}; }
    static Lane max(Lane a, Lane b) { return {_mm_cvtss_f32(_mm_max_ss(_mm_set_ss(a.v), _mm_set_ss(b.v)))}; }

    static std::uint32_t u(Lane a) {
        std::uint32_t x;
        std::memcpy(&x, &a.v, 4);
        return x;
    }
    static Lane f(std::uint32_t x) {
        Lane a;
        std::memcpy(&a.v, &x, 4);
        return a;
    }
    static Lane mask(bool b) { return f(b ? 0xffffffffu : 0u); }
    static Lane band(Lane a, Lane b) { return f(u(a) & u(b)); }
    static Lane bor(Lane a, Lane b) { return f(u(a) | u(b)); }
    static Lane bxor(Lane a, Lane b) { return f(u(a) ^ u(b)); }
    static Lane bandnot(Lane a, Lane b) { return f(~u(a) & u(b)); }
    static Lane neg(Lane a) { return f(u(a) ^ 0x80000000u); }
    static Lane cmp_eq(Lane a, Lane b) { return mask(a.v == b.v); }
    static Lane cmp_eq_uq(Lane a, Lane b) { return mask(a.v == b.v || std::isnan(a.v) || std::isnan(b.v)); }
    static Lane cmp_neq_uq(Lane a, Lane b) { return mask(!(a.v == b.v)); }
    static Lane cmp_gt(Lane a, Lane b) { return mask(a.v > b.v); }
    static Lane select(Lane m, Lane a, Lane b) { return u(m) ? a : b; }

    static I cvtt(Lane a) { return _mm_cvttss_si32(_mm_set_ss(a.v)); }
    static Lane cvt(I i) { return {static_cast<float>(i)}; }
    static I as_int(Lane a) { return static_cast<I>(u(a)); }
    static Lane as_float(I i) { return f(static_cast<std::uint32_t>(i)); }
    static I iset1(I x) { return x; }
    static I iadd(I a, I b) { return static_cast<I>(static_cast<std::uint32_t>(a) + static_cast<std::uint32_t>(b)); }
    static I isub(I a, I b) { return static_cast<I>(static_cast<std::uint32_t>(a) - static_cast<std::uint32_t>(b)); }
    static I iand(I a, I b) { return a & b; }
    static I iandnot(I a, I b) { return ~a & b; }
    static I isll29(I a) { return static_cast<I>(static_cast<std::uint32_t>(a) << 29); }
    static I icmpeq(I a, I b) { return a == b ? -1 : 0; }
};

// Eight float lanes (__m256).
struct Vec {
    static constexpr int W = 8;
    using I = __m256i;
    __m256 v;

    static Vec load(const float* p) { return {_mm256_loadu_ps(p)}; }
    void store(float* p) const { _mm256_storeu_ps(p, v); }
    static Vec set1(float x) { return {_mm256_set1_ps(x)}; }
    Vec operator+(Vec b) const { return {_mm256_add_ps(v, b.v)}; }
    Vec operator-(Vec b) const { return {_mm256_sub_ps(v, b.v)}; }
    Vec operator*(Vec b) const { return {_mm256_mul_ps(v, b.v)}; }
    static Vec fma(Vec a, Vec b, Vec c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
    static Vec sqrt(Vec a) { return {_mm256_sqrt_ps(a.v)}; }
    static Vec rsqrt(Vec a) { return {_mm256_rsqrt_ps(a.v)}; }
    static Vec rcp(Vec a) { return {_mm256_rcp_ps(a.v)}; }
    static Vec min(Vec a, Vec b) { return {_mm256_min_ps(a.v, b.v)}; }
    static Vec max(Vec a, Vec b) { return {_mm256_max_ps(a.v, b.v)}; }
    static Vec band(Vec a, Vec b) { return {_mm256_and_ps(a.v, b.v)}; }
    static Vec bor(Vec a, Vec b) { return {_mm256_or_ps(a.v, b.v)}; }
    static Vec bxor(Vec a, Vec b) { return {_mm256_xor_ps(a.v, b.v)}; }
    static Vec bandnot(Vec a, Vec b) { return {_mm256_andnot_ps(a.v, b.v)}; }
    static Vec neg(Vec a) { return {_mm256_xor_ps(a.v, _mm256_set1_ps(-0.0f))}; }
    static Vec cmp_eq(Vec a, Vec b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_EQ_OQ)}; }
    static Vec cmp_eq_uq(Vec a, Vec b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_EQ_UQ)}; }
    static Vec cmp_neq_uq(Vec a, Vec b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_NEQ_UQ)}; }
    static Vec cmp_gt(Vec a, Vec b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_GT_OQ)}; }
    static Vec select(Vec m, Vec a, Vec b) { return {_mm256_blendv_ps(b.v, a.v, m.v)}; }

    static I cvtt(Vec a) { return _mm256_cvttps_epi32(a.v); }
    static Vec cvt(I i) { return {_mm256_cvtepi32_ps(i)}; }
    static I as_int(Vec a) { return _mm256_castps_si256(a.v); }
    static Vec as_float(I i) { return {_mm256_castsi256_ps(i)}; }
    static I iset1(std::int32_t x) { return _mm256_set1_epi32(x); }
    static I iadd(I a, I b) { return _mm256_add_epi32(a, b); }
    static I isub(I a, I b) { return _mm256_sub_epi32(a, b); }
    static I iand(I a, I b) { return _mm256_and_si256(a, b); }
    static I iandnot(I a, I b) { return _mm256_andnot_si256(a, b); }
    static I isll29(I a) { return _mm256_slli_epi32(a, 29); }
    static I icmpeq(I a, I b) { return _mm256_cmpeq_epi32(a, b); }
};

// r[k] = 8 values of row k  ->  r[k] = column k of the 8 x 8 block.
inline void transpose8(__m256* r) {
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
    r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
    r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
    r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
    r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}
#define ILB_FF_TRANSPOSE8(r) transpose8(r)

#include "fastfilters_simd.inc"

#undef ILB_FF_TRANSPOSE8

}  // namespace avx2

#pragma GCC pop_options

namespace {

bool cpu_has_avx2_fma() {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

}  // namespace

const Kernels& portable_kernels() {
    static const Kernels k = portable::make_kernels("portable");
    return k;
}

const Kernels* avx2_kernels() {
    static const Kernels k = avx2::make_kernels("avx2+fma");
    static const bool ok = cpu_has_avx2_fma();
    return ok ? &k : nullptr;
}

const Kernels& kernels() {
    static const Kernels* chosen = [] {
        const char* force = std::getenv("ILASTIKBACKEND_SIMD");
        if (force && std::strcmp(force, "portable") == 0) return &portable_kernels();
        const Kernels* fast = avx2_kernels();
        return fast ? fast : &portable_kernels();
    }();
    return *chosen;
}

}  // namespace ffsimd

void interleave_into(const FeatureOutput& planar, const FeatureOutput& out) {
    const auto& K = ffsimd::kernels();
    const Box& t = planar.target;
    for (Index z = t.lo[0]; z < t.hi[0]; ++z)
        for (Index y = t.lo[1]; y < t.hi[1]; ++y)
            K.interleave(planar.row(z, y, 0), planar.channel_stride, out.channels, t.extent(2),
                         out.row(z, y, 0) + (t.lo[2] - out.target.lo[2]) * out.pixel_stride);
}

}  // namespace ilb
