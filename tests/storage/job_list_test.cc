// The job list at scale (docs/storage.md, "Paging"): keyset pages agree with the whole ordered
// list for every filter and sort, in both directions; cursors are checked; counts come from
// maintained counters; and no listed query scans the jobs table or sorts its rows (the query
// plans are read with EXPLAIN QUERY PLAN).
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "storage/results_table.h"
#include "storage/store.h"
#include "tests/storage/test_util.h"

namespace vitscale::storage {
namespace {

using testing::MakeJob;
using testing::TempDir;

constexpr JobSort kSorts[] = {JobSort::kSubmitted, JobSort::kPriority, JobSort::kModel,
                              JobSort::kSubset,    JobSort::kState,    JobSort::kUpdated};

class JobListTest : public ::testing::Test {
 protected:
  void SetUp() override {
    OpenOptions options;
    options.clock = &clock_;
    auto store = Store::Open(dir_.File("vitscale.db"), options);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(store).value();
  }

  // 3 models x 4 subsets x 5 seeds in two sweeps that share the seed-0 jobs, with priorities,
  // states and update times that repeat, so that every order has ties to break.
  void Fill() {
    std::vector<JobRecord> big, small;
    int i = 0;
    for (const char* model : {"ViT-S/16", "R26s", "ViT-B/32"}) {
      for (int64_t subset : {1000, 3000, 10000, 30000}) {
        for (int seed = 0; seed < 5; ++seed, ++i) {
          JobRecord job = MakeJob(model, "fashion-mnist", subset, 2, seed);
          job.priority = i % 3;
          big.push_back(job);
          if (seed == 0) small.push_back(job);
        }
      }
    }
    ASSERT_TRUE(store_->AddSweep("big", "d", big).ok());
    ASSERT_TRUE(store_->AddSweep("small", "d", small).ok());
    const JobState kMoves[] = {JobState::kRunning, JobState::kSucceeded, JobState::kFailed,
                               JobState::kPending};
    for (size_t j = 0; j < big.size(); j += 2) {
      clock_.Advance(std::chrono::seconds(j % 4));
      ASSERT_TRUE(store_->SetJobState(big[j].id, kMoves[(j / 2) % 4]).ok());
    }
    jobs_ = big;
  }

  // Every filter the job table offers, alone, and some combinations.
  std::vector<JobFilter> Filters() {
    std::vector<JobFilter> filters;
    for (JobSort sort : kSorts) {
      for (bool descending : {false, true}) {
        JobFilter base;
        base.sort = sort;
        base.descending = descending;
        filters.push_back(base);
        JobFilter f = base;
        f.states = {JobState::kPending};
        filters.push_back(f);
        f.states = {JobState::kSucceeded, JobState::kFailed, JobState::kPending};
        filters.push_back(f);
        f = base;
        f.model = "R26s";
        filters.push_back(f);
        f = base;
        f.subset_size = 3000;
        filters.push_back(f);
        f = base;
        f.sweep = "big";
        filters.push_back(f);
        f.sweep = "small";
        f.states = {JobState::kPending, JobState::kRunning};
        filters.push_back(f);
        f = base;
        f.model = "ViT-S/16";
        f.states = {JobState::kPending};
        f.subset_size = 10000;
        filters.push_back(f);
      }
    }
    return filters;
  }

  static std::vector<std::string> Ids(const std::vector<JobRecord>& jobs) {
    std::vector<std::string> ids;
    for (const JobRecord& job : jobs) ids.push_back(job.id);
    return ids;
  }

