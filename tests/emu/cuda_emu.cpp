// The emulator's scheduler (cuda_emu.h): one block at a time, its threads as fibers switched round-robin at
// every barrier. A fiber starts on its own stack through makecontext / swapcontext; after that, switches are
// _setjmp / _longjmp (no signal-mask system call each time, as swapcontext makes).
#undef _FORTIFY_SOURCE  // its longjmp check rejects jumps between stacks
#include "tests/emu/cuda_emu.h"

#include <setjmp.h>
#include <ucontext.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace ssm::emu {
namespace {

constexpr size_t kStackBytes = 256 * 1024;

struct Barrier {
  int arrived = 0, live = 0;
  uint64_t generation = 0;
};

struct Fiber {
  ucontext_t ctx;  // the first entry
  jmp_buf jb;      // where it waits
  bool started = false;
  char* stack = nullptr;
  uint3 tid;
  int warp = 0, lane = 0;
  bool done = false;
};

struct Warp {
  Barrier bar;
  int lanes = 0;  // 32, or fewer in a block's last partial warp
  uint32_t slots[32];
};

struct BlockState {
  dim3 grid, block;
  uint3 bid;
  std::vector<Fiber> fibers;
  std::vector<Warp> warps;
  Barrier bar;
  int current = -1;
  uint64_t progress = 0;  // barrier arrivals and exits: the scheduler's deadlock check
  const std::function<void()>* body = nullptr;
  ucontext_t sched_ctx;
  jmp_buf sched;
};

BlockState* g_block = nullptr;
// The running launch's dynamic shared memory: a heap block of exactly the bytes asked for (rounded to 16), so
// a kernel that reads or writes past them is caught by AddressSanitizer when the tests are built with it.
unsigned char* g_smem = nullptr;

Fiber& me() { return g_block->fibers[size_t(g_block->current)]; }

void yield() {
  if (!_setjmp(me().jb)) _longjmp(g_block->sched, 1);
}

// Arrive at `b`; returns once every live participant has arrived.
void wait_at(Barrier& b) {
  ++g_block->progress;
  const uint64_t gen = b.generation;
  if (++b.arrived >= b.live) {
    b.arrived = 0;
    ++b.generation;
    return;
  }
  while (b.generation == gen) yield();
}

// A thread that exits no longer counts; a barrier its peers already fill opens.
void leave(Barrier& b) {
  --b.live;
  if (b.arrived > 0 && b.arrived >= b.live) {
    b.arrived = 0;
    ++b.generation;
  }
}

void trampoline() {
  (*g_block->body)();
  Fiber& f = me();
  f.done = true;
  ++g_block->progress;
  leave(g_block->bar);
  leave(g_block->warps[size_t(f.warp)].bar);
  _longjmp(g_block->sched, 1);  // never returns
}

// Runs f until it waits at a barrier or ends (a function of its own: nothing of the caller's lives across the
// jumps).
__attribute__((noinline, noclone)) void resume(BlockState& st, Fiber& f) {
  if (_setjmp(st.sched)) return;
  if (!f.started) {
    f.started = true;
    swapcontext(&st.sched_ctx, &f.ctx);
  } else {
    _longjmp(f.jb, 1);
  }
}

// f's first entry: trampoline on its own stack.
__attribute__((noinline, noclone)) void prepare(Fiber& f) {
  getcontext(&f.ctx);
  f.ctx.uc_stack.ss_sp = f.stack;
  f.ctx.uc_stack.ss_size = kStackBytes;
  f.ctx.uc_link = nullptr;
  makecontext(&f.ctx, trampoline, 0);
}

// Fiber stacks, kept from launch to launch.
std::vector<std::unique_ptr<char[]>>& stacks(size_t n) {
  static std::vector<std::unique_ptr<char[]>> pool;
  while (pool.size() < n) pool.emplace_back(new char[kStackBytes]);
  return pool;
}

}  // namespace

