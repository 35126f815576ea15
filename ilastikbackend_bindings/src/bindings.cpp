// Python bindings of the compute core. Every heavy call releases the GIL.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>

#include "ilastikbackend/blocking.hpp"
#include "ilastikbackend/classifier.hpp"
#include "ilastikbackend/features.hpp"
#include "ilastikbackend/forest.hpp"
#include "ilastikbackend/kernels.hpp"
#include "engines/fastfilters_simd.hpp"

namespace py = pybind11;
using namespace ilb;

namespace {

Coord coord(const std::vector<Index>& v, const char* what) {
    if (v.size() != 3) throw std::invalid_argument(std::string(what) + " needs 3 values (z, y, x)");
    return Coord{v[0], v[1], v[2]};
}

// The target in image coordinates: begin/end are given in the raw array's coordinates.
Box target_box(const std::vector<Index>& begin, const std::vector<Index>& end, const std::optional<std::vector<Index>>& origin) {
    const Coord b = coord(begin, "target begin"), e = coord(end, "target end");
    const Coord o = origin ? coord(*origin, "origin") : Coord{0, 0, 0};
    return Box{{b[0] + o[0], b[1] + o[1], b[2] + o[2]}, {e[0] + o[0], e[1] + o[1], e[2] + o[2]}};
}

FeaturePlan make_plan(const std::vector<std::tuple<int, double, bool, bool>>& requests, const std::string& engine) {
    FeaturePlan p;
    for (const auto& [f, s, p2, f2] : requests) p.requests.push_back(FeatureRequest{f, s, p2, f2});
    p.engine = make_engine(engine);
    p.validate();
    return p;
}

// Calls f(RawView<T>) for a (z, y, x, c) array of uint8, uint16 or float32; other dtypes
// are converted to float32 first, as ilastik casts its input. The array holds the image region
// starting at `origin` of an image of spatial shape `image` (defaults: the array is the image).
template <class F>
void with_raw(py::array raw, const std::optional<std::vector<Index>>& origin, const std::optional<std::vector<Index>>& image,
              F&& f) {
    if (raw.ndim() != 4) throw std::invalid_argument("raw must be a (z, y, x, c) array");
    auto run = [&](auto tag) {
        using T = decltype(tag);
        auto a = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(raw);
        if (!a) throw std::invalid_argument("cannot read the raw array");
        RawView<T> v;
        v.data = a.data();
        for (int i = 0; i < 4; ++i) v.shape[i] = a.shape(i);
        if (v.shape[3] < 1 || v.shape[0] < 1 || v.shape[1] < 1 || v.shape[2] < 1) throw std::invalid_argument("raw array is empty");
        v.origin = origin ? coord(*origin, "origin") : Coord{0, 0, 0};
        v.image = image ? coord(*image, "image_shape") : Coord{v.shape[0], v.shape[1], v.shape[2]};
        py::gil_scoped_release release;
        f(v);
    };
    if (raw.dtype().is(py::dtype::of<std::uint8_t>())) run(std::uint8_t{});
    else if (raw.dtype().is(py::dtype::of<std::uint16_t>())) run(std::uint16_t{});
    else run(float{});
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "ilastik backend compute core: blocking, ilastik features, vigra random forests";

    py::class_<Blocking>(m, "Blocking", "Regular blocks over a 2D or 3D image, ids in C order.")
        .def(py::init<std::vector<Index>, std::vector<Index>>(), py::arg("shape"), py::arg("block_shape"))
        .def_property_readonly("shape", &Blocking::shape)
        .def_property_readonly("block_shape", &Blocking::block_shape)
        .def_property_readonly("blocks_per_axis", &Blocking::blocks_per_axis)
        .def_property_readonly("num_blocks", &Blocking::num_blocks)
        .def("block_coord", &Blocking::block_coord, py::arg("block_id"))
        .def("block_bounds", &Blocking::block_bounds, py::arg("block_id"), "(begin, end) of a block, clipped to the image")
        .def("block_of_coordinate", &Blocking::block_of_coordinate, py::arg("coordinate"))
        .def("blocks_in_roi", &Blocking::blocks_in_roi, py::arg("begin"), py::arg("end"))
        .def("block_with_halo", &Blocking::block_with_halo, py::arg("block_id"), py::arg("halo"),
             "(outer_begin, outer_end, inner_begin, inner_end): the raw region with halo, clipped, and the block inside it");

    m.def("gaussian_kernel", [](double sigma, int order, double window) {
            Kernel1D k = make_kernel(sigma, order, window);
            return py::array_t<double>(static_cast<py::ssize_t>(k.taps.size()), k.taps.data());
        }, py::arg("sigma"), py::arg("order") = 0, py::arg("window") = 0.0,
        "vigra's Gaussian (derivative) kernel taps k[-r..r]");

    m.def("engine_names", &engine_names, "Names of the feature engines compiled into the core.");
    m.def("fastfilters_kernels", [] { return std::string(ffsimd::kernels().name); },
          "Which kernels the fastfilters engine runs on this CPU: 'avx2+fma' or 'portable' (same bits).");

    py::class_<FeaturePlan>(m, "FeaturePlan", "Which features to compute, in output order, and by which engine.")
        .def(py::init(&make_plan), py::arg("requests"), py::arg("engine") = "vigra",
             "requests: (feature_id, scale, presmooth_2d, filter_2d) tuples; engine: a name from engine_names()")
        .def_property_readonly("engine", [](const FeaturePlan& p) { return p.engine->name(); })
        .def("halo", [](const FeaturePlan& p) {
            Coord h = p.halo();
            return std::vector<Index>(h.begin(), h.end());
        })
        .def("output_channels", &FeaturePlan::output_channels, py::arg("input_channels"), py::arg("volume_is_2d"))
        .def("check_image", [](const FeaturePlan& p, const std::vector<Index>& shape) {
            if (shape.size() != 3) throw std::invalid_argument("shape must be (z, y, x)");
            check_image_fits(p, ImageGeometry{{shape[0], shape[1], shape[2]}});
        }, py::arg("shape"),
             "Raise ValueError naming the feature, scale and axis when a kernel of the plan is longer than an "
             "axis of an image of this (z, y, x) shape (what computing its features would fail with).");

    m.def("compute_features", [](py::array raw, const std::vector<Index>& begin, const std::vector<Index>& end, const FeaturePlan& plan,
                                 const std::optional<std::vector<Index>>& origin, const std::optional<std::vector<Index>>& image_shape) {
            const Box t = target_box(begin, end, origin);
            const bool is2d = image_shape ? (*image_shape)[0] == 1 : (raw.ndim() == 4 && raw.shape(0) == 1);
            const Index C = plan.output_channels(raw.ndim() == 4 ? raw.shape(3) : 1, is2d);
            py::array_t<float> out({std::max<Index>(t.extent(0), 0), std::max<Index>(t.extent(1), 0), std::max<Index>(t.extent(2), 0), C});
            float* dst = out.mutable_data();
            with_raw(raw, origin, image_shape, [&](const auto& v) { compute_features(v, t, plan, dst); });
            return out;
        }, py::arg("raw"), py::arg("begin"), py::arg("end"), py::arg("plan"), py::arg("origin") = py::none(),
        py::arg("image_shape") = py::none(),
        "Features of raw[begin:end] as (z, y, x, channels) float32. raw is (z, y, x, c): the image region that starts "
        "at `origin` of an image of spatial shape `image_shape` (defaults: raw is the whole image).");

    m.def("gaussian_derivative", [](const std::string& engine, py::array_t<float, py::array::c_style | py::array::forcecast> image,
                                    int order, double sigma, double window) {
            if (image.ndim() != 2 && image.ndim() != 3) throw std::invalid_argument("image must be 2D (y, x) or 3D (z, y, x)");
            const auto e = make_engine(engine);
            const Index nz = image.ndim() == 3 ? image.shape(0) : 1;
            Volume in(Box{{0, 0, 0}, {nz, image.shape(image.ndim() - 2), image.shape(image.ndim() - 1)}});
            std::copy_n(image.data(), in.data.size(), in.data.data());
            Volume res;
            {
                py::gil_scoped_release release;
                res = e->gaussian_derivative(in, order, sigma, window);
            }
            py::array_t<float> out(std::vector<py::ssize_t>(image.shape(), image.shape() + image.ndim()));
            std::copy_n(res.data.data(), res.data.size(), out.mutable_data());
            return out;
        }, py::arg("engine"), py::arg("image"), py::arg("order"), py::arg("sigma"), py::arg("window") = 0.0,
        "The engine's separable Gaussian (derivative) filter along every axis of a whole 2D/3D float32 image.");

    py::class_<Forest>(m, "Forest", "One vigra random forest.")
        .def(py::init<int, int, bool>(), py::arg("class_count"), py::arg("column_count"), py::arg("predict_weighted") = false)
        .def("add_tree", [](Forest& f, py::array_t<std::int32_t, py::array::c_style | py::array::forcecast> topology,
                            py::array_t<double, py::array::c_style | py::array::forcecast> parameters) {
            f.add_tree(topology.data(), static_cast<std::size_t>(topology.size()), parameters.data(), static_cast<std::size_t>(parameters.size()));
        }, py::arg("topology"), py::arg("parameters"))
        .def_property_readonly("class_count", &Forest::class_count)
        .def_property_readonly("column_count", &Forest::column_count)
        .def_property_readonly("tree_count", &Forest::tree_count)
        .def_property_readonly("node_count", &Forest::node_count)
        .def_property_readonly("leaf_count", &Forest::leaf_count)
        .def_property_readonly("sums_are_exact", &Forest::sums_are_exact,
                               "Whether every sum of leaf values is exact, so that no summation order can change a bit");

    m.def("forest_implementations", &forest_isas_available,
          "Forest evaluation kernels this CPU can run, best first ('avx512', 'avx2', 'portable'); all give the same bits");

    auto features_matrix = [](const Ensemble& e, const py::array_t<float, py::array::c_style | py::array::forcecast>& X) {
        if (X.ndim() != 2 || X.shape(1) != e.column_count())
            throw std::invalid_argument("features must be (n, " + std::to_string(e.column_count()) + ")");
        return X.shape(0);
    };
    py::class_<Ensemble>(m, "Ensemble", "Forests combined as ilastik does: tree-count-weighted mean.")
        .def(py::init<std::vector<Forest>, std::vector<int>, int>(), py::arg("forests"), py::arg("channel_of_class"),
             py::arg("output_channels"))
        .def_property_readonly("column_count", &Ensemble::column_count)
        .def_property_readonly("output_channels", &Ensemble::output_channels)
        .def_property_readonly("tree_count", &Ensemble::tree_count)
        .def_property_readonly("node_count", &Ensemble::node_count)
        .def("predict", [features_matrix](const Ensemble& e, py::array_t<float, py::array::c_style | py::array::forcecast> X,
                                          const std::string& implementation) {
            const Index n = features_matrix(e, X);
            const ForestIsa isa = forest_isa_from_name(implementation);
            py::array_t<float> out({n, static_cast<Index>(e.output_channels())});
            float* dst = out.mutable_data();
            const float* src = X.data();
            {
                py::gil_scoped_release release;
                e.predict(src, n, dst, isa);
            }
            return out;
        }, py::arg("features"), py::arg("implementation") = "auto",
           "Probabilities (n, output_channels) float32 for features (n, column_count), bit-identical to vigra + ilastik; "
           "implementation: 'auto' or one of forest_implementations()")
        .def("predict_reference", [features_matrix](const Ensemble& e, py::array_t<float, py::array::c_style | py::array::forcecast> X) {
            const Index n = features_matrix(e, X);
            py::array_t<float> out({n, static_cast<Index>(e.output_channels())});
            float* dst = out.mutable_data();
            const float* src = X.data();
            {
                py::gil_scoped_release release;
                e.predict_reference(src, n, dst);
            }
            return out;
        }, py::arg("features"), "The same probabilities from the core's previous, simpler evaluation (tests, bench/forest.py)");

    py::class_<PixelClassifierCore>(m, "PixelClassifierCore", "Feature plan + forests: probabilities for a region.")
        .def(py::init<FeaturePlan, Ensemble>(), py::arg("plan"), py::arg("ensemble"))
        .def_property_readonly("plan", &PixelClassifierCore::plan)
        .def_property_readonly("output_channels", [](const PixelClassifierCore& c) { return c.ensemble().output_channels(); })
        .def("predict", [](const PixelClassifierCore& c, py::array raw, const std::vector<Index>& begin, const std::vector<Index>& end,
                           int n_threads, const std::vector<Index>& tile, const std::optional<std::vector<Index>>& origin,
                           const std::optional<std::vector<Index>>& image_shape) {
            const Box t = target_box(begin, end, origin);
            if (tile.size() != 3 || tile[0] < 1 || tile[1] < 1 || tile[2] < 1) throw std::invalid_argument("tile needs 3 positive values");
            py::array_t<float> out({std::max<Index>(t.extent(0), 0), std::max<Index>(t.extent(1), 0), std::max<Index>(t.extent(2), 0),
                                    static_cast<Index>(c.ensemble().output_channels())});
            float* dst = out.mutable_data();
            with_raw(raw, origin, image_shape, [&](const auto& v) {
                // Reject blocks without their halo before any work (and with the clear message).
                check_features_input(v, t, c.plan());
                c.predict(v, t, dst, n_threads, Coord{tile[0], tile[1], tile[2]});
            });
            return out;
        }, py::arg("raw"), py::arg("begin"), py::arg("end"), py::arg("n_threads") = 1, py::arg("tile") = std::vector<Index>{64, 256, 256},
        py::arg("origin") = py::none(), py::arg("image_shape") = py::none(),
        "Probabilities of raw[begin:end]; raw as in compute_features.");

    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const std::out_of_range& e) {
            PyErr_SetString(PyExc_IndexError, e.what());
        }
    });
}
