// 1D Gaussian and Gaussian-derivative kernels built exactly like vigra's Kernel1D<T>
// (initGaussian / initGaussianDerivative with an explicit window ratio), including the
// arithmetic type: vigra smooths with Kernel1D<double> (double sums) but builds the kernels
// of its derivative filters as Kernel1D<float> (float sums). Reproducing both to the bit
// keeps our features equal to vigra's, so no pixel near a forest threshold flips.
#pragma once

#include <cmath>
#include <vector>

#include "box.hpp"

namespace ilb {

// Float: float taps, float sums (vigra's derivative filters). Double: double taps and sums
// (gaussianSmoothing). VectorDouble: double taps on TinyVector<float> pixels, where each
// product is rounded to float and summed in float (smoothing of the structure tensor).
enum class Precision { Float, Double, VectorDouble };

struct Kernel1D {
    Index radius = 0;
    Precision precision = Precision::Double;
    // taps[j] = k[j - radius]; convolution is out[i] = sum_x k[x] * in[i - x]. Float kernels
    // hold float values.
    std::vector<double> taps;
};

namespace detail {

// vigra::Gaussian<T>::operator() for derivative orders 0..2.
template <class T>
struct Gaussian {
    T sigma, sigma2, norm;
    int order;
    Gaussian(T s, int ord) : sigma(s), sigma2(T(-0.5 / s / s)), norm(0), order(ord) {
        const T sq = s * s;
        if (ord == 1 || ord == 2) norm = T(-1.0 / (std::sqrt(2.0 * M_PI) * sq * s));
        else norm = T(1.0 / std::sqrt(2.0 * M_PI) / s);
    }
    T operator()(T x) const {
        const T x2 = x * x;
        const T g = norm * std::exp(x2 * sigma2);
        if (order == 1) return x * g;
        if (order == 2) {
            const T r = x / sigma;
            return static_cast<T>((1.0 - r * r) * g);
        }
        return g;
    }
};

template <class T>
std::vector<double> vigra_taps(double sigma, int order, Index radius) {
    using TmpType = T;  // NumericTraits<T>::RealPromote for float and double
    Gaussian<T> gauss(static_cast<T>(sigma), order);
    std::vector<T> k;
    T dc = 0;
    for (T x = -static_cast<T>(radius); x <= static_cast<T>(radius); ++x) {
        k.push_back(gauss(x));
        dc += k.back();
    }
    if (order > 0) {  // remove the DC introduced by truncation
        dc = static_cast<T>(dc / (2.0 * static_cast<double>(radius) + 1.0));
        for (T& v : k) v -= dc;
    }
    TmpType sum = 0;
    if (order == 0) {
        for (T v : k) sum += v;
    } else {
        const unsigned faculty = order == 2 ? 2u : 1u;
        double x = -static_cast<double>(radius);
        for (T v : k) {
            sum = static_cast<TmpType>(sum + v * std::pow(-x, order) / faculty);
            x += 1.0;
        }
    }
    sum = static_cast<TmpType>(T(1.0) / sum);
    std::vector<double> out;
    for (T v : k) out.push_back(static_cast<double>(static_cast<T>(v * sum)));
    return out;
}

}  // namespace detail

// vigra: radius = int(window * sigma + 0.5) for window > 0, else int((3 + 0.5 order) sigma + 0.5);
// a radius of 0 is raised to 1.
inline Index kernel_radius(double sigma, int order, double window) {
    Index r = window > 0.0 ? static_cast<Index>(window * sigma + 0.5)
                           : static_cast<Index>((order == 0 ? 3.0 : 3.0 + 0.5 * order) * sigma + 0.5);
    return r == 0 ? 1 : r;
}

inline Kernel1D make_kernel(double sigma, int order, double window, Precision precision = Precision::Double) {
    if (!(sigma > 0.0)) throw std::invalid_argument("kernel sigma must be > 0");
    if (order < 0 || order > 2) throw std::invalid_argument("kernel order must be 0, 1 or 2");
    Kernel1D k;
    k.radius = kernel_radius(sigma, order, window);
    k.precision = precision;
    k.taps = precision == Precision::Float ? detail::vigra_taps<float>(sigma, order, k.radius)
                                           : detail::vigra_taps<double>(sigma, order, k.radius);
    return k;
}

}  // namespace ilb
