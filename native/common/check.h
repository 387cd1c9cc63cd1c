// Error reporting shared by every native layer. Native code never aborts: a failed
// precondition throws plw::Error, which the binding turns into a JS exception.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace plw {

struct Error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

[[noreturn]] inline void fail(const std::string& what, const char* file, int line) {
    std::ostringstream msg;
    msg << what << " (" << file << ":" << line << ")";
    throw Error(msg.str());
}

}  // namespace plw

// PLW_CHECK(cond, message-stream): throws with the message, the condition, file and line.
#define PLW_CHECK(cond, msg)                                              \
    do {                                                                  \
        if (!(cond)) {                                                    \
            std::ostringstream plw_check_os_;                             \
            plw_check_os_ << msg << " [check failed: " #cond "]";         \
            ::plw::fail(plw_check_os_.str(), __FILE__, __LINE__);         \
        }                                                                 \
    } while (0)
