#include "storage/results_table.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <tuple>

#include "common/names.h"

namespace vitscale::storage {
namespace {

// Fine-tune columns come first, as in the paper's Table 6.
int EvaluationOrder(Evaluation evaluation) { return evaluation == Evaluation::kFineTune ? 0 : 1; }

auto ColumnKey(const TransferColumn& c) {
  return std::make_tuple(EvaluationOrder(c.evaluation), c.dataset, c.shots.value_or(0));
}

// Three significant digits, whole numbers from 100 up: 4262, 55.2, 0.0312, 3.6e-06.
std::string FormatQuantity(double value) {
  if (value >= 100) return fmt::format("{:.0f}", value);
  return fmt::format("{:.3g}", value);
}

std::string FormatEpochs(double epochs) { return fmt::format("{:g}", epochs); }

// 303000000 -> "303M", 1281167 -> "1.28M", 60000 -> "60k", 512 -> "512".
std::string FormatExamples(int64_t n) {
  double value = static_cast<double>(n);
  if (value >= 999.5e3) return fmt::format("{:.3g}M", value / 1e6);
  if (value >= 1e3) return fmt::format("{:.3g}k", value / 1e3);
  return fmt::format("{}", n);
}

std::string FormatPercent(double value) { return fmt::format("{:.2f}", value); }

// The cells of one row as a human reads them (Markdown and LaTeX); `missing` marks a value a
// succeeded job lacks.
std::vector<std::string> HumanCells(const ResultsTableRow& row, const std::string& missing) {
  std::string absent = row.state == JobState::kSucceeded ? missing : JobStateName(row.state);
  std::vector<std::string> cells = {
      row.model,
      FormatEpochs(row.epochs),
      row.dataset,
      FormatExamples(row.examples),
      FormatQuantity(row.exaflops) + (row.compute_planned ? " (planned)" : ""),
      row.device_hours ? FormatQuantity(*row.device_hours) : missing,
  };
  for (const std::optional<double>& value : row.transfer) {
    cells.push_back(value ? FormatPercent(*value) : absent);
  }
  cells.push_back(row.average ? FormatPercent(*row.average) : absent);
  return cells;
}

std::vector<std::string> HumanHeader(const ResultsTable& table) {
  std::vector<std::string> header = {"model",    "epochs",   "pretraining data",
                                     "examples", "exaFLOPs", "device-hours"};
  for (const TransferColumn& column : table.columns) header.push_back(column.Title());
  header.push_back("average");
  return header;
}

// Columns 0 and 2 (model, data) are text; the rest are numbers, right-aligned.
bool IsTextColumn(size_t index) { return index == 0 || index == 2; }

std::string CsvField(const std::string& text) {
  if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
  std::string quoted = "\"";
  for (char c : text) {
    if (c == '"') quoted += '"';
    quoted += c;
  }
  return quoted + "\"";
}

std::string CsvLine(const std::vector<std::string>& fields) {
  std::string line;
  for (size_t i = 0; i < fields.size(); ++i) {
    if (i > 0) line += ',';
    line += CsvField(fields[i]);
  }
  return line + "\n";
}

std::string FormatCsv(const ResultsTable& table) {
  std::vector<std::string> header = {"job",   "model",    "epochs",  "pretraining data", "examples",
                                     "state", "exaFLOPs", "compute", "device-hours"};
  for (const TransferColumn& column : table.columns) header.push_back(column.Title());
  header.push_back("average");
  std::string out = CsvLine(header);
  auto optional_percent = [](const std::optional<double>& v) {
    return v ? FormatPercent(*v) : std::string();
  };
  for (const ResultsTableRow& row : table.rows) {
    std::vector<std::string> fields = {
        row.job_id,
        row.model,
        FormatEpochs(row.epochs),
        row.dataset,
        fmt::format("{}", row.examples),
        JobStateName(row.state),
        fmt::format("{:.6g}", row.exaflops),
        row.compute_planned ? "planned" : "ledger",
        row.device_hours ? fmt::format("{:.6g}", *row.device_hours) : "",
    };
    for (const std::optional<double>& value : row.transfer) {
      fields.push_back(optional_percent(value));
    }
    fields.push_back(optional_percent(row.average));
    out += CsvLine(fields);
  }
  return out;
}

std::string MarkdownCell(const std::string& text) {
  std::string cell;
  for (char c : text) {
    if (c == '|')
      cell += "\\|";
    else if (c == '\n' || c == '\r')
      cell += ' ';
    else
      cell += c;
  }
  return cell;
}

std::string MarkdownLine(const std::vector<std::string>& cells) {
  std::string line = "|";
  for (const std::string& cell : cells) line += " " + MarkdownCell(cell) + " |";
  return line + "\n";
}

std::string FormatMarkdown(const ResultsTable& table) {
  std::vector<std::string> header = HumanHeader(table);
  std::string out = MarkdownLine(header);
  out += "|";
  for (size_t i = 0; i < header.size(); ++i) out += IsTextColumn(i) ? "---|" : "---:|";
  out += "\n";
  for (const ResultsTableRow& row : table.rows) out += MarkdownLine(HumanCells(row, "-"));
  return out;
}

std::string LatexEscape(const std::string& text) {
  std::string escaped;
  for (char c : text) {
    switch (c) {
      case '\\':
        escaped += "\\textbackslash{}";
        break;
      case '~':
        escaped += "\\textasciitilde{}";
        break;
      case '^':
        escaped += "\\textasciicircum{}";
        break;
      case '&':
      case '%':
      case '$':
      case '#':
      case '_':
      case '{':
      case '}':
        escaped += '\\';
        escaped += c;
        break;
      case '\n':
      case '\r':
        escaped += ' ';
        break;
      default:
        escaped += c;
    }
  }
  return escaped;
}

std::string LatexLine(const std::vector<std::string>& cells) {
  std::string line;
  for (size_t i = 0; i < cells.size(); ++i) {
    if (i > 0) line += " & ";
    line += LatexEscape(cells[i]);
  }
  return line + " \\\\\n";
}

std::string FormatLatex(const ResultsTable& table) {
  std::vector<std::string> header = HumanHeader(table);
  std::string spec;
  for (size_t i = 0; i < header.size(); ++i) spec += IsTextColumn(i) ? 'l' : 'r';
  std::string out = "\\begin{tabular}{" + spec + "}\n\\toprule\n";
  out += LatexLine(header);
  out += "\\midrule\n";
  for (const ResultsTableRow& row : table.rows) out += LatexLine(HumanCells(row, "--"));
  out += "\\bottomrule\n\\end{tabular}\n";
  return out;
}

}  // namespace

std::string TransferColumn::Title() const {
  if (evaluation == Evaluation::kFineTune) return dataset + " fine-tune";
  if (evaluation == Evaluation::kFewShot)
    return fmt::format("{} {}-shot", dataset, shots.value_or(0));
  return dataset + " " + EvaluationName(evaluation);
}

namespace {

// The table of `read`'s rows under `columns` (any order; sorted here as documented).
ResultsTable MakeTable(const std::string& sweep_name, SweepTable& read,
                       std::vector<TransferColumn> columns) {
  ResultsTable table;
  table.sweep = sweep_name;
  table.columns = std::move(columns);
  std::sort(
      table.columns.begin(), table.columns.end(),
      [](const TransferColumn& a, const TransferColumn& b) { return ColumnKey(a) < ColumnKey(b); });
  using Key = decltype(ColumnKey(TransferColumn{}));
  std::map<Key, size_t> column_of;
  for (size_t i = 0; i < table.columns.size(); ++i) column_of[ColumnKey(table.columns[i])] = i;

  table.rows.reserve(read.jobs.size());
  for (SweepTableJob& job : read.jobs) {
    ResultsTableRow row;
    row.job_id = std::move(job.id);
    row.model = std::move(job.model);
    row.family = std::move(job.family);
    row.epochs = job.epochs;
    row.dataset = std::move(job.dataset);
    row.examples = job.subset_size;
    row.state = job.state;
    row.exaflops = job.planned_train_flops / 1e18;
    if (job.state == JobState::kSucceeded && job.ledger_entries > 0) {
      row.exaflops = job.train_flops / 1e18;
      row.compute_planned = false;
      row.device_hours = job.device_seconds / 3600.0;
    }
    row.transfer.resize(table.columns.size());
    table.rows.push_back(std::move(row));
  }
  for (const SweepTableResult& r : read.results) {
    auto column = column_of.find(ColumnKey(TransferColumn{r.evaluation, r.dataset, r.shots}));
    if (column != column_of.end()) table.rows[r.row].transfer[column->second] = 100.0 * r.mean;
  }
  for (ResultsTableRow& row : table.rows) {
    if (row.transfer.empty()) continue;
    double sum = 0;
    bool complete = true;
    for (const std::optional<double>& value : row.transfer) {
      complete &= value.has_value();
      sum += value.value_or(0);
    }
    if (complete) row.average = sum / static_cast<double>(row.transfer.size());
  }
  return table;
}

}  // namespace

Expected<ResultsTable> BuildResultsTable(Store& store, const std::string& sweep_name) {
  ASSIGN_OR_RETURN(SweepTable read, store.ReadSweepTable(sweep_name));
  // Columns: every transfer accuracy found in the sweep.
  using Key = decltype(ColumnKey(TransferColumn{}));
  std::map<Key, size_t> seen;
  std::vector<TransferColumn> columns;
  for (const SweepTableResult& r : read.results) {
    TransferColumn column{r.evaluation, r.dataset, r.shots};
    if (seen.emplace(ColumnKey(column), 0).second) columns.push_back(column);
  }
  return MakeTable(sweep_name, read, std::move(columns));
}

Expected<ResultsTablePage> BuildResultsTablePage(Store& store, const std::string& sweep_name,
                                                 const ResultsPageRequest& request) {
  SweepTablePageRequest wanted;
  wanted.from = request.from;
  wanted.limit = request.limit;
  bool from_cursor = request.from == PageFrom::kAfter || request.from == PageFrom::kBefore;
  const char* name = request.from == PageFrom::kAfter ? "after" : "before";
  auto refuse = [&](const char* why) {
    return InvalidArgument(fmt::format(
        "the cursor in '{}' {}; use the next or prev cursor of a page of this study's rows, or "
        "ask for page=first",
        name, why));
  };
  std::optional<std::pair<int64_t, int64_t>> cursor;
  if (from_cursor) {
    cursor = DecodeStudyCursor(request.cursor);
    if (!cursor) return refuse("is not one this study gave out");
    wanted.position = cursor->second;
  }
  ASSIGN_OR_RETURN(SweepTablePage read, store.ReadSweepTablePage(sweep_name, wanted));
  if (cursor && read.sweep_id != cursor->first) return refuse("was made for another sweep");
  std::vector<TransferColumn> columns;
  for (SweepTableColumn& c : read.columns) {
    columns.push_back({c.evaluation, std::move(c.dataset), c.shots});
  }
  ResultsTablePage page;
  page.jobs_before = read.jobs_before;
  page.total = read.total;
  if (!read.table.jobs.empty()) {
    if (read.more_before) page.prev = EncodeStudyCursor(read.sweep_id, read.table.jobs.front().position);
    if (read.more_after) page.next = EncodeStudyCursor(read.sweep_id, read.table.jobs.back().position);
  }
  page.table = MakeTable(sweep_name, read.table, std::move(columns));
  return page;
}

Expected<TableFormat> ParseTableFormat(std::string_view name) {
  if (name == "csv") return TableFormat::kCsv;
  if (name == "markdown") return TableFormat::kMarkdown;
  if (name == "latex") return TableFormat::kLatex;
  return InvalidArgument(fmt::format("unknown format '{}'{}; use csv, markdown or latex", name,
                                     DidYouMean(name, {"csv", "markdown", "latex"})));
}

std::string FormatTable(const std::vector<std::string>& header,
                        const std::vector<std::vector<std::string>>& rows,
                        const std::vector<bool>& text_columns, TableFormat format) {
  auto is_text = [&](size_t i) { return i < text_columns.size() && text_columns[i]; };
  std::string out;
  switch (format) {
    case TableFormat::kCsv:
      out = CsvLine(header);
      for (const auto& row : rows) out += CsvLine(row);
      break;
    case TableFormat::kMarkdown:
      out = MarkdownLine(header) + "|";
      for (size_t i = 0; i < header.size(); ++i) out += is_text(i) ? "---|" : "---:|";
      out += "\n";
      for (const auto& row : rows) out += MarkdownLine(row);
      break;
    case TableFormat::kLatex: {
      std::string spec;
      for (size_t i = 0; i < header.size(); ++i) spec += is_text(i) ? 'l' : 'r';
      out = "\\begin{tabular}{" + spec + "}\n\\toprule\n" + LatexLine(header) + "\\midrule\n";
      for (const auto& row : rows) out += LatexLine(row);
      out += "\\bottomrule\n\\end{tabular}\n";
      break;
    }
  }
  return out;
}

std::string FormatResultsTable(const ResultsTable& table, TableFormat format) {
  switch (format) {
    case TableFormat::kCsv:
      return FormatCsv(table);
    case TableFormat::kMarkdown:
      return FormatMarkdown(table);
    case TableFormat::kLatex:
      return FormatLatex(table);
  }
  return "";
}

}  // namespace vitscale::storage
