#include "trainers/rendezvous.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <set>
#include <thread>

#include "core/error.h"
#include "trainers/comm.h"
#include "trainers/comm_mpi.h"

namespace ssm::train {

namespace {

constexpr uint32_t kMagic = 0x53534d52;  // "SSMR"
constexpr uint32_t kVersion = 1;
constexpr uint32_t kMaxPayload = 1u << 20;

// Closes the descriptor when it goes out of scope.
struct Fd {
  int fd = -1;
  explicit Fd(int f = -1) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(Fd&& o) noexcept : fd(o.fd) { o.fd = -1; }
  Fd& operator=(Fd&& o) noexcept {
    std::swap(fd, o.fd);
    return *this;
  }
};

std::string where(const std::string& host, int port) { return cat(host, ":", port); }

int remaining_ms(double deadline) {
  const double left = deadline - monotonic_seconds();
  return left <= 0 ? 0 : int(std::min(left * 1000.0 + 1.0, 1e9));
}

// poll() one descriptor for `events` until the deadline; false on timeout. EINTR (a signal) retries.
bool wait_fd(int fd, short events, double deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int rc = ::poll(&p, 1, remaining_ms(deadline));
    if (rc > 0) return true;
    if (rc == 0) return false;
    if (errno != EINTR) return false;
  }
}

// All of `n` bytes, or false (timeout, EOF or error; `err` says which).
bool read_all(int fd, void* buf, size_t n, double deadline, std::string& err) {
  auto* p = static_cast<char*>(buf);
  while (n > 0) {
    if (!wait_fd(fd, POLLIN, deadline)) {
      err = "timed out";
      return false;
    }
    const ssize_t k = ::recv(fd, p, n, 0);
    if (k == 0) {
      err = "connection closed by the other side";
      return false;
    }
    if (k < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      err = std::strerror(errno);
      return false;
    }
    p += k;
    n -= size_t(k);
  }
  return true;
}

bool write_all(int fd, const void* buf, size_t n, double deadline, std::string& err) {
  auto* p = static_cast<const char*>(buf);
  while (n > 0) {
    if (!wait_fd(fd, POLLOUT, deadline)) {
      err = "timed out";
      return false;
    }
    const ssize_t k = ::send(fd, p, n, MSG_NOSIGNAL);
    if (k < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      err = std::strerror(errno);
      return false;
    }
    p += k;
    n -= size_t(k);
  }
  return true;
}

void put_u32(std::vector<uint8_t>& out, uint32_t v) {
  v = htonl(v);
  const size_t at = out.size();
  out.resize(at + 4);
  std::memcpy(out.data() + at, &v, 4);
}
uint32_t get_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return ntohl(v);
}

void set_nonblocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL, 0) | O_NONBLOCK); }

