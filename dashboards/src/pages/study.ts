// The study of one sweep, drawn from /study/{sweep}: transfer accuracy against pretraining
// compute with one series per family (the paper's Fig. 5), accuracy against pretraining subset
// size with one line per model (Fig. 4), and the Table 6-shaped table with its CSV, Markdown
// and LaTeX exports. Seeds of one model, epochs and subset size are one point on both plots
// (their mean, which the coordinator computes: the page never holds every row), and the table
// shows a page of rows at a time, paged by the coordinator's cursors (/study/{sweep}/rows), so
// that a sweep of 10,000 jobs draws as fast as a small one. Over both plots go the coordinator's scaling-law fits (/study/{sweep}/fits:
// the curve, its bootstrap band and a decade of extrapolation, dashed), listed in a table with
// their parameters; below, the sweep's real schedule beside its simulation. Result, job and
// sweep events refetch the study at most twice a second.

import { enc, getJson, getText, type FitGroup, type Study, type StudyFits, type StudyMean, type StudyPoint, type StudyRows, type Sweep } from '../api';
import { createChart, kBaseOption, kFamilyColors, kPalette, powerOfTen, type ChartCard } from '../charts';
import {
  clear, deviceTimeUnit, download, errorBox, flopsUnit, fmtCount, fmtInUnit, fmtNumber, fmtPercent, h, stateBadge,
  throttle,
  type Unit,
} from '../dom';
import { errorText, markReady, showLoadError, type Page, type PageContext } from '../page';
import { mountTimeline } from '../timeline';

const kFamilies = ['ResNet', 'ViT', 'hybrid'];
const kFamilySymbols: Record<string, string> = { ResNet: 'rect', ViT: 'circle', hybrid: 'triangle' };
const kFamilyLines: Record<string, string> = { ResNet: 'dashed', ViT: 'solid', hybrid: 'dotted' };
const kAverage = 'average';

function meanOf(point: StudyPoint, column: string): StudyMean | null {
  return point.values[column] ?? null;
}

function familyRank(family: string): number {
  const i = kFamilies.indexOf(family);
  return i < 0 ? kFamilies.length : i;
}

function chooseSweep(root: HTMLElement): Page {
  let disposed = false;
  root.append(h('div', { class: 'page-head' }, h('h2', null, 'Study')));
  const list = h('div', { class: 'card' }, 'loading…');
  root.append(list);
  void getJson<{ sweeps: Sweep[] }>('sweeps').then((answer) => {
    if (disposed) return;
    clear(list);
    if (answer.sweeps.length === 0) {
      list.append(h('p', { class: 'empty' }, 'No sweeps yet: the study plots appear once a sweep is submitted.'));
    } else {
      const newest = [...answer.sweeps].sort((a, b) => b.created_at.localeCompare(a.created_at))[0];
      location.replace(`#/study/${enc(newest.name)}`);
      return;
    }
    markReady();
  }).catch((e) => {
    if (disposed) return;
    clear(list);
    list.append(errorBox(errorText(e)));
    markReady();
  });
  return { dispose: () => { disposed = true; } };
}

