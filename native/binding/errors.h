// Error kinds that cross into JS. ArgError (bad argument: type, shape, dtype, device,
// value) becomes a JS TypeError; plw::Error (a failure while computing: CUDA, memory)
// becomes a JS Error. Messages follow one shape: "op: Expected X for name but received Y".
#pragma once
#include <stdexcept>
#include <string>

#include "../common/check.h"

namespace plw::binding {

struct ArgError : std::invalid_argument {
    using std::invalid_argument::invalid_argument;
};

// A well-typed argument with a value out of its range (a target outside [0, V), a zero
// normalizer). Becomes a JS RangeError.
struct ValueError : ArgError {
    using ArgError::ArgError;
};

}  // namespace plw::binding