// A listening socket on every interface (IPv6 dual stack when available, else IPv4).
Fd listen_on(int port, std::string& err) {
  for (int family : {AF_INET6, AF_INET}) {
    Fd s(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (s.fd < 0) {
      err = std::strerror(errno);
      continue;
    }
    int one = 1, zero = 0;
    ::setsockopt(s.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    int rc;
    if (family == AF_INET6) {
      ::setsockopt(s.fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
      sockaddr_in6 a{};
      a.sin6_family = AF_INET6;
      a.sin6_addr = in6addr_any;
      a.sin6_port = htons(uint16_t(port));
      rc = ::bind(s.fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    } else {
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_ANY);
      a.sin_port = htons(uint16_t(port));
      rc = ::bind(s.fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    }
    if (rc != 0 || ::listen(s.fd, 128) != 0) {
      err = std::strerror(errno);
      if (errno == EADDRINUSE) return Fd();
      continue;
    }
    set_nonblocking(s.fd);
    return s;
  }
  return Fd();
}

// One connection attempt to host:port, at most until `deadline`.
Fd connect_once(const std::string& host, int port, double deadline, std::string& err) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const std::string port_s = std::to_string(port);
  const int gai = ::getaddrinfo(host.c_str(), port_s.c_str(), &hints, &res);
  if (gai != 0) {
    err = cat("cannot resolve '", host, "': ", ::gai_strerror(gai));
    return Fd();
  }
  Fd out;
  for (addrinfo* a = res; a; a = a->ai_next) {
    Fd s(::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol));
    if (s.fd < 0) {
      err = std::strerror(errno);
      continue;
    }
    set_nonblocking(s.fd);
    int rc = ::connect(s.fd, a->ai_addr, a->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      if (!wait_fd(s.fd, POLLOUT, std::min(deadline, monotonic_seconds() + 2.0))) {
        err = "connect timed out";
        continue;
      }
      int soerr = 0;
      socklen_t len = sizeof soerr;
      ::getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
      rc = soerr == 0 ? 0 : -1;
      errno = soerr;
    }
    if (rc != 0) {
      err = std::strerror(errno);
      continue;
    }
    int one = 1;
    ::setsockopt(s.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    out = std::move(s);
    break;
  }
  ::freeaddrinfo(res);
  return out;
}

std::vector<uint8_t> reply(uint32_t status, const std::vector<uint8_t>& body) {
  std::vector<uint8_t> r;
  put_u32(r, kMagic);
  put_u32(r, status);
  put_u32(r, uint32_t(body.size()));
  r.insert(r.end(), body.begin(), body.end());
  return r;
}

std::vector<uint8_t> serve(const RendezvousEndpoint& ep, int world_size, const std::vector<uint8_t>& payload,
                           double timeout_s) {
  const std::string at = where(ep.host, ep.port);
  SSM_CHECK_INPUT(payload.size() <= kMaxPayload, "rendezvous: payload of ", payload.size(), " bytes is too large");
  std::string err;
  Fd ls = listen_on(ep.port, err);
  SSM_CHECK_INPUT(ls.fd >= 0, "rank 0: cannot listen on port ", ep.port, " for the rendezvous (", ep.how, "): ", err,
                  "; is another run using MASTER_PORT ", ep.port - 1, " on this host? choose another MASTER_PORT");
  const double deadline = monotonic_seconds() + timeout_s;
  std::set<uint32_t> served;
  while (int(served.size()) < world_size - 1) {
    if (!wait_fd(ls.fd, POLLIN, deadline)) {
      std::string missing;
      for (int r = 1; r < world_size && missing.size() < 200; ++r)
        if (!served.count(uint32_t(r))) missing += (missing.empty() ? "" : ", ") + std::to_string(r);
      throw_internal(cat("rank 0: rendezvous on port ", ep.port, " (", ep.how, "): only ", served.size(), " of ",
                         world_size - 1, " peers connected within ", timeout_s, " s (missing ranks: ", missing,
                         "); did every rank start, with the same MASTER_ADDR (", ep.host, ") and MASTER_PORT?"));
    }
    Fd c(::accept4(ls.fd, nullptr, nullptr, SOCK_CLOEXEC));
    if (c.fd < 0) continue;
    set_nonblocking(c.fd);
    // A peer gets at most 10 s (and the overall deadline) for its handshake.
    const double conn_deadline = std::min(deadline, monotonic_seconds() + 10.0);
    uint8_t hello[16];
    if (!read_all(c.fd, hello, sizeof hello, conn_deadline, err)) continue;  // a stray client: ignore
    if (get_u32(hello) != kMagic) continue;
    const uint32_t version = get_u32(hello + 4), world = get_u32(hello + 8), rank = get_u32(hello + 12);
    std::string problem;
    if (version != kVersion)
      problem = cat("protocol version ", version, " != ", kVersion, " (different ssm builds?)");
    else if (int(world) != world_size)
      problem = cat("rank ", rank, " says the world size is ", world, " but rank 0 has ", world_size);
    else if (rank == 0 || int(rank) >= world_size)
      problem = cat("a peer claims rank ", rank, ", not in [1, ", world_size, ")");
    else if (served.count(rank))
      problem = cat("rank ", rank, " connected twice (two processes with the same RANK?)");
    if (!problem.empty()) {
      const std::vector<uint8_t> refusal = reply(1, std::vector<uint8_t>(problem.begin(), problem.end()));
      write_all(c.fd, refusal.data(), refusal.size(), conn_deadline, err);
      throw_input(cat("rank 0: rendezvous at ", at, " (", ep.how, "): ", problem));
    }
    const std::vector<uint8_t> r = reply(0, payload);
    if (write_all(c.fd, r.data(), r.size(), conn_deadline, err)) served.insert(rank);
  }
  return payload;
}

std::vector<uint8_t> fetch(const RendezvousEndpoint& ep, int rank, int world_size, double timeout_s) {
  const std::string at = where(ep.host, ep.port);
  const double deadline = monotonic_seconds() + timeout_s;
  std::string err;
  Fd c;
  for (;;) {
    c = connect_once(ep.host, ep.port, deadline, err);
    if (c.fd >= 0) break;
    if (monotonic_seconds() + 0.2 > deadline)
      throw_internal(cat("rank ", rank, ": could not reach rank 0's rendezvous at ", at, " (", ep.how, ") within ",
                         timeout_s, " s (last error: ", err, "); is rank 0 running, is ", ep.host,
                         " reachable from this host and port ", ep.port, " open?"));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  std::vector<uint8_t> hello;
  put_u32(hello, kMagic);
  put_u32(hello, kVersion);
  put_u32(hello, uint32_t(world_size));
  put_u32(hello, uint32_t(rank));
  uint8_t head[12];
  if (!write_all(c.fd, hello.data(), hello.size(), deadline, err) || !read_all(c.fd, head, sizeof head, deadline, err))
    throw_internal(cat("rank ", rank, ": rendezvous with rank 0 at ", at, " (", ep.how, ") failed: ", err));
  SSM_CHECK_INPUT(get_u32(head) == kMagic, "rank ", rank, ": ", at,
                  " answered, but not as an ssm rendezvous (wrong magic): another program uses port ", ep.port,
                  "? choose another MASTER_PORT");
  const uint32_t status = get_u32(head + 4), len = get_u32(head + 8);
  SSM_CHECK_INPUT(len <= kMaxPayload, "rank ", rank, ": rendezvous at ", at, " sent a ", len, "-byte payload");
  std::vector<uint8_t> body(len);
  if (len > 0 && !read_all(c.fd, body.data(), len, deadline, err))
    throw_internal(cat("rank ", rank, ": rendezvous with rank 0 at ", at, " failed: ", err));
  SSM_CHECK_INPUT(status == 0, "rank ", rank, ": rank 0 at ", at, " refused the rendezvous: ",
                  std::string(body.begin(), body.end()));
  return body;
}

std::optional<int> env_int(const EnvLookup& env, const char* name) {
  auto v = env(name);
  if (!v) return std::nullopt;
  int out = 0;
  auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), out);
  SSM_CHECK_INPUT(!v->empty() && ec == std::errc() && p == v->data() + v->size(), "environment variable ", name, "='",
                  *v, "' is not an integer");
  return out;
}

}  // namespace

std::string slurm_first_host(const std::string& nodelist) {
  // The first entry: up to a comma outside brackets.
  std::string first;
  int depth = 0;
  for (char ch : nodelist) {
    if (ch == '[') ++depth;
    if (ch == ']') --depth;
    if (ch == ',' && depth == 0) break;
    first += ch;
  }
  // Replace each bracket group by its first value: "[03-05,9]" -> "03".
  for (size_t open; (open = first.find('[')) != std::string::npos;) {
    const size_t close = first.find(']', open);
    SSM_CHECK_INPUT(close != std::string::npos, "SLURM_JOB_NODELIST='", nodelist, "': unbalanced '['");
    std::string inner = first.substr(open + 1, close - open - 1);
    inner = inner.substr(0, inner.find(','));
    inner = inner.substr(0, inner.find('-'));
    first = first.substr(0, open) + inner + first.substr(close + 1);
  }
  SSM_CHECK_INPUT(!first.empty(), "SLURM_JOB_NODELIST='", nodelist, "' names no host");
  return first;
}

RendezvousEndpoint rendezvous_endpoint(const ProcessGroupEnv& env, const EnvLookup& getenv) {
  RendezvousEndpoint ep;
  std::string host_how, port_how;
  if (auto a = getenv("MASTER_ADDR"); a && !a->empty()) {
    ep.host = *a;
    host_how = "MASTER_ADDR";
  } else {
    auto list = getenv("SLURM_JOB_NODELIST");
    if (!list) list = getenv("SLURM_NODELIST");
    SSM_CHECK_INPUT(list.has_value(), "rank ", env.rank, " of ", env.world_size, " (", env.launcher,
                    "): MASTER_ADDR is not set: set MASTER_ADDR (and MASTER_PORT) to rank 0's host, or launch with "
                    "torchrun, srun, mpirun or `ssm launch`");
    ep.host = slurm_first_host(*list);
    host_how = "first host of SLURM_JOB_NODELIST";
  }
  int master_port;
  if (auto p = env_int(getenv, "MASTER_PORT")) {
    master_port = *p;
    port_how = cat("MASTER_PORT ", master_port, " + 1");
  } else {
    auto job = env_int(getenv, "SLURM_JOB_ID");
    SSM_CHECK_INPUT(job.has_value(), "rank ", env.rank, " of ", env.world_size, " (", env.launcher,
                    "): MASTER_PORT is not set (and no SLURM_JOB_ID to derive it from)");
    master_port = 20000 + (*job % 20000);
    port_how = cat("MASTER_PORT ", master_port, " = 20000 + SLURM_JOB_ID mod 20000, + 1");
  }
  SSM_CHECK_INPUT(master_port >= 1 && master_port < 65535, "MASTER_PORT=", master_port,
                  " must be in [1, 65534] (the rendezvous uses MASTER_PORT + 1)");
  ep.port = master_port + 1;
  ep.how = cat(host_how, ", port ", port_how);
  return ep;
}

RendezvousEndpoint rendezvous_endpoint(const ProcessGroupEnv& env) {
  return rendezvous_endpoint(env, [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (!v) return std::nullopt;
    return std::string(v);
  });
}

std::vector<uint8_t> tcp_broadcast(const RendezvousEndpoint& ep, int rank, int world_size,
                                   const std::vector<uint8_t>& payload, double timeout_s) {
  SSM_CHECK_INPUT(world_size >= 1 && rank >= 0 && rank < world_size, "rendezvous: rank ", rank, " of ", world_size);
  if (world_size == 1) return payload;
  return rank == 0 ? serve(ep, world_size, payload, timeout_s) : fetch(ep, rank, world_size, timeout_s);
}

std::vector<uint8_t> share_bytes(const ProcessGroupEnv& env, const std::vector<uint8_t>& payload_on_rank0,
                                 double timeout_s) {
  if (env.world_size == 1) return payload_on_rank0;
#ifdef SSM_WITH_MPI
  if (env.launcher == "mpi" && !std::getenv("MASTER_ADDR")) {
    uint32_t n = uint32_t(payload_on_rank0.size());
    mpi::broadcast_bytes(&n, sizeof n, 0, timeout_s, "rendezvous (MPI_Bcast of the payload size)");
    std::vector<uint8_t> out = payload_on_rank0;
    out.resize(n);
    mpi::broadcast_bytes(out.data(), n, 0, timeout_s, "rendezvous (MPI_Bcast of the NCCL id)");
    return out;
  }
#endif
  return tcp_broadcast(rendezvous_endpoint(env), env.rank, env.world_size, payload_on_rank0, timeout_s);
}

int free_port_pair() {
  for (int attempt = 0; attempt < 50; ++attempt) {
    Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    SSM_CHECK(s.fd >= 0, "socket: ", std::strerror(errno));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    if (::bind(s.fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) continue;
    socklen_t len = sizeof a;
    ::getsockname(s.fd, reinterpret_cast<sockaddr*>(&a), &len);
    const int p = ntohs(a.sin_port);
    if (p >= 65535) continue;
    std::string err;
    Fd next = listen_on(p + 1, err);  // p + 1 must be free too (the rendezvous port)
    if (next.fd >= 0) return p;
  }
  throw_internal("could not find two consecutive free TCP ports on this host");
}

}  // namespace ssm::train
