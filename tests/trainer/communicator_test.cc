// Runs under mpirun (1 or 2 ranks, see CMakeLists.txt). Every test calls the same collectives in
// the same order on every rank, whatever its expectations find, so that a failure on one rank
// reports instead of hanging the other.
#include "trainer/communicator.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "trainer/gradient_reducer.h"
#include "trainer/optim.h"

namespace vitscale::trainer {
namespace {

Communicator* comm = nullptr;

// Bucket small enough that the tests below span several buckets.
constexpr size_t kTinyBucketBytes = 64;

TEST(PlanBucketsTest, GroupsConsecutiveTensorsOfOneDtypeUpToTheCap) {
  std::vector<torch::Tensor> t = {torch::zeros({4}), torch::zeros({4}), torch::zeros({20}),
                                  torch::zeros({2}, torch::kFloat64), torch::zeros({2})};
  auto buckets = PlanBuckets(t, 32);
  ASSERT_EQ(buckets.size(), 4u);
  EXPECT_EQ(buckets[0], (std::vector<size_t>{0, 1}));  // 16 + 16 bytes
  EXPECT_EQ(buckets[1], (std::vector<size_t>{2}));     // 80 bytes: alone
  EXPECT_EQ(buckets[2], (std::vector<size_t>{3}));     // other dtype
  EXPECT_EQ(buckets[3], (std::vector<size_t>{4}));
}

TEST(MpiCommunicatorTest, RankAndSizeMatchTheLauncher) {
  const char* world = std::getenv("OMPI_COMM_WORLD_SIZE");
  EXPECT_EQ(comm->size(), world ? std::atoi(world) : 1);
  EXPECT_GE(comm->rank(), 0);
  EXPECT_LT(comm->rank(), comm->size());
}

TEST(MpiCommunicatorTest, BroadcastCopiesRankZerosTensors) {
  const double r = comm->rank();
  std::vector<torch::Tensor> t = {torch::full({3, 5}, r + 1), torch::full({7}, r + 1),
                                  torch::full({2, 2}, r + 1, torch::kFloat64),
                                  torch::arange(40, torch::kFloat32) * (r + 1)};
  // A leaf that requires grad, as model parameters do.
  t.push_back(torch::full({4}, r + 1).set_requires_grad(true));
  auto tiny = MpiCommunicator::Create(kTinyBucketBytes);
  ASSERT_TRUE(tiny.ok()) << tiny.status().ToString();
  Status status = (*tiny)->Broadcast(t);
  ASSERT_TRUE(status.ok()) << status.ToString();
  EXPECT_TRUE(torch::equal(t[0], torch::ones({3, 5})));
  EXPECT_TRUE(torch::equal(t[1], torch::ones({7})));
  EXPECT_TRUE(torch::equal(t[2], torch::ones({2, 2}, torch::kFloat64)));
  EXPECT_TRUE(torch::equal(t[3], torch::arange(40, torch::kFloat32)));
  EXPECT_TRUE(torch::equal(t[4].detach(), torch::ones({4})));
}

TEST(MpiCommunicatorTest, AllReduceAveragesAndSumsOverRanks) {
  auto tiny = MpiCommunicator::Create(kTinyBucketBytes);
  ASSERT_TRUE(tiny.ok());
  const double r = comm->rank(), n = comm->size();
  std::vector<torch::Tensor> t = {torch::full({9}, 2 * r), torch::full({3, 3}, r, torch::kFloat64),
                                  torch::arange(30, torch::kFloat32) + r};
  Status status = (*tiny)->AllReduce(t, Communicator::Reduce::kMean);
  ASSERT_TRUE(status.ok()) << status.ToString();
  const double mean_r = (n - 1) / 2;  // mean of 0..n-1
  EXPECT_TRUE(torch::allclose(t[0], torch::full({9}, 2 * mean_r)));
  EXPECT_TRUE(torch::allclose(t[1], torch::full({3, 3}, mean_r, torch::kFloat64)));
  EXPECT_TRUE(torch::allclose(t[2], torch::arange(30, torch::kFloat32) + mean_r));

  // Sum of zero-padded shards: an exact gather.
  torch::Tensor rows = torch::zeros({comm->size(), 3});
  rows[comm->rank()] = torch::tensor({0.1f, 0.2f, 0.3f}) * (r + 1);
  ASSERT_TRUE((*tiny)->AllReduce({rows}, Communicator::Reduce::kSum).ok());
  for (int i = 0; i < comm->size(); ++i) {
    EXPECT_TRUE(torch::equal(rows[i], torch::tensor({0.1f, 0.2f, 0.3f}) * (i + 1.0)));
  }
}

TEST(MpiCommunicatorTest, RefusesIntegerTensors) {
  std::vector<torch::Tensor> t = {torch::zeros({3}, torch::kInt64)};
  EXPECT_EQ(comm->AllReduce(t, Communicator::Reduce::kMean).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(comm->Broadcast(t).code(), StatusCode::kInvalidArgument);
}

TEST(MpiCommunicatorTest, AllReduceScalarsAddsOverRanks) {
  std::vector<double> v = {1.0, static_cast<double>(comm->rank()), 0.5};
  ASSERT_TRUE(comm->AllReduceScalars(&v).ok());
  const double n = comm->size();
  EXPECT_EQ(v[0], n);
  EXPECT_EQ(v[1], n * (n - 1) / 2);
  EXPECT_EQ(v[2], 0.5 * n);
  EXPECT_TRUE(comm->Barrier().ok());
}

// A small MLP, initialised from `seed` alone.
torch::nn::Sequential MakeNet(uint64_t seed) {
  torch::manual_seed(seed);
  return torch::nn::Sequential(torch::nn::Linear(6, 16), torch::nn::GELU(),
                               torch::nn::Linear(16, 3));
}

// One data-parallel step on this rank's shard of `inputs`, then the same AdamW update
// everywhere. Returns the global gradient norm.
double Step(torch::nn::Sequential& net, torch::optim::Optimizer& optimizer,
            Communicator& communicator, const torch::Tensor& inputs, const torch::Tensor& labels,
            int64_t step) {
  const int64_t shard = inputs.size(0) / communicator.size();
  torch::Tensor x = inputs.narrow(0, communicator.rank() * shard, shard);
  torch::Tensor y = labels.narrow(0, communicator.rank() * shard, shard);
  optimizer.zero_grad();
  SmoothedCrossEntropy(net->forward(x), y, 0.1).backward();
  std::vector<torch::Tensor> grads;
  for (auto& p : net->parameters()) grads.push_back(p.grad());
  EXPECT_TRUE(communicator.AllReduce(grads, Communicator::Reduce::kMean).ok());
  const double norm = ClipGradGlobalNorm(net->parameters(), 0.5);
  Schedule schedule{1e-2, 2, 6, Decay::kCosine, 0.0};
  SetLearningRate(optimizer, LearningRate(schedule, step));
  optimizer.step();
  return norm;
}

TEST(DataParallelTest, RanksStayBitIdenticalAndMatchOneRankWithTheWholeBatch) {
  constexpr int64_t kGlobalBatch = 8;
  OptimizerConfig config;
  config.weight_decay = 0.1;
  // Each rank starts from its own initialisation; the broadcast makes rank 0's everyone's.
  torch::nn::Sequential net = MakeNet(100 + comm->rank());
  ASSERT_TRUE(comm->Broadcast(net->parameters()).ok());
  auto optimizer = MakeOptimizer(config, net->parameters());

  // The reference: one process, the whole global batch, rank 0's initialisation.
  torch::nn::Sequential reference = MakeNet(100);
  auto reference_optimizer = MakeOptimizer(config, reference->parameters());
  struct Alone : Communicator {
    int rank() const override { return 0; }
    int size() const override { return 1; }
    Status Broadcast(const std::vector<torch::Tensor>&) override { return Status::Ok(); }
    Status AllReduce(const std::vector<torch::Tensor>&, Reduce) override { return Status::Ok(); }
    Status AllReduceScalars(std::vector<double>*) override { return Status::Ok(); }
    Status Barrier() override { return Status::Ok(); }
    void Abort(int exit_status) override { std::_Exit(exit_status); }
  } alone;  // the one-rank run, beside the real ranks

  torch::manual_seed(7);
  for (int64_t step = 0; step < 6; ++step) {
    torch::Tensor inputs = torch::randn({kGlobalBatch, 6});
    torch::Tensor labels = torch::randint(0, 3, {kGlobalBatch});
    Step(net, *optimizer, *comm, inputs, labels, step);
    Step(reference, *reference_optimizer, alone, inputs, labels, step);

    // Bit-identical across ranks: rank 0's copy equals ours exactly.
    std::vector<torch::Tensor> copies;
    for (auto& p : net->parameters()) copies.push_back(p.detach().clone());
    ASSERT_TRUE(comm->Broadcast(copies).ok());
    for (size_t i = 0; i < copies.size(); ++i) {
      EXPECT_TRUE(torch::equal(copies[i], net->parameters()[i].detach()))
          << "rank " << comm->rank() << " parameter " << i << " differs after step " << step;
      EXPECT_TRUE(torch::allclose(net->parameters()[i], reference->parameters()[i], 1e-5, 1e-6))
          << "parameter " << i << " drifts from the one-rank run after step " << step;
    }
  }
}

// Passes every call on to the test's communicator and counts the all-reduces the reducer starts.
struct CountingCommunicator : Communicator {
  int rank() const override { return comm->rank(); }
  int size() const override { return comm->size(); }
  Status Broadcast(const std::vector<torch::Tensor>& t) override { return comm->Broadcast(t); }
  Status AllReduce(const std::vector<torch::Tensor>& t, Reduce reduce) override {
    return comm->AllReduce(t, reduce);
  }
  Expected<std::unique_ptr<Pending>> StartAllReduce(const torch::Tensor& flat,
                                                    Reduce reduce) override {
    ++started;
    return comm->StartAllReduce(flat, reduce);
  }
  Status AllReduceScalars(std::vector<double>* v) override { return comm->AllReduceScalars(v); }
  Status Barrier() override { return comm->Barrier(); }
  void Abort(int exit_status) override { comm->Abort(exit_status); }
  int started = 0;
};

// A net with a parameter the forward never reaches, as a replaced head can leave behind.
struct Unreached : torch::nn::Module {
  Unreached() {
    body = register_module("body", torch::nn::Sequential(torch::nn::Linear(6, 16),
                                                         torch::nn::GELU(),
                                                         torch::nn::Linear(16, 3)));
    spare = register_parameter("spare", torch::ones({5}));
  }
  torch::nn::Sequential body{nullptr};
  torch::Tensor spare;
};

// This rank's gradient over two micro-batches of `x`, then averaged over ranks: by the
// reducer's hooks when `reducer` is set, else by one AllReduce after backward (the reference).
std::vector<torch::Tensor> MeanGradients(Unreached& net, const torch::Tensor& x,
                                         const torch::Tensor& y, GradientReducer* reducer) {
  for (auto& p : net.parameters()) p.mutable_grad() = torch::Tensor();
  const int64_t half = x.size(0) / 2;
  for (int64_t begin : {int64_t{0}, half}) {
    if (reducer != nullptr && begin == half) reducer->Arm();
    torch::Tensor loss =
        SmoothedCrossEntropy(net.body->forward(x.narrow(0, begin, half)), y.narrow(0, begin, half),
                             0.0) * 0.5;
    loss.backward();
  }
  std::vector<torch::Tensor> grads;
  if (reducer != nullptr) {
    EXPECT_TRUE(reducer->Finish().ok());
  } else {
    for (auto& p : net.parameters()) {
      if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
    }
    for (auto& p : net.parameters()) grads.push_back(p.grad());
    EXPECT_TRUE(comm->AllReduce(grads, Communicator::Reduce::kMean).ok());
    grads.clear();
  }
  for (auto& p : net.parameters()) grads.push_back(p.grad().clone());
  return grads;
}

TEST(GradientReducerTest, HooksAverageLikeOneAllReduceAfterBackward) {
  torch::manual_seed(3);
  Unreached net;
  ASSERT_TRUE(comm->Broadcast(net.parameters()).ok());
  torch::manual_seed(11 + comm->rank());  // each rank its own shard
  torch::Tensor x = torch::randn({8, 6});
  torch::Tensor y = torch::randint(0, 3, {8});
  const std::vector<torch::Tensor> expected = MeanGradients(net, x, y, nullptr);

  // Tiny buckets: one tensor or two each, so several start while backward runs.
  CountingCommunicator counting;
  GradientReducer reducer(net.parameters(), counting, kTinyBucketBytes);
  ASSERT_GT(reducer.bucket_count(), 3u);
  for (int repeat = 0; repeat < 2; ++repeat) {  // and again: the reducer resets between steps
    counting.started = 0;
    const std::vector<torch::Tensor> got = MeanGradients(net, x, y, &reducer);
    EXPECT_EQ(counting.started, static_cast<int>(reducer.bucket_count()));
    ASSERT_EQ(got.size(), expected.size());
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_TRUE(torch::equal(got[i], expected[i])) << "parameter " << i << ", repeat " << repeat;
    }
  }
  // The parameter the forward never reached has a zero gradient, as the reference gives it.
  EXPECT_TRUE(torch::equal(net.spare.grad(), torch::zeros({5})));
}

TEST(GradientReducerTest, BucketsStartWhileBackwardIsStillRunning) {
  torch::nn::Sequential net = MakeNet(3);
  ASSERT_TRUE(comm->Broadcast(net->parameters()).ok());
  CountingCommunicator counting;
  GradientReducer reducer(net->parameters(), counting, kTinyBucketBytes);
  // The first layer's weight gets its gradient last: by then the layers above it have had
  // their buckets started.
  int started_before_last = -1;
  net->parameters().front().register_hook(
      [&](torch::Tensor) { started_before_last = counting.started; });
  torch::Tensor x = torch::randn({4, 6});
  torch::Tensor y = torch::randint(0, 3, {4});
  reducer.Arm();
  SmoothedCrossEntropy(net->forward(x), y, 0.0).backward();
  EXPECT_GE(started_before_last, 2) << "buckets waited for the end of the backward pass";
  EXPECT_TRUE(reducer.Finish().ok());
}

}  // namespace
}  // namespace vitscale::trainer

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  torch::set_num_threads(1);  // ranks x threads <= cores
  auto comm = vitscale::trainer::MpiCommunicator::Create();
  if (!comm.ok()) {
    std::fprintf(stderr, "%s\n", comm.status().ToString().c_str());
    return 1;
  }
  vitscale::trainer::comm = comm->get();
  if (comm.value()->rank() != 0) {
    // One full report is enough; the other ranks print their failures only.
    GTEST_FLAG_SET(brief, true);
  }
  int result = RUN_ALL_TESTS();
  comm.value().reset();
  vitscale::trainer::FinalizeMpi();
  return result;
}
