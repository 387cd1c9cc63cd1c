// PLW_CUDA_CALL(expr): calls a CUDA-backend function when the addon was built with CUDA.
// Without CUDA the kernels are not compiled at all, so the call must not even be linked:
// decltype keeps the expression unevaluated and the macro throws instead. (Tensors can
// only live on CUDA when the backend is available, so this throw is a last line only.)
#pragma once
#include <type_traits>

#include "../common/check.h"

namespace plw::binding {
template <typename T>
T no_cuda() {
    throw Error("this build of plwtune has no CUDA backend (nvcc was not found at build time)");
}
}  // namespace plw::binding

#if PLW_WITH_CUDA
#define PLW_CUDA_CALL(expr) (expr)
#else
#define PLW_CUDA_CALL(expr) (::plw::binding::no_cuda<decltype(expr)>())
#endif
