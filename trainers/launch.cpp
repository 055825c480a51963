#include "trainers/launch.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <map>

#include "core/error.h"
#include "trainers/comm.h"
#include "trainers/rendezvous.h"

extern char** environ;

namespace ssm::train {

namespace {

int g_signal_pipe[2] = {-1, -1};  // the handler writes the signal number; the loop forwards it

void on_signal(int sig) {
  const int saved = errno;
  const unsigned char b = static_cast<unsigned char>(sig);
  if (g_signal_pipe[1] >= 0) (void)!::write(g_signal_pipe[1], &b, 1);
  errno = saved;
}

constexpr int kForwarded[] = {SIGTERM, SIGINT, SIGUSR1};

// Installs the forwarding handlers for the launcher's lifetime and restores the previous ones after.
class SignalForwarding {
 public:
  SignalForwarding() {
    SSM_CHECK(::pipe2(g_signal_pipe, O_CLOEXEC | O_NONBLOCK) == 0, "pipe2: ", std::strerror(errno));
    for (size_t i = 0; i < std::size(kForwarded); ++i) {
      struct sigaction sa {};
      sa.sa_handler = on_signal;
      sigemptyset(&sa.sa_mask);
      sa.sa_flags = SA_RESTART;
      ::sigaction(kForwarded[i], &sa, &old_[i]);
    }
  }
  ~SignalForwarding() {
    for (size_t i = 0; i < std::size(kForwarded); ++i) ::sigaction(kForwarded[i], &old_[i], nullptr);
    ::close(g_signal_pipe[0]);
    ::close(g_signal_pipe[1]);
    g_signal_pipe[0] = g_signal_pipe[1] = -1;
  }
  int read_fd() const { return g_signal_pipe[0]; }

 private:
  struct sigaction old_[std::size(kForwarded)];
};

struct Child {
  int rank = 0;
  pid_t pid = -1;
  bool alive = false;
  int code = 0;
  int out = -1, err = -1;  // read ends of the child's stdout / stderr (prefix_output)
  std::string out_buf, err_buf;
};

void write_fd(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    const ssize_t k = ::write(fd, s.data() + off, s.size() - off);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return;
    off += size_t(k);
  }
}

// Emits every complete line ('\n' or '\r' terminated) of `buf` with the rank prefix; `flush` emits the rest.
void emit_lines(std::string& buf, int rank, int fd, bool flush) {
  std::string out;
  size_t start = 0;
  for (size_t i = 0; i < buf.size(); ++i) {
    if (buf[i] == '\n' || buf[i] == '\r') {
      out += cat("[rank ", rank, "] ") + buf.substr(start, i + 1 - start);
      start = i + 1;
    }
  }
  buf.erase(0, start);
  if (flush && !buf.empty()) {
    out += cat("[rank ", rank, "] ", buf, "\n");
    buf.clear();
  }
  if (!out.empty()) write_fd(fd, out);
}

// Reads what is available; false at EOF (the descriptor is closed and set to -1).
bool drain(int& fd, std::string& buf) {
  char tmp[4096];
  for (;;) {
    const ssize_t k = ::read(fd, tmp, sizeof tmp);
    if (k > 0) {
      buf.append(tmp, size_t(k));
      continue;
    }
    if (k < 0 && (errno == EINTR)) continue;
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    ::close(fd);
    fd = -1;
    return false;
  }
}

int exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

std::vector<std::string> child_env(int rank, int nproc, const LaunchOptions& o, int port) {
  std::map<std::string, std::string> set = {
      {"RANK", std::to_string(rank)},        {"LOCAL_RANK", std::to_string(rank)},
      {"WORLD_SIZE", std::to_string(nproc)}, {"LOCAL_WORLD_SIZE", std::to_string(nproc)},
      {"MASTER_ADDR", o.master_addr},        {"MASTER_PORT", std::to_string(port)}};
  for (const auto& [k, v] : o.extra_env) set[k] = v;
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) {
    const std::string kv = *e;
    if (!set.count(kv.substr(0, kv.find('=')))) env.push_back(kv);
  }
  for (const auto& [k, v] : set) env.push_back(k + "=" + v);
  return env;
}

}  // namespace

