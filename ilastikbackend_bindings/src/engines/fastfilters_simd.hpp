// The arithmetic kernels of the fastfilters engine, chosen at run time: AVX2 + FMA where the CPU
// has them, else a portable path (SSE for the hardware approximations, std::fma for fused
// multiply-adds) that gives the same bits wherever the CPU has FMA. Every kernel works on plain
// float arrays; the engine (fastfilters.cpp) decides which pixel gets which kernel.
#pragma once

#include <cstddef>

namespace ilb {
namespace ffsimd {

using Index = std::ptrdiff_t;

struct Kernels {
    const char* name;
    // x pass of one line of an image line of length n: out[0 .. x1-x0) for image positions
    // [x0, x1), from `in`, which holds the (mirrored) line at positions x0-r .. x1+r-1. The
    // float operation order of each output follows its position class (FASTFILTERS-OFAST.md).
    void (*xpass)(const float* in, float* out, Index x0, Index x1, Index n, const float* c, int r, bool symmetric);
    // y/z pass: out[i] = c0*rows[r][i], then fma(rows[r+k][i] +- rows[r-k][i], c_k, out) for k = 1..r.
    void (*seq_rows)(const float* const* rows, const float* c, int r, bool symmetric, Index m, float* out);
    // Element-wise combine steps of fastfilters' vector loops (linalg_avx*.c, no FMA).
    void (*add2)(const float* a, const float* b, float* out, Index m);                 // a + b
    void (*add3)(const float* a, const float* b, const float* c, float* out, Index m);  // (a + b) + c
    void (*sub)(const float* a, const float* b, float* out, Index m);                  // a - b
    void (*mul)(const float* a, const float* b, float* out, Index m);                  // a * b
    void (*addsqrt2)(const float* a, const float* b, float* out, Index m);             // sqrt(a*a + b*b)
    void (*addsqrt3)(const float* a, const float* b, const float* c, float* out, Index m);
    void (*ev2d)(const float* xx, const float* xy, const float* yy, float* big, float* small, Index m);
    void (*ev3d)(const float* a00, const float* a01, const float* a02, const float* a11, const float* a12,
                 const float* a22, float* ev0, float* ev1, float* ev2, Index m);
    // out[i * channels + c] = planes[c * plane_stride + i] for i < m, c < channels (no arithmetic).
    void (*interleave)(const float* planes, Index plane_stride, Index channels, Index m, float* out);
};

// The kernels for this CPU (ILASTIKBACKEND_SIMD=portable forces the portable path).
const Kernels& kernels();
const Kernels& portable_kernels();
const Kernels* avx2_kernels();  // null where the CPU lacks AVX2 or FMA

}  // namespace ffsimd
}  // namespace ilb
