// The paper's Table 6 for one sweep: a row per job (model, epochs, pretraining data and size,
// compute, device time, transfer accuracies, their average), built from the Store and printed as
// CSV, Markdown or LaTeX. `vitscale export` prints it; the coordinator serves the same table.
//
// Rules (docs/storage.md, "The result table"):
// - Rows follow the sweep's order. Columns are every (evaluation, dataset, shots) of a few-shot
//   or fine-tune result with metric "accuracy" found in the sweep, fine-tune first, then by
//   dataset and shots; values are percent, averaged over seeds.
// - exaFLOPs are the ledger's training FLOPs once a job has succeeded; before that, the planned
//   figure, marked "(planned)" (CSV: the `compute` column says `ledger` or `planned`).
// - The average is over all transfer columns and is shown only when the row has all of them.
// - A job without a value shows its state ("pending", "running", "failed", ...) in Markdown and
//   LaTeX, and "-" once it succeeded without that result; CSV leaves such cells empty.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "storage/records.h"
#include "storage/store.h"

namespace vitscale::storage {

struct TransferColumn {
  Evaluation evaluation = Evaluation::kFewShot;
  std::string dataset;
  std::optional<int> shots;
  std::string Title() const;  // "cifar10 fine-tune", "imagenet 5-shot"
};

struct ResultsTableRow {
  std::string job_id;
  std::string model;
  std::string family;  // ViT, ResNet or hybrid
  double epochs = 0;
  std::string dataset;
  int64_t examples = 0;
  JobState state = JobState::kPending;
  double exaflops = 0;
  bool compute_planned = true;                  // exaflops is the plan, not the ledger
  std::optional<double> device_hours;           // from the ledger, once the job succeeded
  std::vector<std::optional<double>> transfer;  // percent, one per ResultsTable::columns
  std::optional<double> average;                // percent
};

struct ResultsTable {
  std::string sweep;
  std::vector<TransferColumn> columns;
  std::vector<ResultsTableRow> rows;
};

// kNotFound (with the known sweep names) when the sweep does not exist.
Expected<ResultsTable> BuildResultsTable(Store& store, const std::string& sweep_name);

// A page of the table in the sweep's order (the study view's rows, docs/api.md), by keyset:
// from one end, or after/before the row a cursor names. Cursors are opaque (hex) and checked:
// one this table did not give out, or one of another sweep, is kInvalidArgument naming the
// parameter ("after" or "before").
struct ResultsPageRequest {
  PageFrom from = PageFrom::kFirst;
  std::string cursor;  // for kAfter and kBefore
  int64_t limit = 100;
};

struct ResultsTablePage {
  ResultsTable table;       // every transfer column of the sweep, the page's rows
  int64_t jobs_before = 0;  // the sweep's rows before the page's first
  int64_t total = 0;        // the sweep's rows
  std::optional<std::string> next, prev;  // cursors of the pages after and before, if any
};

Expected<ResultsTablePage> BuildResultsTablePage(Store& store, const std::string& sweep_name,
                                                 const ResultsPageRequest& request);

enum class TableFormat { kCsv, kMarkdown, kLatex };
// "csv", "markdown" or "latex"; the error suggests the nearest.
Expected<TableFormat> ParseTableFormat(std::string_view name);

// The whole table, ending in a newline. CSV quotes per RFC 4180; LaTeX is a booktabs tabular.
std::string FormatResultsTable(const ResultsTable& table, TableFormat format);

// Any other table in the same three formats and with the same quoting: `text_columns` are
// left-aligned (Markdown, LaTeX), the rest right-aligned. Used by the scaling-law fits' export.
std::string FormatTable(const std::vector<std::string>& header,
                        const std::vector<std::vector<std::string>>& rows,
                        const std::vector<bool>& text_columns, TableFormat format);

}  // namespace vitscale::storage
