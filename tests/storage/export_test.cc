// The Table 6 export: the table built from a database the test fills, its three formats as
// exact text, and `vitscale export` (cli/export_command.cc) on top of it.
#include <gtest/gtest.h>

#include <filesystem>

#include "cli/commands.h"
#include "storage/results_table.h"
#include "storage/store.h"
#include "tests/storage/test_util.h"

namespace vitscale::storage {
namespace {

using testing::MakeJob;
using testing::TempDir;

class ExportTest : public ::testing::Test {
 protected:
  // Three jobs: one finished with every result, one finished with a result missing, and one
  // that has not run.
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    path_ = dir_.File("study.db");
    auto opened = Store::Open(path_);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    Store& store = **opened;
    vit_ = MakeJob("ViT-B/16", "jft-300m", 303000000, 7);
    resnet_ = MakeJob("R50x1", "imagenet_1k", 1281167, 90);
    pending_ = MakeJob("ViT-L/16", "jft-300m", 303000000, 14);
    ASSERT_TRUE(store.AddSweep("demo", "name: demo\n", {vit_, resnet_, pending_}).ok());
    ASSERT_TRUE(store.AddSweep("other", "name: other\n", {pending_}).ok());

    for (const JobRecord* job : {&vit_, &resnet_}) {
      ASSERT_TRUE(store.AddAttempt(job->id, std::nullopt, "localhost:1").ok());
      ASSERT_TRUE(store.EndAttempt(job->id, 1, AttemptOutcome::kSucceeded, 0).ok());
      ASSERT_TRUE(store.SetJobState(job->id, JobState::kSucceeded).ok());
    }
    ASSERT_TRUE(
        store.AddLedgerEntry({vit_.id, 1, 4.262e21, 1e18, 2121000000, "tpu-v3", 360000, 3600})
            .ok());
    ASSERT_TRUE(
        store.AddLedgerEntry({resnet_.id, 1, 5.55e19, 0, 115305030, "cpu", 37800, 37800}).ok());
    std::vector<ResultRecord> results = {
        {vit_.id, Evaluation::kFineTune, "cifar10", {}, {}, "accuracy", 0.9912},
        {vit_.id, Evaluation::kFewShot, "imagenet", 5, 0, "accuracy", 0.76},
        {vit_.id, Evaluation::kFewShot, "imagenet", 5, 1, "accuracy", 0.77},
        // Neither of these is a transfer accuracy column.
        {vit_.id, Evaluation::kPretrain, "jft-300m", {}, {}, "accuracy", 0.5},
        {vit_.id, Evaluation::kFewShot, "imagenet", 5, 0, "loss", 0.3},
        {resnet_.id, Evaluation::kFineTune, "cifar10", {}, {}, "accuracy", 0.8},
    };
    ASSERT_TRUE(store.AddResults(results).ok());
  }

  TempDir dir_;
  std::string path_;
  JobRecord vit_, resnet_, pending_;
};

TEST_F(ExportTest, TableRowsAndColumns) {
  auto store = Store::Open(path_, {true, 1000, nullptr});
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  auto table = BuildResultsTable(**store, "demo");
  ASSERT_TRUE(table.ok()) << table.status().ToString();
  ASSERT_EQ(table->columns.size(), 2u);
  EXPECT_EQ(table->columns[0].Title(), "cifar10 fine-tune");
  EXPECT_EQ(table->columns[1].Title(), "imagenet 5-shot");
  ASSERT_EQ(table->rows.size(), 3u);
  const ResultsTableRow& vit = table->rows[0];
  EXPECT_FALSE(vit.compute_planned);
  EXPECT_DOUBLE_EQ(vit.exaflops, 4262);
  EXPECT_DOUBLE_EQ(*vit.device_hours, 100);
  EXPECT_DOUBLE_EQ(*vit.transfer[1], 76.5);
  EXPECT_DOUBLE_EQ(*vit.average, (99.12 + 76.5) / 2);
  const ResultsTableRow& pending = table->rows[2];
  EXPECT_TRUE(pending.compute_planned);
  EXPECT_DOUBLE_EQ(pending.exaflops, 6e9 * 303e6 * 14 / 1e18);
  EXPECT_FALSE(pending.device_hours.has_value());
  EXPECT_FALSE(pending.average.has_value());

  auto missing = BuildResultsTable(**store, "dmeo");
  ASSERT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("did you mean 'demo'"), std::string::npos)
      << missing.status().message();
  EXPECT_NE(missing.status().message().find("known sweeps: demo, other"), std::string::npos);
}

