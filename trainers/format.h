// Number formatting for the trainer's human-readable lines.
#pragma once
#include <iomanip>
#include <sstream>
#include <string>

namespace ssm::train {

inline std::string fixed(double v, int digits) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(digits) << v;
  return os.str();
}

}  // namespace ssm::train
