// Regular blocking of a 2D or 3D image: block ids in C order over the grid of blocks.
#pragma once

#include <string>
#include <vector>

#include "box.hpp"

namespace ilb {

class Blocking {
   public:
    Blocking(std::vector<Index> shape, std::vector<Index> block_shape) : shape_(std::move(shape)), block_(std::move(block_shape)) {
        if (shape_.size() < 2 || shape_.size() > 3) throw std::invalid_argument("blocking needs a 2D or 3D shape");
        if (block_.size() != shape_.size()) throw std::invalid_argument("block shape and image shape differ in dimensions");
        for (std::size_t a = 0; a < shape_.size(); ++a) {
            if (shape_[a] < 1) throw std::invalid_argument("image shape must be positive");
            if (block_[a] < 1) throw std::invalid_argument("block shape must be positive");
            grid_.push_back((shape_[a] + block_[a] - 1) / block_[a]);
        }
    }

    std::size_t ndim() const { return shape_.size(); }
    const std::vector<Index>& shape() const { return shape_; }
    const std::vector<Index>& block_shape() const { return block_; }
    const std::vector<Index>& blocks_per_axis() const { return grid_; }
    Index num_blocks() const {
        Index n = 1;
        for (Index g : grid_) n *= g;
        return n;
    }

    std::vector<Index> block_coord(Index id) const {
        check_id(id);
        std::vector<Index> c(ndim());
        for (std::size_t a = ndim(); a-- > 0;) {
            c[a] = id % grid_[a];
            id /= grid_[a];
        }
        return c;
    }

    // [begin, end) of block `id`, clipped to the image.
    std::pair<std::vector<Index>, std::vector<Index>> block_bounds(Index id) const {
        auto c = block_coord(id);
        std::vector<Index> b(ndim()), e(ndim());
        for (std::size_t a = 0; a < ndim(); ++a) {
            b[a] = c[a] * block_[a];
            e[a] = std::min(b[a] + block_[a], shape_[a]);
        }
        return {b, e};
    }

    Index block_of_coordinate(const std::vector<Index>& p) const {
        check_point(p, false);
        Index id = 0;
        for (std::size_t a = 0; a < ndim(); ++a) id = id * grid_[a] + p[a] / block_[a];
        return id;
    }

    // Ids of all blocks that intersect [begin, end), in ascending order.
    std::vector<Index> blocks_in_roi(const std::vector<Index>& begin, const std::vector<Index>& end) const {
        check_point(begin, false);
        check_point(end, true);
        std::vector<Index> lo(ndim()), hi(ndim());
        for (std::size_t a = 0; a < ndim(); ++a) {
            if (end[a] <= begin[a]) throw std::invalid_argument("roi is empty along axis " + std::to_string(a));
            lo[a] = begin[a] / block_[a];
            hi[a] = (end[a] - 1) / block_[a] + 1;
        }
        std::vector<Index> ids;
        std::vector<Index> c = lo;
        while (true) {
            Index id = 0;
            for (std::size_t a = 0; a < ndim(); ++a) id = id * grid_[a] + c[a];
            ids.push_back(id);
            std::size_t a = ndim();
            while (a-- > 0) {
                if (++c[a] < hi[a]) break;
                c[a] = lo[a];
            }
            if (a == static_cast<std::size_t>(-1)) break;
        }
        return ids;
    }

    // The raw region block `id` needs with `halo` per side, clipped to the image, and where
    // the block lies inside it: (outer_begin, outer_end, inner_begin, inner_end), inner
    // relative to outer.
    std::vector<std::vector<Index>> block_with_halo(Index id, const std::vector<Index>& halo) const {
        if (halo.size() != ndim()) throw std::invalid_argument("halo needs one value per axis");
        auto [b, e] = block_bounds(id);
        std::vector<Index> ob(ndim()), oe(ndim()), ib(ndim()), ie(ndim());
        for (std::size_t a = 0; a < ndim(); ++a) {
            if (halo[a] < 0) throw std::invalid_argument("halo must be >= 0");
            ob[a] = std::max<Index>(0, b[a] - halo[a]);
            oe[a] = std::min(shape_[a], e[a] + halo[a]);
            ib[a] = b[a] - ob[a];
            ie[a] = e[a] - ob[a];
        }
        return {ob, oe, ib, ie};
    }

   private:
    void check_id(Index id) const {
        if (id < 0 || id >= num_blocks())
            throw std::out_of_range("block id " + std::to_string(id) + " outside [0, " + std::to_string(num_blocks()) + ")");
    }
    void check_point(const std::vector<Index>& p, bool inclusive_end) const {
        if (p.size() != ndim()) throw std::invalid_argument("coordinate needs " + std::to_string(ndim()) + " values");
        for (std::size_t a = 0; a < ndim(); ++a)
            if (p[a] < 0 || p[a] > shape_[a] - (inclusive_end ? 0 : 1))
                throw std::out_of_range("coordinate " + std::to_string(p[a]) + " outside the image along axis " + std::to_string(a));
    }

    std::vector<Index> shape_, block_, grid_;
};

}  // namespace ilb
