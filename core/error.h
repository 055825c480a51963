// One exception type for the whole project, with a message meant for people.
// kind == BadInput: the user's recipe, data, checkpoint or shapes are wrong (CLI exits 2).
// kind == Internal: a bug or a device/library failure (CLI exits 1).
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace ssm {

enum class ErrorKind { BadInput, Internal };

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& msg) : std::runtime_error(msg), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

// cat(a, b, c): stream every argument into one string.
template <typename... Args>
std::string cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

[[noreturn]] inline void throw_input(const std::string& msg) { throw Error(ErrorKind::BadInput, msg); }
[[noreturn]] inline void throw_internal(const std::string& msg) { throw Error(ErrorKind::Internal, msg); }

}  // namespace ssm

#define SSM_STR2(x) #x
#define SSM_STR(x) SSM_STR2(x)

// Bad input (shapes, dtypes, user values): the message says what is wrong and with what.
#define SSM_CHECK_INPUT(cond, ...) \
  do {                             \
    if (!(cond)) ::ssm::throw_input(::ssm::cat(__VA_ARGS__)); \
  } while (0)

// Internal invariant: a failure is a bug; the message carries file:line.
#define SSM_CHECK(cond, ...)                                                                  \
  do {                                                                                        \
    if (!(cond))                                                                              \
      ::ssm::throw_internal(::ssm::cat(__VA_ARGS__, " [", __FILE__, ":", SSM_STR(__LINE__), "]")); \
  } while (0)