const uint3& thread_idx() { return me().tid; }
const uint3& block_idx() { return g_block->bid; }
const dim3& block_dim() { return g_block->block; }
const dim3& grid_dim() { return g_block->grid; }
void* dynamic_shared() { return g_smem; }
int lane_id() { return me().lane; }

void sync_block() { wait_at(g_block->bar); }
void sync_warp() { wait_at(g_block->warps[size_t(me().warp)].bar); }

uint32_t exchange(uint32_t v, int src) {
  Warp& w = g_block->warps[size_t(me().warp)];
  w.slots[me().lane] = v;
  wait_at(w.bar);
  const uint32_t r = w.slots[src];
  wait_at(w.bar);  // every lane has read before any slot is written again
  return r;
}

uint32_t ballot(bool pred) {
  Warp& w = g_block->warps[size_t(me().warp)];
  w.slots[me().lane] = pred ? 1u : 0u;
  wait_at(w.bar);
  uint32_t m = 0;
  for (int l = 0; l < w.lanes; ++l) m |= (w.slots[l] & 1u) << l;
  wait_at(w.bar);
  return m;
}

void run_grid(dim3 grid, dim3 block, size_t smem, const std::function<void()>& body) {
  if (smem > kMaxSharedBytes)
    throw std::runtime_error("emulated launch asks for " + std::to_string(smem) + " bytes of shared memory (limit " +
                             std::to_string(kMaxSharedBytes) + ")");
  const int nthreads = int(block.x * block.y * block.z);
  if (nthreads <= 0 || nthreads > 1024) throw std::runtime_error("emulated launch: bad block size");
  struct Free {
    void operator()(unsigned char* p) const { std::free(p); }
  };
  const std::unique_ptr<unsigned char, Free> smem_block(
      static_cast<unsigned char*>(std::aligned_alloc(16, std::max<size_t>(16, (smem + 15) / 16 * 16))));
  unsigned char* const outer_smem = g_smem;
  g_smem = smem_block.get();
  BlockState st;
  st.grid = grid;
  st.block = block;
  st.body = &body;
  st.fibers.resize(size_t(nthreads));
  auto& pool = stacks(size_t(nthreads));
  for (size_t i = 0; i < st.fibers.size(); ++i) st.fibers[i].stack = pool[i].get();
  BlockState* outer = g_block;
  g_block = &st;
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        st.bid = uint3{bx, by, bz};
        std::memset(smem_block.get(), 0xff, smem);  // NaN in every float: unwritten reads show
        const int nwarps = (nthreads + 31) / 32;
        st.warps.assign(size_t(nwarps), Warp{});
        st.bar = Barrier{};
        st.bar.live = nthreads;
        for (int i = 0; i < nthreads; ++i) {
          Fiber& f = st.fibers[size_t(i)];
          f.tid = uint3{unsigned(i) % block.x, unsigned(i) / block.x % block.y, unsigned(i) / (block.x * block.y)};
          f.warp = i / 32;
          f.lane = i % 32;
          f.done = false;
          f.started = false;
          ++st.warps[size_t(f.warp)].bar.live;
          ++st.warps[size_t(f.warp)].lanes;
          prepare(f);
        }
        int left = nthreads;
        while (left > 0) {
          const uint64_t before = st.progress;
          for (int i = 0; i < nthreads; ++i) {
            if (st.fibers[size_t(i)].done) continue;
            st.current = i;
            resume(st, st.fibers[size_t(i)]);
            if (st.fibers[size_t(i)].done) --left;
          }
          if (left > 0 && st.progress == before) {
            g_block = outer;
            g_smem = outer_smem;
            throw std::runtime_error("emulated kernel deadlocked in block (" + std::to_string(bx) + ", " +
                                     std::to_string(by) + ", " + std::to_string(bz) + "): " + std::to_string(left) +
                                     " threads wait at barriers that cannot complete");
          }
        }
      }
  g_block = outer;
  g_smem = outer_smem;
}

}  // namespace ssm::emu