int launch_local(int nproc, const std::vector<std::string>& args, const LaunchOptions& o) {
  SSM_CHECK_INPUT(nproc >= 1, "ssm launch: --nproc must be >= 1 (got ", nproc, ")");
  std::ostream& log = o.log ? *o.log : std::cerr;
  std::string program = o.program;
  if (program.empty()) {
    char buf[4096];
    const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
    SSM_CHECK(n > 0, "ssm launch: cannot read /proc/self/exe: ", std::strerror(errno));
    program.assign(buf, size_t(n));
  }
  const int port = o.master_port > 0 ? o.master_port : free_port_pair();

  SignalForwarding signals;
  std::vector<Child> children(static_cast<size_t>(nproc));
  const pid_t parent = ::getpid();
  for (int r = 0; r < nproc; ++r) {
    // Everything the child needs is built before fork (only async-signal-safe calls after it).
    std::vector<std::string> argv_s = {program};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<std::string> env_s = child_env(r, nproc, o, port);
    std::vector<char*> argv, envp;
    for (auto& s : argv_s) argv.push_back(s.data());
    argv.push_back(nullptr);
    for (auto& s : env_s) envp.push_back(s.data());
    envp.push_back(nullptr);
    int out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1};
    if (o.prefix_output) {
      SSM_CHECK(::pipe2(out_pipe, O_CLOEXEC) == 0 && ::pipe2(err_pipe, O_CLOEXEC) == 0, "pipe2: ",
                std::strerror(errno));
    }
    const pid_t pid = ::fork();
    SSM_CHECK(pid >= 0, "ssm launch: fork failed: ", std::strerror(errno));
    if (pid == 0) {
      ::setpgid(0, 0);
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != parent) ::_exit(127);  // the launcher died before prctl
      for (int sig : kForwarded) ::signal(sig, SIG_DFL);
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      if (o.prefix_output) {
        ::dup2(out_pipe[1], 1);
        ::dup2(err_pipe[1], 2);
      }
      ::execve(argv[0], argv.data(), envp.data());
      const char msg[] = "ssm launch: execve failed\n";
      (void)!::write(2, msg, sizeof msg - 1);
      ::_exit(127);
    }
    ::setpgid(pid, pid);  // also from the parent: no race with the first kill(-pid)
    Child& c = children[size_t(r)];
    c.rank = r;
    c.pid = pid;
    c.alive = true;
    if (o.prefix_output) {
      ::close(out_pipe[1]);
      ::close(err_pipe[1]);
      c.out = out_pipe[0];
      c.err = err_pipe[0];
      ::fcntl(c.out, F_SETFL, O_NONBLOCK);
      ::fcntl(c.err, F_SETFL, O_NONBLOCK);
    }
  }

  int alive = nproc;
  int first_failure = 0;
  double failed_at = -1, termed_at = -1;
  bool killed = false;
  double all_exited_at = -1;
  for (;;) {
    std::vector<pollfd> fds = {{signals.read_fd(), POLLIN, 0}};
    for (const Child& c : children) {
      if (c.out >= 0) fds.push_back({c.out, POLLIN, 0});
      if (c.err >= 0) fds.push_back({c.err, POLLIN, 0});
    }
    ::poll(fds.data(), fds.size(), 50);

    // Forward the signals the launcher received.
    unsigned char sigs[64];
    ssize_t ns;
    while ((ns = ::read(signals.read_fd(), sigs, sizeof sigs)) > 0) {
      for (ssize_t i = 0; i < ns; ++i) {
        log << "ssm launch: forwarding signal " << int(sigs[i]) << " to " << alive << " process(es)\n";
        for (const Child& c : children)
          if (c.alive) ::kill(c.pid, sigs[i]);
        // A stop request: the processes get grace_s to checkpoint and exit, then SIGKILL (never a hang,
        // e.g. a rank stuck in a collective never sees its stop flag).
        if ((sigs[i] == SIGTERM || sigs[i] == SIGINT) && termed_at < 0) termed_at = monotonic_seconds() + o.grace_s;
      }
    }
    // Copy output.
    for (Child& c : children) {
      if (c.out >= 0) {
        drain(c.out, c.out_buf);
        emit_lines(c.out_buf, c.rank, o.out_fd, c.out < 0);
      }
      if (c.err >= 0) {
        drain(c.err, c.err_buf);
        emit_lines(c.err_buf, c.rank, o.err_fd, c.err < 0);
      }
    }
    // Reap.
    for (Child& c : children) {
      if (!c.alive) continue;
      int status = 0;
      const pid_t w = ::waitpid(c.pid, &status, WNOHANG);
      if (w != c.pid) continue;
      c.alive = false;
      c.code = exit_code(status);
      --alive;
      if (c.code != 0 && first_failure == 0) {
        first_failure = c.code;
        failed_at = monotonic_seconds();
        if (alive > 0)
          log << "ssm launch: rank " << c.rank << " exited with code " << c.code << "; stopping the other " << alive
              << " process(es) in " << o.grace_s << " s unless they exit first\n";
      }
    }
    const double now = monotonic_seconds();
    if (alive > 0 && failed_at >= 0 && termed_at < 0 && now - failed_at >= o.grace_s) {
      log << "ssm launch: sending SIGTERM to the " << alive << " remaining process(es)\n";
      for (const Child& c : children)
        if (c.alive) ::kill(-c.pid, SIGTERM);
      termed_at = now;
    }
    if (alive > 0 && termed_at >= 0 && !killed && now - termed_at >= o.kill_after_s) {
      log << "ssm launch: sending SIGKILL to the " << alive << " remaining process(es)\n";
      for (const Child& c : children)
        if (c.alive) ::kill(-c.pid, SIGKILL);
      killed = true;
    }
    if (alive == 0) {
      if (all_exited_at < 0) all_exited_at = now;
      bool open = false;
      for (const Child& c : children) open = open || c.out >= 0 || c.err >= 0;
      // Output pipes close with the children (or, if a grandchild holds them, after 1 s).
      if (!open || now - all_exited_at > 1.0) break;
    }
  }
  for (Child& c : children) {
    if (c.out >= 0) ::close(c.out);
    if (c.err >= 0) ::close(c.err);
    emit_lines(c.out_buf, c.rank, o.out_fd, true);
    emit_lines(c.err_buf, c.rank, o.err_fd, true);
  }
  return first_failure;
}

}  // namespace ssm::train
