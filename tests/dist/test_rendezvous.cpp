// The TCP rendezvous in one process: threads act as ranks on localhost.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <thread>

#include "core/error.h"
#include "trainers/comm.h"
#include "trainers/rendezvous.h"

using namespace ssm;
using namespace ssm::train;

namespace {

EnvLookup env_of(std::map<std::string, std::string> m) {
  return [m](const std::string& k) -> std::optional<std::string> {
    auto it = m.find(k);
    if (it == m.end()) return std::nullopt;
    return it->second;
  };
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

RendezvousEndpoint local_endpoint() {
  RendezvousEndpoint ep;
  ep.host = "127.0.0.1";
  ep.port = free_port_pair() + 1;
  ep.how = "test";
  return ep;
}

}  // namespace

TEST(Rendezvous, SlurmFirstHost) {
  EXPECT_EQ(slurm_first_host("node07"), "node07");
  EXPECT_EQ(slurm_first_host("node[03-05,9],gpu1"), "node03");
  EXPECT_EQ(slurm_first_host("gpu1,node[03-05]"), "gpu1");
  EXPECT_EQ(slurm_first_host("rack[2-3]-n[011,020]"), "rack2-n011");
  EXPECT_EQ(slurm_first_host("a[7]b"), "a7b");
  EXPECT_THROW(slurm_first_host(""), Error);
  EXPECT_THROW(slurm_first_host("node[01-02"), Error);
}

TEST(Rendezvous, EndpointFromTorchrunVariables) {
  ProcessGroupEnv pg;
  pg.world_size = 2;
  pg.launcher = "torchrun";
  auto ep = rendezvous_endpoint(pg, env_of({{"MASTER_ADDR", "10.0.0.5"}, {"MASTER_PORT", "29500"}}));
  EXPECT_EQ(ep.host, "10.0.0.5");
  EXPECT_EQ(ep.port, 29501);  // MASTER_PORT + 1: torchrun's store keeps MASTER_PORT
  EXPECT_NE(ep.how.find("MASTER_PORT 29500 + 1"), std::string::npos) << ep.how;
}

TEST(Rendezvous, EndpointDerivedUnderSlurm) {
  ProcessGroupEnv pg;
  pg.world_size = 16;
  pg.launcher = "slurm";
  auto ep = rendezvous_endpoint(pg, env_of({{"SLURM_JOB_NODELIST", "gpu[12-13]"}, {"SLURM_JOB_ID", "4242"}}));
  EXPECT_EQ(ep.host, "gpu12");
  EXPECT_EQ(ep.port, 20000 + 4242 + 1);
  ep = rendezvous_endpoint(pg, env_of({{"SLURM_JOB_NODELIST", "gpu[12-13]"}, {"SLURM_JOB_ID", "123456"}}));
  EXPECT_EQ(ep.port, 20000 + 123456 % 20000 + 1);
  // Explicit variables win over the derivation.
  ep = rendezvous_endpoint(pg, env_of({{"SLURM_JOB_NODELIST", "gpu[12-13]"}, {"SLURM_JOB_ID", "1"},
                                       {"MASTER_ADDR", "head"}, {"MASTER_PORT", "3000"}}));
  EXPECT_EQ(ep.host, "head");
  EXPECT_EQ(ep.port, 3001);
}

TEST(Rendezvous, EndpointErrorsNameTheVariables) {
  ProcessGroupEnv pg;
  pg.world_size = 2;
  pg.launcher = "torchrun";
  EXPECT_NE(error_of([&] { rendezvous_endpoint(pg, env_of({{"MASTER_PORT", "1"}})); }).find("MASTER_ADDR"),
            std::string::npos);
  EXPECT_NE(error_of([&] { rendezvous_endpoint(pg, env_of({{"MASTER_ADDR", "x"}})); }).find("MASTER_PORT"),
            std::string::npos);
  EXPECT_NE(error_of([&] { rendezvous_endpoint(pg, env_of({{"MASTER_ADDR", "x"}, {"MASTER_PORT", "65535"}})); })
                .find("65534"),
            std::string::npos);
  EXPECT_NE(error_of([&] { rendezvous_endpoint(pg, env_of({{"MASTER_ADDR", "x"}, {"MASTER_PORT", "abc"}})); })
                .find("not an integer"),
            std::string::npos);
}

TEST(Rendezvous, ThreeRanksReceiveThePayload) {
  const RendezvousEndpoint ep = local_endpoint();
  std::vector<uint8_t> id(128);
  for (size_t i = 0; i < id.size(); ++i) id[i] = uint8_t(i * 7 + 3);
  std::vector<std::vector<uint8_t>> got(3);
  std::vector<std::string> errors(3);
  std::vector<std::thread> ranks;
  // Peers start before rank 0 listens: they must retry.
  for (int r : {2, 1, 0}) {
    ranks.emplace_back([&, r] {
      errors[size_t(r)] = error_of([&] { got[size_t(r)] = tcp_broadcast(ep, r, 3, r == 0 ? id : std::vector<uint8_t>{}, 10); });
    });
    if (r == 1) std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
  for (auto& t : ranks) t.join();
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ(errors[size_t(r)], "") << "rank " << r;
    EXPECT_EQ(got[size_t(r)], id) << "rank " << r;
  }
}

TEST(Rendezvous, WrongWorldSizeIsDetectedOnBothSides) {
  const RendezvousEndpoint ep = local_endpoint();
  std::string e0, e1;
  std::thread t0([&] { e0 = error_of([&] { tcp_broadcast(ep, 0, 2, {1, 2, 3}, 10); }); });
  std::thread t1([&] { e1 = error_of([&] { tcp_broadcast(ep, 1, 3, {}, 10); }); });
  t0.join();
  t1.join();
  EXPECT_NE(e0.find("world size is 3 but rank 0 has 2"), std::string::npos) << e0;
  EXPECT_NE(e1.find("refused the rendezvous"), std::string::npos) << e1;
  EXPECT_NE(e1.find("127.0.0.1:" + std::to_string(ep.port)), std::string::npos) << e1;
}

TEST(Rendezvous, MissingRankZeroTimesOutNamingTheAddress) {
  const RendezvousEndpoint ep = local_endpoint();
  const double t0 = monotonic_seconds();
  const std::string e = error_of([&] { tcp_broadcast(ep, 1, 2, {}, 1.0); });
  const double took = monotonic_seconds() - t0;
  EXPECT_NE(e.find("rank 1: could not reach rank 0's rendezvous at 127.0.0.1:" + std::to_string(ep.port)),
            std::string::npos)
      << e;
  EXPECT_LT(took, 5.0);
}

TEST(Rendezvous, MissingPeerTimesOutListingTheRanks) {
  const RendezvousEndpoint ep = local_endpoint();
  std::string e0;
  std::thread t1([&] { tcp_broadcast(ep, 1, 3, {}, 5); });
  e0 = error_of([&] { tcp_broadcast(ep, 0, 3, {9}, 1.5); });
  t1.join();
  EXPECT_NE(e0.find("only 1 of 2 peers connected"), std::string::npos) << e0;
  EXPECT_NE(e0.find("missing ranks: 2"), std::string::npos) << e0;
}

TEST(Rendezvous, StrayClientsAreIgnored) {
  const RendezvousEndpoint ep = local_endpoint();
  std::vector<uint8_t> got;
  std::thread t0([&] { got = tcp_broadcast(ep, 0, 2, {42}, 10); });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  // A client that speaks another protocol: rank 0 drops it and keeps waiting.
  {
    int s = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(ep.port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    const char junk[] = "GET / HTTP/1.0\r\n\r\n";
    ASSERT_GT(::send(s, junk, sizeof junk - 1, 0), 0);
    ::close(s);
  }
  EXPECT_EQ(tcp_broadcast(ep, 1, 2, {}, 10), std::vector<uint8_t>{42});
  t0.join();
  EXPECT_EQ(got, std::vector<uint8_t>{42});
}
