// The exception a cancelled call ends with: thrown by the thread pool when the caller's
// should_stop() asked to stop (the bindings turn it back into the pending KeyboardInterrupt).
#pragma once

#include <stdexcept>

namespace recfast {

struct Interrupted : std::runtime_error {
  Interrupted() : std::runtime_error("recfast: interrupted") {}
};

}  // namespace recfast
