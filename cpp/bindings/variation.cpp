// Registers the variation kernels (random, mutation, crossover, selection, Deep GA) on _core.
#include <pybind11/pybind11.h>

namespace py = pybind11;

namespace evoforge {

void register_random(py::module_& m);
void register_mutation(py::module_& m);
void register_crossover(py::module_& m);
void register_selection(py::module_& m);
void register_deepga(py::module_& m);

void register_variation(py::module_& m) {
  register_random(m);
  register_mutation(m);
  register_crossover(m);
  register_selection(m);
  register_deepga(m);
}

}  // namespace evoforge
