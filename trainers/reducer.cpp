#include "trainers/reducer.h"

#include <charconv>
#include <cstdlib>

#include "core/error.h"

namespace ssm::train {

namespace {

struct Launcher {
  const char* name;
  const char* rank;
  const char* size;
  const char* local_rank;
  const char* local_size;  // may be nullptr
};

constexpr Launcher kLaunchers[] = {
    {"torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"},
    {"mpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"},
    {"slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", nullptr},
};

int parse_int_var(const EnvLookup& env, const char* name, int fallback, bool* present = nullptr) {
  auto v = env(name);
  if (present) *present = v.has_value();
  if (!v) return fallback;
  const std::string& s = *v;
  int out = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  SSM_CHECK_INPUT(!s.empty() && ec == std::errc() && p == s.data() + s.size(), "environment variable ", name, "='",
                  s, "' is not an integer");
  return out;
}

}  // namespace

ProcessGroupEnv parse_launch_env(const EnvLookup& env) {
  ProcessGroupEnv pg;
  for (const Launcher& l : kLaunchers) {
    bool has_rank = false, has_size = false;
    int rank = parse_int_var(env, l.rank, 0, &has_rank);
    int size = parse_int_var(env, l.size, 1, &has_size);
    if (!has_rank && !has_size) continue;
    SSM_CHECK_INPUT(has_rank && has_size, l.name, " launch environment: ", has_rank ? l.rank : l.size,
                    " is set but ", has_rank ? l.size : l.rank, " is not (the launcher sets both)");
    SSM_CHECK_INPUT(size >= 1, l.name, " launch environment: ", l.size, "=", size, " must be >= 1");
    SSM_CHECK_INPUT(rank >= 0 && rank < size, l.name, " launch environment: ", l.rank, "=", rank,
                    " must be in [0, ", l.size, "=", size, ")");
    pg.rank = rank;
    pg.world_size = size;
    pg.launcher = l.name;
    bool has_local_size = false;
    pg.local_world_size = l.local_size ? parse_int_var(env, l.local_size, size, &has_local_size) : size;
    SSM_CHECK_INPUT(pg.local_world_size >= 1 && pg.local_world_size <= size, l.name, " launch environment: ",
                    l.local_size ? l.local_size : "local size", "=", pg.local_world_size, " must be in [1, ", l.size,
                    "=", size, "]");
    pg.local_rank = parse_int_var(env, l.local_rank, 0);
    SSM_CHECK_INPUT(pg.local_rank >= 0 && pg.local_rank < pg.local_world_size && pg.local_rank <= rank, l.name,
                    " launch environment: ", l.local_rank, "=", pg.local_rank, " is inconsistent with ", l.rank, "=",
                    rank, has_local_size ? cat(" and ", l.local_size, "=", pg.local_world_size) : std::string(),
                    " (", l.size, "=", size, ")");
    if (std::string(l.name) == "torchrun") {
      pg.master_addr = env("MASTER_ADDR").value_or("");
      pg.master_port = parse_int_var(env, "MASTER_PORT", 0);
      SSM_CHECK_INPUT(pg.master_port >= 0 && pg.master_port < 65536, "environment variable MASTER_PORT=",
                      pg.master_port, " is not a port number");
    }
    return pg;
  }
  return pg;
}

ProcessGroupEnv parse_launch_env() {
  return parse_launch_env([](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (!v) return std::nullopt;
    return std::string(v);
  });
}

}  // namespace ssm::train
