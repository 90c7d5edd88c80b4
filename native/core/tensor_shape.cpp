#include "error.h"
#include "tensor.h"

namespace lt {

int64_t checkedNumel(const Shape& shape, const std::string& what) {
  int64_t n = 1;
  for (int64_t dim : shape) {
    if (dim < 1) throw Error(what + " " + shapeString(shape) + " has a dimension < 1: every dimension must be >= 1");
    if (dim > kMaxElements / n)
      throw Error(what + " " + shapeString(shape) + " has more than 2^40 elements: too large for any memory");
    n *= dim;
  }
  return n;
}

}  // namespace lt
