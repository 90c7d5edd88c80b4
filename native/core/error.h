// The one exception type native code throws. The addon layer turns it into a JS Error,
// so a message must say what was wrong and how to fix it.
#pragma once
#include <stdexcept>
#include <string>

namespace lt {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

}  // namespace lt
