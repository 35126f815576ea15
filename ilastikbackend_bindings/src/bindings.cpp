// Python bindings of the compute core. Every heavy call releases the GIL.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "ilastikbackend/blocking.hpp"
#include "ilastikbackend/classifier.hpp"
#include "ilastikbackend/features.hpp"
#include "ilastikbackend/forest.hpp"
#include "ilastikbackend/kernels.hpp"

namespace py = pybind11;
using namespace ilb;

namespace {

Box target_box(const std::vector<Index>& begin, const std::vector<Index>& end) {
    if (begin.size() != 3 || end.size() != 3) throw std::invalid_argument("target begin/end need 3 values (z, y, x)");
    return Box{{begin[0], begin[1], begin[2]}, {end[0], end[1], end[2]}};
}

// Calls f(RawView<T>) for a (z, y, x, c) array of uint8, uint16 or float32; other dtypes
// are converted to float32 first, as ilastik casts its input.
template <class F>
void with_raw(py::array raw, F&& f) {
    if (raw.ndim() != 4) throw std::invalid_argument("raw must be a (z, y, x, c) array");
    auto run = [&](auto tag) {
        using T = decltype(tag);
        auto a = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(raw);
        if (!a) throw std::invalid_argument("cannot read the raw array");
        RawView<T> v;
        v.data = a.data();
        for (int i = 0; i < 4; ++i) v.shape[i] = a.shape(i);
        if (v.shape[3] < 1 || v.shape[0] < 1 || v.shape[1] < 1 || v.shape[2] < 1) throw std::invalid_argument("raw array is empty");
        py::gil_scoped_release release;
        f(v);
    };
    if (raw.dtype().is(py::dtype::of<std::uint8_t>())) run(std::uint8_t{});
    else if (raw.dtype().is(py::dtype::of<std::uint16_t>())) run(std::uint16_t{});
    else run(float{});
}

StructureTensorMode st_mode(const std::string& s) {
    if (s == "vigra") return StructureTensorMode::Vigra;
    if (s == "fastfilters") return StructureTensorMode::FastfiltersCompat;
    throw std::invalid_argument("structure tensor must be 'vigra' or 'fastfilters', not '" + s + "'");
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

    py::class_<FeaturePlan>(m, "FeaturePlan", "Which features to compute, in output order.")
        .def(py::init([](const std::vector<std::tuple<int, double, bool, bool>>& requests, const std::string& st) {
                 FeaturePlan p;
                 for (const auto& [f, s, p2, f2] : requests) p.requests.push_back(FeatureRequest{f, s, p2, f2});
                 p.structure_tensor = st_mode(st);
                 p.validate();
                 return p;
             }),
             py::arg("requests"), py::arg("structure_tensor") = "vigra",
             "requests: (feature_id, scale, presmooth_2d, filter_2d) tuples")
        .def("halo", [](const FeaturePlan& p) {
            Coord h = p.halo();
            return std::vector<Index>(h.begin(), h.end());
        })
        .def("output_channels", &FeaturePlan::output_channels, py::arg("input_channels"), py::arg("volume_is_2d"));

    m.def("compute_features", [](py::array raw, const std::vector<Index>& begin, const std::vector<Index>& end, const FeaturePlan& plan) {
            const Box t = target_box(begin, end);
            const bool is2d = raw.ndim() == 4 && raw.shape(0) == 1;
            const Index C = plan.output_channels(raw.ndim() == 4 ? raw.shape(3) : 1, is2d);
            py::array_t<float> out({t.extent(0), t.extent(1), t.extent(2), C});
            float* dst = out.mutable_data();
            with_raw(raw, [&](const auto& v) { compute_features(v, t, plan, dst); });
            return out;
        }, py::arg("raw"), py::arg("begin"), py::arg("end"), py::arg("plan"),
        "Features of raw[begin:end] as (z, y, x, channels) float32; raw is (z, y, x, c).");

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
                           int n_threads, const std::vector<Index>& tile) {
            const Box t = target_box(begin, end);
            if (tile.size() != 3 || tile[0] < 1 || tile[1] < 1 || tile[2] < 1) throw std::invalid_argument("tile needs 3 positive values");
            py::array_t<float> out({t.extent(0), t.extent(1), t.extent(2), static_cast<Index>(c.ensemble().output_channels())});
            float* dst = out.mutable_data();
            with_raw(raw, [&](const auto& v) { c.predict(v, t, dst, n_threads, Coord{tile[0], tile[1], tile[2]}); });
            return out;
        }, py::arg("raw"), py::arg("begin"), py::arg("end"), py::arg("n_threads") = 1, py::arg("tile") = std::vector<Index>{64, 256, 256});

    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const std::out_of_range& e) {
            PyErr_SetString(PyExc_IndexError, e.what());
        }
    });
}
