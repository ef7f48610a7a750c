#include "trainer/report.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

namespace vitscale::trainer {
namespace {

TEST(JsonlFileSinkTest, AppendsOneObjectPerLine) {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("vitscale_report_" + std::to_string(getpid()) + ".jsonl"))
                               .string();
  std::filesystem::remove(path);
  for (int attempt = 0; attempt < 2; ++attempt) {  // a resumed job appends
    auto sink = JsonlFileSink::Open(path, "job1");
    ASSERT_TRUE(sink.ok()) << sink.status().ToString();
    ASSERT_TRUE((*sink)->Metrics({{10, "loss", 0.5}, {10, "lr", 1e-3}}).ok());
    ComputeLedger ledger;
    ledger.train_flops = 1e12;
    ledger.images_seen = 640;
    ASSERT_TRUE((*sink)->Final({{"few_shot", "digits", 5, 0, "accuracy", 0.8}}, ledger).ok());
  }
  std::ifstream in(path);
  std::vector<nlohmann::json> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(lines.size(), 8u);
  EXPECT_EQ(lines[0]["kind"], "metric");
  EXPECT_EQ(lines[0]["job"], "job1");
  EXPECT_EQ(lines[1]["name"], "lr");
  EXPECT_EQ(lines[2]["kind"], "result");
  EXPECT_EQ(lines[2]["shots"], 5);
  EXPECT_EQ(lines[3]["kind"], "ledger");
  EXPECT_EQ(lines[3]["images_seen"], 640);
  EXPECT_EQ(lines[7]["kind"], "ledger");
  std::filesystem::remove(path);
  EXPECT_EQ(JsonlFileSink::Open("/nonexistent/dir/r.jsonl", "j").status().code(),
            StatusCode::kIOError);
}

}  // namespace
}  // namespace vitscale::trainer