  TempDir dir_;
  FakeClock clock_{TimePoint{}, 1700000000.0};
  std::unique_ptr<Store> store_;
  std::vector<JobRecord> jobs_;
};

TEST_F(JobListTest, PagesWalkedEitherWayAreTheWholeOrderedList) {
  ASSERT_NO_FATAL_FAILURE(Fill());
  for (const JobFilter& filter : Filters()) {
    auto whole = store_->ListJobs(filter);
    ASSERT_TRUE(whole.ok()) << whole.status().ToString();
    std::vector<std::string> expected = Ids(*whole);
    ASSERT_FALSE(expected.empty());
    std::string what = EncodeJobCursor(filter, {});  // names the filter in failure messages

    // Forwards from the first page by the pages' `after` positions.
    std::vector<std::string> forwards;
    JobPageRequest request{filter, PageFrom::kFirst, {}, 7};
    for (int pages = 0;; ++pages) {
      ASSERT_LT(pages, 100) << what;
      auto page = store_->ListJobPage(request);
      ASSERT_TRUE(page.ok()) << page.status().ToString();
      ASSERT_LE(page->jobs.size(), 7u);
      EXPECT_EQ(page->before.has_value(), pages > 0) << what;
      for (const std::string& id : Ids(page->jobs)) forwards.push_back(id);
      if (!page->after) break;
      request = {filter, PageFrom::kAfter, *page->after, 7};
    }
    EXPECT_EQ(forwards, expected) << what;

    // Backwards from the last page by the pages' `before` positions.
    std::vector<std::string> backwards;
    request = {filter, PageFrom::kLast, {}, 7};
    auto last = store_->ListJobPage(request);
    ASSERT_TRUE(last.ok());
    EXPECT_FALSE(last->after.has_value());
    size_t tail = std::min<size_t>(7, expected.size());
    EXPECT_EQ(Ids(last->jobs), std::vector<std::string>(expected.end() - tail, expected.end()));
    std::vector<std::vector<std::string>> pages = {Ids(last->jobs)};
    std::optional<JobPosition> before = last->before;
    while (before) {
      ASSERT_LT(pages.size(), 100u);
      auto page = store_->ListJobPage({filter, PageFrom::kBefore, *before, 7});
      ASSERT_TRUE(page.ok());
      ASSERT_EQ(page->jobs.size(), 7u) << "a previous page is always full: " << what;
      pages.push_back(Ids(page->jobs));
      before = page->before;
    }
    // Near the start a previous page is the first page, so it may overlap the one after it.
    std::vector<std::string> first = pages.back();
    EXPECT_EQ(first, std::vector<std::string>(expected.begin(),
                                              expected.begin() + std::min<size_t>(7, expected.size())))
        << what;
    for (auto it = pages.rbegin(); it != pages.rend(); ++it) {
      for (const std::string& id : *it) {
        if (std::find(backwards.begin(), backwards.end(), id) == backwards.end()) {
          backwards.push_back(id);
        }
      }
    }
    EXPECT_EQ(backwards, expected) << what;
  }
}

TEST_F(JobListTest, CountsComeFromCountersOrABoundAndFollowEveryChange) {
  ASSERT_NO_FATAL_FAILURE(Fill());
  for (const JobFilter& filter : Filters()) {
    auto whole = store_->ListJobs(filter);
    ASSERT_TRUE(whole.ok());
    auto count = store_->CountJobs(filter);
    ASSERT_TRUE(count.ok());
    EXPECT_TRUE(count->exact);
    EXPECT_EQ(count->jobs, static_cast<int64_t>(whole->size())) << EncodeJobCursor(filter, {});
    // A bound below the count: at least that many, and said so.
    if (filter.model || filter.subset_size) {
      auto bounded = store_->CountJobs(filter, 1);
      ASSERT_TRUE(bounded.ok());
      EXPECT_EQ(bounded->jobs, 1);
      EXPECT_EQ(bounded->exact, whole->size() <= 1);
    }
  }
  // The counters follow the scheduler's own operations and the ledger.
  JobFilter running;
  running.states = {JobState::kRunning};
  int64_t before = store_->CountJobs(running)->jobs;
  const JobRecord& job = jobs_[1];  // pending
  ASSERT_TRUE(store_->UpsertAgent({"agent", "h", 1, 0, 0}).ok());
  auto attempt = store_->StartAttempt(job.id, "agent", "h:1", std::string(64, 'a'));
  ASSERT_TRUE(attempt.ok()) << attempt.status().ToString();
  ASSERT_TRUE(store_->ApplyTransition(job.id, JobState::kPending, JobState::kRunning, 0, {}).ok());
  EXPECT_EQ(store_->CountJobs(running)->jobs, before + 1);
  running.sweep = "big";
  EXPECT_EQ(store_->CountJobs(running)->jobs, static_cast<int64_t>(store_->ListJobs(running)->size()));
  ASSERT_TRUE(store_->AddLedgerEntry({job.id, attempt->number, 5e12, 0, 10, "cpu", 1, 1}).ok());
  ASSERT_TRUE(store_->AddLedgerEntry({job.id, attempt->number, 7e12, 0, 10, "cpu", 1, 1}).ok());
  auto summaries = store_->SweepSummaries();
  ASSERT_TRUE(summaries.ok());
  EXPECT_DOUBLE_EQ((*summaries)[0].spent_train_flops, 7e12);  // replaced, not added
  EXPECT_EQ((*summaries)[0].jobs, static_cast<int64_t>(jobs_.size()));
  // An unknown sweep holds nothing: an empty page and a zero count, not an error.
  JobFilter unknown;
  unknown.sweep = "no-such-sweep";
  EXPECT_EQ(store_->CountJobs(unknown)->jobs, 0);
  EXPECT_TRUE(store_->ListJobPage({unknown, PageFrom::kFirst, {}, 10})->jobs.empty());
  unknown = {};
  unknown.model = "ViT-Nope";
  EXPECT_EQ(store_->CountJobs(unknown)->jobs, 0);
  EXPECT_TRUE(store_->ListJobPage({unknown, PageFrom::kLast, {}, 10})->jobs.empty());
}

TEST_F(JobListTest, CursorsRoundTripAndAreRefusedForOtherFiltersOrWhenForged) {
  ASSERT_NO_FATAL_FAILURE(Fill());
  for (const JobFilter& filter : Filters()) {
    auto page = store_->ListJobPage({filter, PageFrom::kFirst, {}, 3});
    ASSERT_TRUE(page.ok());
    if (!page->after) continue;
    std::string cursor = EncodeJobCursor(filter, *page->after);
    auto decoded = DecodeJobCursor(filter, cursor);
    ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
    EXPECT_TRUE(*decoded == *page->after);
    JobFilter other = filter;
    other.descending = !other.descending;
    EXPECT_EQ(DecodeJobCursor(other, cursor).status().code(), StatusCode::kInvalidArgument);
    other = filter;
    other.model = "ViT-B/32";
    EXPECT_EQ(DecodeJobCursor(other, cursor).status().code(), StatusCode::kInvalidArgument);
    // Any one character changed: refused (or, at worst, still a well-formed position).
    for (size_t i = 0; i < cursor.size(); ++i) {
      std::string edited = cursor;
      edited[i] = edited[i] == '0' ? 'g' : '0';
      auto result = DecodeJobCursor(filter, edited);
      if (result.ok()) {
        EXPECT_TRUE(store_->ListJobPage({filter, PageFrom::kAfter, *result, 3}).ok());
      } else {
        EXPECT_EQ(result.status().code(), StatusCode::kInvalidArgument);
      }
    }
  }
  JobFilter filter;
  for (const std::string& forged :
       {std::string(), std::string("zz"), std::string("31"), std::string(3000, 'a'),
        std::string("312e"), EncodeJobCursor(filter, {}).substr(1)}) {
    auto result = DecodeJobCursor(filter, forged);
    EXPECT_EQ(result.status().code(), StatusCode::kInvalidArgument) << forged;
    EXPECT_NE(result.status().message().find("first page"), std::string::npos);
  }
}

// The lines of a plan that belong to the statement itself, not to the correlated subqueries
// that read a row's attempt count and progress by key (each a SEARCH of its own).
std::vector<std::string> TopLevelPlan(const std::string& plan) {
  std::vector<std::string> lines;
  size_t skip_deeper_than = std::string::npos;
  size_t start = plan.find('\n') + 1;
  while (start < plan.size()) {
    size_t end = plan.find('\n', start);
    std::string line = plan.substr(start, end - start);
    start = end + 1;
    size_t depth = line.find_first_not_of(' ');
    if (depth > skip_deeper_than) continue;
    skip_deeper_than = std::string::npos;
    if (line.find("CORRELATED SCALAR SUBQUERY") != std::string::npos) {
      skip_deeper_than = depth;
      continue;
    }
    lines.push_back(line.substr(depth));
  }
  return lines;
}

// The query-plan check: every single filter with every sort, both directions, from either end
// and from a position, reads an index that already holds the order: a SEARCH on it, or, with no
// filter at all, a SCAN of it in order that stops after the page (LIMIT). Nothing sorts the
// jobs. A sweep listed in another order than its own sorts that sweep's rows (bounded by its
// size), never the table's.
TEST_F(JobListTest, NoListedQueryScansTheJobsTableOrSortsIt) {
  ASSERT_NO_FATAL_FAILURE(Fill());
  int checked = 0;
  for (const JobFilter& filter : Filters()) {
    int filters = (filter.sweep ? 1 : 0) + (filter.model ? 1 : 0) + (filter.subset_size ? 1 : 0) +
                  (filter.states.empty() ? 0 : 1);
    if (filters > 1) continue;  // combinations use one filter's index and check the others
    auto plans = store_->ExplainJobList(filter);
    ASSERT_TRUE(plans.ok()) << plans.status().ToString();
    for (const std::string& plan : *plans) {
      ++checked;
      bool count = plan.rfind("SELECT count(*)", 0) == 0;
      for (const std::string& line : TopLevelPlan(plan)) {
        bool scan = line.rfind("SCAN", 0) == 0;
        if (count && line.rfind("SCAN (subquery", 0) == 0) continue;  // its own LIMITed rows
        if (filters == 0 && scan) {
          EXPECT_NE(line.find("USING INDEX"), std::string::npos) << plan;
          continue;
        }
        EXPECT_FALSE(scan) << plan;
        if (filter.sweep && filter.sort != JobSort::kSubmitted) continue;
        EXPECT_EQ(line.find("TEMP B-TREE"), std::string::npos) << plan;
      }
      if (filter.sweep) {
        EXPECT_NE(plan.find("SEARCH sj"), std::string::npos) << plan;
      }
    }
  }
  EXPECT_GT(checked, 200);
}

// The export reads a sweep with two queries, each a walk of the sweep's primary key (in job
// id order) joined by key to its jobs, ledger and results; a page of the study's rows reads a
// range of its (sweep_id, position) index, its columns from the results' index, its counts from the
// sweep's index: no query scans a table or sorts rows.
TEST_F(JobListTest, TheSweepTableQueriesWalkTheSweepsIndexWithoutSorting) {
  ASSERT_NO_FATAL_FAILURE(Fill());
  auto plans = store_->ExplainSweepTable();
  ASSERT_TRUE(plans.ok()) << plans.status().ToString();
  ASSERT_EQ(plans->size(), 8u);
  for (const std::string& plan : *plans) {
    bool distinct = plan.find("SELECT DISTINCT") != std::string::npos;
    for (const std::string& line : TopLevelPlan(plan)) {
      if (line.rfind("SCALAR SUBQUERY", 0) == 0) continue;  // the sweep's count, below it
      // The distinct columns are a handful of (evaluation, dataset, shots), not rows.
      if (distinct && line == "USE TEMP B-TREE FOR DISTINCT") continue;
      EXPECT_EQ(line.rfind("SEARCH", 0), 0u) << plan;
      EXPECT_EQ(line.find("TEMP B-TREE"), std::string::npos) << plan;
    }
    EXPECT_TRUE(plan.find("SEARCH sj USING") != std::string::npos ||
                plan.find("SEARCH sweep_jobs USING") != std::string::npos)
        << plan;
  }
  auto table = store_->ReadSweepTable("big");
  ASSERT_TRUE(table.ok()) << table.status().ToString();
  ASSERT_EQ(table->jobs.size(), jobs_.size());
  for (size_t i = 0; i < jobs_.size(); ++i) EXPECT_EQ(table->jobs[i].id, jobs_[i].id);
}

// The study's rows page by cursor: forward and back from either end they are the whole table
// in the sweep's order, with its every column; cursors are checked.
TEST_F(JobListTest, TheStudyRowsPageByCursorThroughTheWholeTable) {
  ASSERT_NO_FATAL_FAILURE(Fill());
  // Results for some jobs, in two columns, one of them only on the last job.
  std::vector<ResultRecord> results;
  for (size_t i = 0; i < jobs_.size(); i += 7) {
    results.push_back({jobs_[i].id, Evaluation::kFewShot, "digits", 5, 0, "accuracy", 0.5});
  }
  results.push_back({jobs_.back().id, Evaluation::kFineTune, "cifar10", std::nullopt, 0,
                     "accuracy", 0.9});
  ASSERT_TRUE(store_->AddResults(results).ok());
  auto whole = BuildResultsTable(*store_, "big");
  ASSERT_TRUE(whole.ok()) << whole.status().ToString();
  ASSERT_EQ(whole->columns.size(), 2u);
  auto ids = [](const ResultsTable& t, std::vector<std::string>& out) {
    for (const ResultsTableRow& row : t.rows) out.push_back(row.job_id);
  };
  std::vector<std::string> expected;
  ids(*whole, expected);

  for (int64_t limit : {7, 60, 500}) {
    std::vector<std::string> forward, backward;
    ResultsPageRequest request;
    request.limit = limit;
    int64_t start = 0;
    for (int pages = 0;; ++pages) {
      ASSERT_LT(pages, 100);
      auto page = BuildResultsTablePage(*store_, "big", request);
      ASSERT_TRUE(page.ok()) << page.status().ToString();
      EXPECT_EQ(page->total, static_cast<int64_t>(jobs_.size()));
      EXPECT_EQ(page->jobs_before, start);
      EXPECT_EQ(page->prev.has_value(), start > 0);
      ASSERT_EQ(page->table.columns.size(), 2u);  // the sweep's, whatever the page holds
      for (size_t r = 0; r < page->table.rows.size(); ++r) {
        const ResultsTableRow& row = page->table.rows[r];
        const ResultsTableRow& same = whole->rows[start + r];
        EXPECT_EQ(row.transfer, same.transfer);
        EXPECT_EQ(row.average, same.average);
      }
      ids(page->table, forward);
      start += static_cast<int64_t>(page->table.rows.size());
      if (!page->next) break;
      request.from = PageFrom::kAfter;
      request.cursor = *page->next;
    }
    EXPECT_EQ(forward, expected) << "limit " << limit;
    request = {PageFrom::kLast, "", limit};
    for (int pages = 0;; ++pages) {
      ASSERT_LT(pages, 100);
      auto page = BuildResultsTablePage(*store_, "big", request);
      ASSERT_TRUE(page.ok()) << page.status().ToString();
      std::vector<std::string> these;
      ids(page->table, these);
      backward.insert(backward.begin(), these.begin(), these.end());
      EXPECT_EQ(page->jobs_before + static_cast<int64_t>(backward.size()),
                static_cast<int64_t>(jobs_.size()));
      if (!page->prev) break;
      EXPECT_TRUE(page->next.has_value() || backward.size() == these.size());
      request.from = PageFrom::kBefore;
      request.cursor = *page->prev;
    }
    EXPECT_EQ(backward, expected) << "limit " << limit;
  }

  // Cursors: not one given out, or one of another sweep, is refused naming the parameter.
  auto first = BuildResultsTablePage(*store_, "small", {PageFrom::kFirst, "", 2});
  ASSERT_TRUE(first.ok() && first->next);
  for (std::string forged : {std::string("zz"), std::string("73747564793"), std::string(""),
                             std::string(300, 'a'), *first->next}) {
    auto page = BuildResultsTablePage(*store_, "big", {PageFrom::kBefore, forged, 10});
    ASSERT_FALSE(page.ok()) << forged;
    EXPECT_EQ(page.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(page.status().message().find("'before'"), std::string::npos)
        << page.status().message();
  }
  auto unknown = BuildResultsTablePage(*store_, "nope", {});
  EXPECT_EQ(unknown.status().code(), StatusCode::kNotFound);
}

// Whether a sweep's fits are current is told without reading the sweep: the mark is probes of
// index ends (no scan), and what changed since is a range of the newer rows, each looked up in
// sweep_jobs by key (never a walk of the sweep's jobs).
TEST_F(JobListTest, TheSweepMarkQueriesReadNoSweepAndScanNothing) {
  ASSERT_NO_FATAL_FAILURE(Fill());
  auto plans = store_->ExplainSweepChanges();
  ASSERT_TRUE(plans.ok()) << plans.status().ToString();
  ASSERT_EQ(plans->size(), 4u);
  for (const std::string& plan : *plans) {
    for (size_t at = plan.find("SCAN"); at != std::string::npos; at = plan.find("SCAN", at + 1)) {
      EXPECT_EQ(plan.compare(at, 17, "SCAN CONSTANT ROW"), 0) << plan;  // the mark's one row
    }
    EXPECT_EQ(plan.find("TEMP B-TREE"), std::string::npos) << plan;
  }
  for (size_t i = 1; i < plans->size(); ++i) {
    // The newer rows first (a range of their index), then the sweep's link of each, by both
    // of its columns.
    const std::string& plan = (*plans)[i];
    size_t newer = plan.find("SEARCH ");
    size_t link = plan.find("SEARCH sj USING ");
    ASSERT_NE(link, std::string::npos) << plan;
    EXPECT_LT(newer, link) << plan;
    EXPECT_NE(plan.find(">?", newer), std::string::npos) << plan;
    std::string lookup = plan.substr(link, plan.find('\n', link) - link);
    EXPECT_NE(lookup.find("job_id=?"), std::string::npos) << plan;
    EXPECT_NE(lookup.find("sweep_id=?"), std::string::npos) << plan;
  }
}

}  // namespace
}  // namespace vitscale::storage
