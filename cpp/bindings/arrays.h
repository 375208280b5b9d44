// What every binding uses to take numpy buffers: C-contiguous typed arrays (pybind11 copies or
// converts anything else) and a shape check that names the argument.
#pragma once

#include <pybind11/numpy.h>

#include <cstdint>

#include "evoforge/common.h"

namespace evoforge {

template <typename T>
using CArray = pybind11::array_t<T, pybind11::array::c_style>;

template <typename A>
void check_shape(const A& a, int64_t r, int64_t c, const char* name) {
  EVOFORGE_CHECK(a.ndim() == 2 && a.shape(0) == r && a.shape(1) == c,
                 name << " must have shape [" << r << ", " << c << "]");
}

}  // namespace evoforge