TEST_F(ExportTest, ThreeFormatsExactly) {
  auto store = Store::Open(path_, {true, 1000, nullptr});
  ASSERT_TRUE(store.ok());
  auto table = BuildResultsTable(**store, "demo");
  ASSERT_TRUE(table.ok());

  EXPECT_EQ(FormatResultsTable(*table, TableFormat::kMarkdown),
            "| model | epochs | pretraining data | examples | exaFLOPs | device-hours | "
            "cifar10 fine-tune | imagenet 5-shot | average |\n"
            "|---|---:|---|---:|---:|---:|---:|---:|---:|\n"
            "| ViT-B/16 | 7 | jft-300m | 303M | 4262 | 100 | 99.12 | 76.50 | 87.81 |\n"
            "| R50x1 | 90 | imagenet_1k | 1.28M | 55.5 | 10.5 | 80.00 | - | - |\n"
            "| ViT-L/16 | 14 | jft-300m | 303M | 25.5 (planned) | - | pending | pending | "
            "pending |\n");

  EXPECT_EQ(FormatResultsTable(*table, TableFormat::kLatex),
            "\\begin{tabular}{lrlrrrrrr}\n"
            "\\toprule\n"
            "model & epochs & pretraining data & examples & exaFLOPs & device-hours & "
            "cifar10 fine-tune & imagenet 5-shot & average \\\\\n"
            "\\midrule\n"
            "ViT-B/16 & 7 & jft-300m & 303M & 4262 & 100 & 99.12 & 76.50 & 87.81 \\\\\n"
            "R50x1 & 90 & imagenet\\_1k & 1.28M & 55.5 & 10.5 & 80.00 & -- & -- \\\\\n"
            "ViT-L/16 & 14 & jft-300m & 303M & 25.5 (planned) & -- & pending & pending & "
            "pending \\\\\n"
            "\\bottomrule\n"
            "\\end{tabular}\n");

  EXPECT_EQ(FormatResultsTable(*table, TableFormat::kCsv),
            "job,model,epochs,pretraining data,examples,state,exaFLOPs,compute,device-hours,"
            "cifar10 fine-tune,imagenet 5-shot,average\n" +
                vit_.id +
                ",ViT-B/16,7,jft-300m,303000000,succeeded,4262,ledger,100,99.12,76.50,"
                "87.81\n" +
                resnet_.id + ",R50x1,90,imagenet_1k,1281167,succeeded,55.5,ledger,10.5,80.00,,\n" +
                pending_.id + ",ViT-L/16,14,jft-300m,303000000,pending,25.452,planned,,,,\n");
}

TEST(ResultsTableFormatTest, EscapesSpecialCharacters) {
  ResultsTable table;
  table.columns.push_back({Evaluation::kFineTune, "pets_37", std::nullopt});
  ResultsTableRow row;
  row.job_id = "j";
  row.model = "A|B";
  row.epochs = 0.5;
  row.dataset = "web \"x\", 100% & #1 {a}~^\\";
  row.examples = 512;
  row.state = JobState::kFailed;
  row.exaflops = 3.6e-6;
  row.transfer = {std::nullopt};
  table.rows.push_back(row);

  EXPECT_EQ(FormatResultsTable(table, TableFormat::kCsv),
            "job,model,epochs,pretraining data,examples,state,exaFLOPs,compute,device-hours,"
            "pets_37 fine-tune,average\n"
            "j,A|B,0.5,\"web \"\"x\"\", 100% & #1 {a}~^\\\",512,failed,3.6e-06,planned,,,\n");
  EXPECT_EQ(FormatResultsTable(table, TableFormat::kMarkdown),
            "| model | epochs | pretraining data | examples | exaFLOPs | device-hours | "
            "pets_37 fine-tune | average |\n"
            "|---|---:|---|---:|---:|---:|---:|---:|\n"
            "| A\\|B | 0.5 | web \"x\", 100% & #1 {a}~^\\ | 512 | 3.6e-06 (planned) | - | "
            "failed | failed |\n");
  std::string latex = FormatResultsTable(table, TableFormat::kLatex);
  EXPECT_NE(latex.find("pets\\_37 fine-tune"), std::string::npos) << latex;
  EXPECT_NE(latex.find("A|B & 0.5 & web \"x\", 100\\% \\& \\#1 \\{a\\}\\textasciitilde{}"
                       "\\textasciicircum{}\\textbackslash{} & 512"),
            std::string::npos)
      << latex;
}

TEST(ResultsTableFormatTest, ParsesFormatNames) {
  EXPECT_EQ(*ParseTableFormat("latex"), TableFormat::kLatex);
  auto typo = ParseTableFormat("markdwn");
  ASSERT_FALSE(typo.ok());
  EXPECT_NE(typo.status().message().find("did you mean 'markdown'"), std::string::npos);
}

TEST_F(ExportTest, CommandPrintsTableAndExitCodes) {
  ::testing::internal::CaptureStdout();
  int rc = cli::RunExport({"--db", path_, "--sweep=demo", "--format", "latex"});
  std::string out = ::testing::internal::GetCapturedStdout();
  EXPECT_EQ(rc, cli::kExitOk);
  EXPECT_EQ(out.rfind("\\begin{tabular}", 0), 0u) << out;
  EXPECT_NE(out.find("\\bottomrule"), std::string::npos);

  ::testing::internal::CaptureStderr();
  rc = cli::RunExport({"--db", path_, "--sweep", "dem", "--format", "csv"});
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(rc, cli::kExitNotFound);
  EXPECT_NE(err.find("did you mean 'demo'"), std::string::npos) << err;

  std::string missing = dir_.File("nope.db");
  ::testing::internal::CaptureStderr();
  rc = cli::RunExport({"--db", missing, "--sweep", "demo"});
  err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(rc, cli::kExitNotFound);
  EXPECT_NE(err.find("does not exist"), std::string::npos) << err;
  EXPECT_FALSE(std::filesystem::exists(missing));

  ::testing::internal::CaptureStderr();
  EXPECT_EQ(cli::RunExport({"--db", path_, "--sweep", "demo", "--format", "pdf"}), cli::kExitUsage);
  EXPECT_EQ(cli::RunExport({"--db", path_, "--swep", "demo"}), cli::kExitUsage);
  EXPECT_EQ(cli::RunExport({"--db", path_}), cli::kExitUsage);
  err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("did you mean '--sweep'"), std::string::npos) << err;
}

}  // namespace
}  // namespace vitscale::storage