export function mountStudy(root: HTMLElement, context: PageContext, sweep?: string): Page {
  if (!sweep) return chooseSweep(root);
  let disposed = false;
  let study: Study | null = null;
  let fits: StudyFits | null = null;
  let column = context.query.get('column') ?? kAverage;
  // Fig. 5's x axis: analytic FLOPs (the paper's), or measured device time where the ledger has it.
  let axis: 'flops' | 'device' = context.query.get('x') === 'device' ? 'device' : 'flops';
  const jobsShown = new Set<string>();  // the table page's jobs

  const errorSlot = h('div');
  const columnSelect = h('select', { id: 'study-column', 'aria-label': 'accuracy column', onchange: (e: Event) => {
    column = (e.target as HTMLSelectElement).value;
    updateUrl();
    void loadFits();
  } });
  const updateUrl = () => {
    const query = new URLSearchParams();
    if (column !== kAverage) query.set('column', column);
    if (axis === 'device') query.set('x', 'device');
    const text = query.toString();
    history.replaceState(null, '', `#/study/${enc(sweep)}${text ? `?${text}` : ''}`);
  };
  const axisSelect = h('select', { id: 'study-axis', 'aria-label': 'compute axis' },
    h('option', { value: 'flops' }, 'pretraining FLOPs'), h('option', { value: 'device' }, 'device time'));
  axisSelect.value = axis;
  axisSelect.addEventListener('change', () => {
    axis = axisSelect.value === 'device' ? 'device' : 'flops';
    updateUrl();
    render();
  });
  const countLine = h('p', { class: 'note', id: 'study-count' });
  const chartRow = h('div', { class: 'chart-row two' });
  const tableBox = h('section', { class: 'card' });
  const fitsBox = h('section', { class: 'card', id: 'fits-card' });
  const timelineBox = h('div');
  const exportMessage = h('span', { class: 'small-text', id: 'export-message' });
  root.append(
    h('div', { class: 'page-head' },
      h('h2', null, 'Study: ', sweep),
      h('label', { class: 'inline' }, 'Accuracy: ', columnSelect),
      h('label', { class: 'inline' }, 'Compute: ', axisSelect),
      h('a', { href: `#/jobs?sweep=${enc(sweep)}`, class: 'small-text' }, 'jobs of this sweep')),
    countLine, errorSlot, chartRow, fitsBox, tableBox, timelineBox,
  );
  const fig5 = createChart(chartRow, 'study-compute', 'Transfer accuracy vs pretraining compute', `${sweep}-accuracy-vs-compute`, {
    height: 380, note: 'One point per model, epochs and pretraining subset (the mean of its finished seeds), by model family (paper Fig. 5). ' +
      'Compute is the ledger\'s pretraining FLOPs, ' +
      'or its device time, in the unit that suits the study\'s scale.',
  });
  const fig4 = createChart(chartRow, 'study-data', 'Accuracy vs pretraining data size', `${sweep}-accuracy-vs-subset`, {
    height: 380, note: 'One line per model over the nested pretraining subsets (paper Fig. 4).',
  });
  const charts: ChartCard[] = [fig5, fig4];
  const timeline = mountTimeline(timelineBox, sweep);
  let timelineLoaded = 0;

  const accuracyAxis = (name: string) => ({
    type: 'value', name, nameLocation: 'middle', nameGap: 44, scale: true,
    // Whole percents repeat when the axis spans a few points; one decimal keeps ticks distinct.
    axisLabel: { formatter: (v: number) => `${Number.isInteger(v) ? v.toFixed(0) : v.toFixed(1)}%` },
  });

  // A fitted group drawn as accuracy (%), x in the axis' unit (exaFLOPs / per): the curve over the data, dashed beyond it, and the
  // bootstrap band as an area between its bounds. No symbols, so only jobs are points.
  const fitSeries = (g: FitGroup, name: string, color: string, per: number) => {
    const fit = g.fit;
    if (fit.status !== 'ok' || !fit.curve) return [];
    const acc = (e: number) => (1 - e) * 100;
    const edge = fit.extrapolated_from!;
    const inside = fit.curve.filter((p) => p.x <= edge * (1 + 1e-9)).map((p) => [p.x / per, acc(p.error)]);
    const beyond = fit.curve.filter((p) => p.x >= edge * (1 - 1e-9)).map((p) => [p.x / per, acc(p.error)]);
    const line = { type: 'line', showSymbol: false, color, silent: true, z: 1 };
    const series: object[] = [
      { ...line, name: `${name} fit`, data: inside, lineStyle: { width: 2, color } },
      { ...line, name: `${name} extrapolated`, data: beyond, lineStyle: { width: 2, type: 'dashed', color } },
    ];
    const band = fit.curve.filter((p) => p.low !== null && p.high !== null);
    if (band.length) {
      const stack = `band-${name}`;
      series.push(
        { ...line, name: `${name} band low`, stack, data: band.map((p) => [p.x / per, acc(p.high!)]), lineStyle: { opacity: 0 } },
        { ...line, name: `${name} band`, stack, data: band.map((p) => [p.x / per, (p.high! - p.low!) * 100]),
          lineStyle: { opacity: 0 }, areaStyle: { color, opacity: 0.12 } },
      );
    }
    return series;
  };

  // Fig. 5's points: one per model, epochs and subset size with a value and compute on the
  // axis, at the coordinator's means over its seeds, as the paper draws a model at a data size.
  interface Fig5Point { family: string; model: string; epochs: number; subset: number; x: number; y: number; runs: number }
  const fig5Points = (points: StudyPoint[]): Fig5Point[] => points.flatMap((p) => {
    const mean = meanOf(p, column)?.[axis === 'device' ? 'device_hours' : 'exaflops'];
    return mean ? [{ family: p.family, model: p.model, epochs: p.epochs, subset: p.subset_size, x: mean.x, y: mean.accuracy, runs: mean.runs }] : [];
  });
  const renderFig5 = (all: StudyPoint[]) => {
    const points = fig5Points(all);
    fig5.setEmpty(points.length ? null : axis === 'device'
      ? 'No finished job has both results and device time yet.'
      : 'No finished job has results yet: points appear as jobs finish.');
    const largest = points.reduce((m, p) => Math.max(m, p.x), 0);
    const unit: Unit = axis === 'device' ? deviceTimeUnit(largest) : flopsUnit(largest);
    const axisName = axis === 'device' ? `Pretraining device time (${unit.name})` : `Pretraining compute (${unit.name})`;
    const families = [...new Set(points.map((p) => p.family))].sort((a, b) => familyRank(a) - familyRank(b));
    const familyName = (family: string) => family === 'hybrid' ? 'Hybrid' : family === 'ResNet' ? 'ResNet (BiT)' : 'Transformer (ViT)';
    // The fits are of accuracy against FLOPs: drawn on the FLOPs axis only.
    const compute = axis === 'device' ? [] : fits?.compute ?? [];
    const fitted = compute.flatMap((g) => fitSeries(g, familyName(g.family), kFamilyColors[g.family] ?? '#9467bd', unit.per));
    // Each family's Pareto frontier (what the fit saw), as a thin step line through its points.
    const frontiers = compute.filter((g) => g.fitted.length > 1).map((g) => ({
      type: 'line', name: `${familyName(g.family)} frontier`, showSymbol: false, silent: true, step: 'end', z: 1,
      color: kFamilyColors[g.family] ?? '#9467bd', lineStyle: { width: 1, opacity: 0.5 },
      data: g.fitted.map((i) => [g.points[i].exaflops! / unit.per, (1 - g.points[i].error) * 100]),
    }));
    fig5.chart.setOption({
      ...kBaseOption,
      grid: { left: 64, right: 24, top: 40, bottom: 56 },
      legend: { top: 4, left: 'center', data: families.map(familyName) },
      tooltip: {
        trigger: 'item',
        formatter: (p: { data: { point: Fig5Point; value: [number, number] } }) =>
          `<b>${escapeHtml(p.data.point.model)}</b> · ${fmtCount(p.data.point.subset)} images · ${p.data.point.epochs} ep<br>` +
          `${p.data.value[0].toPrecision(3)} ${unit.name} · ${p.data.value[1].toFixed(1)}%` +
          (p.data.point.runs > 1 ? ` (mean of ${p.data.point.runs} runs)` : ''),
      },
      xAxis: {
        type: 'log', logBase: 10, name: axisName, nameLocation: 'middle', nameGap: 30,
        axisLabel: { formatter: powerOfTen }, splitLine: { show: true, lineStyle: { color: '#eee' } },
      },
      yAxis: accuracyAxis(column === kAverage ? 'Average transfer accuracy' : `${column} accuracy`),
      series: [...families.map((family) => ({
        type: 'scatter',
        name: familyName(family),
        symbol: kFamilySymbols[family] ?? 'diamond',
        symbolSize: 11,
        color: kFamilyColors[family] ?? '#9467bd',
        itemStyle: { borderColor: '#fff', borderWidth: 1 },
        data: points.filter((p) => p.family === family)
          .map((p) => ({ value: [p.x / unit.per, p.y * 100], point: p })),
      })), ...frontiers, ...fitted],
    }, { replaceMerge: ['series'] });
  };

  const renderFig4 = (all: StudyPoint[]) => {
    const done = all.filter((p) => meanOf(p, column) !== null);
    fig4.setEmpty(done.length ? null : 'No finished job has results yet.');
    const epochsByModel = new Map<string, Set<number>>();
    for (const p of done) {
      if (!epochsByModel.has(p.model)) epochsByModel.set(p.model, new Set());
      epochsByModel.get(p.model)!.add(p.epochs);
    }
    const groups = new Map<string, StudyPoint[]>();
    for (const p of done) {
      const key = epochsByModel.get(p.model)!.size > 1 ? `${p.model} (${p.epochs} ep)` : p.model;
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key)!.push(p);
    }
    const keys = [...groups.keys()].sort((a, b) => {
      const fa = familyRank(groups.get(a)![0].family);
      const fb = familyRank(groups.get(b)![0].family);
      return fa - fb || a.localeCompare(b);
    });
    const groupFits = new Map((fits?.data_size ?? []).map((g) => [g.group, g]));
    const fitted = keys.flatMap((key, i) => {
      const g = groupFits.get(key);
      return g ? fitSeries(g, key, kPalette[i % kPalette.length], 1) : [];
    });
    fig4.chart.setOption({
      ...kBaseOption,
      grid: { left: 64, right: 24, top: 40 + 22 * Math.max(0, Math.ceil(keys.length / 5) - 1), bottom: 56 },
      legend: { top: 4, left: 'center', type: 'plain', data: keys },
      tooltip: {
        trigger: 'item',
        formatter: (p: { seriesName: string; value: [number, number, number] }) =>
          `<b>${escapeHtml(p.seriesName)}</b><br>${fmtCount(p.value[0])} images · ${p.value[1].toFixed(1)}%` +
          (p.value[2] > 1 ? ` (mean of ${p.value[2]} runs)` : ''),
      },
      xAxis: {
        type: 'log', logBase: 10, name: 'Pretraining examples', nameLocation: 'middle', nameGap: 30,
        axisLabel: { formatter: (v: number) => fmtCount(v) }, splitLine: { show: true, lineStyle: { color: '#eee' } },
      },
      yAxis: accuracyAxis(column === kAverage ? 'Average transfer accuracy' : `${column} accuracy`),
      series: [...keys.map((key, i) => {
        const list = groups.get(key)!;
        const family = list[0].family;
        // Seeds of one model and size are one point: their mean, as the paper reports (and
        // one size at several epochs of a model drawn as one line is their runs' mean).
        const bySize = new Map<number, { sum: number; runs: number }>();
        for (const p of list) {
          const mean = meanOf(p, column)!;
          const at = bySize.get(p.subset_size) ?? { sum: 0, runs: 0 };
          at.sum += mean.accuracy * 100 * mean.runs;
          at.runs += mean.runs;
          bySize.set(p.subset_size, at);
        }
        const data = [...bySize.entries()].sort((a, b) => a[0] - b[0])
          .map(([size, at]) => [size, at.sum / at.runs, at.runs]);
        return {
          type: 'line', name: key, color: kPalette[i % kPalette.length],
          symbol: kFamilySymbols[family] ?? 'circle', symbolSize: 8,
          // With a fitted curve the points stand alone; without, a line joins them.
          lineStyle: { type: kFamilyLines[family] ?? 'solid', width: groupFits.get(key)?.fit.status === 'ok' ? 0 : 2 },
          data,
        };
      }), ...fitted],
    }, { replaceMerge: ['series'] });
  };

  const exportButton = (format: string, label: string, extension: string) =>
    h('button', { class: 'small', 'data-export': format, onclick: async () => {
      exportMessage.textContent = '';
      try {
        const text = await getText('export', { sweep, format });
        download(`${sweep}-table.${extension}`, new Blob([text], { type: 'text/plain' }));
      } catch (e) {
        exportMessage.textContent = errorText(e);
        exportMessage.classList.add('failed');
      }
    } }, label);

  const fitsMessage = h('span', { class: 'small-text', id: 'fits-message' });
  const fitsExport = (format: string, label: string, extension: string) =>
    h('button', { class: 'small', 'data-fits-export': format, onclick: async () => {
      fitsMessage.textContent = '';
      try {
        const text = await getText('export', { sweep, format, fits: '1', column });
        download(`${sweep}-fits.${extension}`, new Blob([text], { type: 'text/plain' }));
      } catch (e) {
        fitsMessage.textContent = errorText(e);
        fitsMessage.classList.add('failed');
      }
    } }, label);

  const renderFits = (f: StudyFits | null, failure?: string) => {
    clear(fitsBox);
    fitsBox.append(h('header', null, h('h3', null, 'Scaling-law fits: error = a·(x + d)^(−b) + c'), h('span', { class: 'spacer' }),
      fitsMessage, fitsExport('csv', 'CSV', 'csv'), fitsExport('markdown', 'Markdown', 'md'), fitsExport('latex', 'LaTeX', 'tex')));
    if (failure) {
      fitsBox.append(errorBox(failure));
      return;
    }
    if (!f) {
      fitsBox.append(h('p', { class: 'note' }, 'fitting…'));
      return;
    }
    fitsBox.append(h('p', { class: 'note' },
      'Error is 1 − accuracy. Per family over its Pareto frontier against exaFLOPs (x), and per model against pretraining examples; ' +
      'the band is the 2.5–97.5% range of fits to the jobs drawn with replacement; the dashed part extrapolates a decade.'));
    const rows = [
      ...f.compute.map((g) => ({ figure: 'compute', g })),
      ...f.data_size.map((g) => ({ figure: 'data', g })),
    ];
    if (rows.length === 0) {
      fitsBox.append(h('p', { class: 'empty', id: 'fits-empty' }, 'No finished job has results yet: fits appear as jobs finish.'));
      return;
    }
    const num = (v: number | undefined) => fmtNumber(v, 3);
    fitsBox.append(h('div', { class: 'table-wrap' }, h('table', { class: 'grid', id: 'fits-table' },
      h('thead', null, h('tr', null, ['Against', 'Group', 'Points fitted', 'a', 'b', 'c', 'd', 'RMSE', 'Accuracy at 10× x (95% band)', 'Note']
        .map((t) => h('th', null, t)))),
      h('tbody', null, rows.map(({ figure, g }) => {
        const fit = g.fit;
        const last = fit.curve?.[fit.curve.length - 1];
        const at10 = last ? `${((1 - last.error) * 100).toFixed(1)}%` +
          (last.low !== null && last.high !== null ? ` (${((1 - last.high) * 100).toFixed(1)}–${((1 - last.low) * 100).toFixed(1)}%)` : '') : '–';
        return h('tr', { 'data-fit-figure': figure, 'data-fit-group': g.group, 'data-fit-status': fit.status },
          h('td', null, figure === 'compute' ? 'exaFLOPs' : 'examples'),
          h('td', null, g.group),
          h('td', { class: 'num' }, String(fit.points)),
          ['a', 'b', 'c', 'd'].map((k) => h('td', { class: 'num' }, num(fit.params?.[k as 'a']))),
          h('td', { class: 'num' }, num(fit.rmse)),
          h('td', { class: 'num' }, at10),
          h('td', { class: fit.status === 'ok' ? 'small-text' : 'small-text failed' },
            fit.status === 'ok' ? fit.message : `no curve drawn: ${fit.message}`));
      })))));
  };

  // The table: a page of rows in the sweep's order (Table 6's, as the downloads), from the
  // coordinator's cursors; `pageQuery` is the page shown, asked for again on a refetch.
  let rowsPage: StudyRows | null = null;
  let pageQuery: Record<string, string> = {};
  const tableBody = h('tbody');
  const tablePager = h('div', { class: 'pager' });
  let tableColumns: string[] = [];
  let flopsColumn = flopsUnit(0);
  let deviceColumn = deviceTimeUnit(0);
  const goTo = (query: Record<string, string>) => async () => {
    try {
      const answer = await getJson<StudyRows>(`study/${enc(sweep)}/rows`, query);
      if (disposed) return;
      pageQuery = query;
      rowsPage = answer;
      drawTablePage();
    } catch (e) {
      if (disposed) return;
      errorSlot.replaceChildren(errorBox(errorText(e)));
    }
  };
  const drawTablePage = () => {
    const page = rowsPage!;
    const shown = page.rows;
    jobsShown.clear();
    for (const r of shown) jobsShown.add(r.job);
    tableBody.replaceChildren(...shown.map((r) => h('tr', { 'data-job': r.job },
      h('td', null, h('a', { href: `#/jobs/${r.job}` }, r.model)),
      h('td', { class: 'num' }, String(r.epochs)),
      h('td', null, `${r.dataset} (${fmtCount(r.subset_size)})`),
      tableColumns.map((c) => h('td', { class: 'num' }, fmtPercent(r.results[c]))),
      h('td', { class: 'num strong' }, fmtPercent(r.average)),
      h('td', { class: `num${r.planned ? ' planned' : ''}`, title: r.planned ? 'planned: the job has not run' : 'spent' },
        fmtInUnit(r.exaflops, flopsColumn), r.planned ? ' (planned)' : ''),
      h('td', { class: 'num' }, fmtInUnit(r.device_hours, deviceColumn)),
      h('td', null, stateBadge(r.state)))));
    const range = shown.length === 0 ? 'no rows'
      : `${(page.start + 1).toLocaleString('en-US')}–${(page.start + shown.length).toLocaleString('en-US')} of ${page.total.toLocaleString('en-US')}`;
    tablePager.hidden = !page.prev && !page.next;
    tablePager.replaceChildren(
      h('button', { class: 'small', 'data-study-page': 'first', disabled: !page.prev, onclick: goTo({}) }, '« First'),
      h('button', { class: 'small', 'data-study-page': 'prev', disabled: !page.prev, onclick: goTo({ before: page.prev ?? '' }) }, '‹ Prev'),
      h('span', { class: 'range', id: 'study-range' }, range),
      h('button', { class: 'small', 'data-study-page': 'next', disabled: !page.next, onclick: goTo({ after: page.next ?? '' }) }, 'Next ›'),
      h('button', { class: 'small', 'data-study-page': 'last', disabled: !page.next, onclick: goTo({ page: 'last' }) }, 'Last »'));
  };

  const renderTable = (s: Study) => {
    clear(tableBox);
    tableBox.append(h('header', null, h('h3', null, 'Results (Table 6 layout)'), h('span', { class: 'spacer' }),
      exportMessage, exportButton('csv', 'CSV', 'csv'), exportButton('markdown', 'Markdown', 'md'), exportButton('latex', 'LaTeX', 'tex')));
    rowsPage = s;
    tableColumns = s.columns;
    // One unit per column, that of the sweep's largest value (the plots' means bound it from
    // below; a page's rows may hold a larger one).
    const largest = (key: 'exaflops' | 'device_hours') => Math.max(0, ...s.rows.map((r) => r[key] ?? 0),
      ...s.points.flatMap((p) => Object.values(p.values).map((v) => v[key]?.x ?? 0)));
    flopsColumn = flopsUnit(largest('exaflops'));
    deviceColumn = deviceTimeUnit(largest('device_hours'));
    drawTablePage();
    tableBox.append(tablePager, h('div', { class: 'table-wrap' }, h('table', { class: 'grid study', id: 'study-table' },
      h('thead', null, h('tr', null,
        ['Model', 'Epochs', 'Pretrained on', ...s.columns, 'Average', `Compute (${flopsColumn.name})`, `Device time (${deviceColumn.name})`, 'State']
          .map((t) => h('th', null, t)))),
      tableBody)));
  };

  function render() {
    if (!study) return;
    renderFig5(study.points);
    renderFig4(study.points);
    const plotted = study.points.reduce((n, p) => n + (meanOf(p, column)?.runs ?? 0), 0);
    countLine.textContent = `${study.jobs} jobs; ${plotted} with ${column === kAverage ? 'results' : column} plotted; ` +
      `${study.not_run} not yet run.`;
  }

  // The fits card says where it stands (data-fits: loading, drawn or failed); once they are
  // in, the plots are drawn again with their curves.
  const loadFits = async () => {
    fitsBox.dataset.fits = 'loading';
    if (!fits) renderFits(null);
    try {
      fits = await getJson<StudyFits>(`study/${enc(sweep)}/fits`, { column });
      if (disposed) return;
      renderFits(fits);
      render();  // the curves over the plots
      fitsBox.dataset.fits = 'drawn';
    } catch (e) {
      if (disposed) return;
      fits = null;
      renderFits(null, errorText(e));
      render();
      fitsBox.dataset.fits = 'failed';
    }
  };

  const load = async () => {
    try {
      const answer = await getJson<Study>(`study/${enc(sweep)}`, pageQuery);
      if (disposed) return;
      study = answer;
      if (column !== kAverage && !answer.columns.includes(column)) column = kAverage;
      clear(columnSelect);
      columnSelect.append(h('option', { value: kAverage, selected: column === kAverage }, 'average of all columns'),
        ...answer.columns.map((c) => h('option', { value: c, selected: c === column }, c)));
      clear(errorSlot);
      render();
      renderTable(answer);
    } catch (e) {
      if (disposed) return;
      if (!study) {
        charts.forEach((c) => c.dispose());
        timeline.dispose();
        showLoadError(root, e, `Sweep '${sweep}'`, ['Go to the sweeps overview', '#/sweeps']);
        return;
      }
      errorSlot.replaceChildren(errorBox(errorText(e)));
    }
    // The plots and the table are drawn: the page is usable. The fits come after (the
    // coordinator's first fit of a large sweep takes it seconds), then the schedule.
    markReady();
    await loadFits();
    if (disposed) return;
    // The simulation is redone by the coordinator on each call: at most every 10 s.
    if (study && Date.now() - timelineLoaded > 10_000) {
      timelineLoaded = Date.now();
      await timeline.reload(study.jobs);
    }
  };
  void load();
  const refetch = throttle(() => void load(), 500);

  return {
    onEvent(event) {
      if (event.type === 'reset') void load();
      else if (event.type === 'result' || (event.type === 'job' && event.job && jobsShown.has(event.job))) refetch();
      else if (event.type === 'sweep' && event.data?.name === sweep) refetch();
    },
    dispose() {
      disposed = true;
      refetch.cancel();
      charts.forEach((c) => c.dispose());
      timeline.dispose();
    },
  };
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
