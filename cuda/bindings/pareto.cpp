#include <pybind11/pybind11.h>
namespace evoforge::cuda {
void register_pareto(pybind11::module_&) {}
}
