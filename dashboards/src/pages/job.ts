// Job detail: the live training curves (loss, learning rate, images/s), the phase a running job
// is in, the attempts with their preemptions and resumes, checkpoints, results, the compute
// ledger, the inspection views (./inspection.ts) and the log tail. Metric events for this job
// extend the curves in place; job and result events refresh the rest.

import {ApiError, enc, getJson, getText, phaseText, postJson, type Job, type JobDetail, type MetricPoint} from '../api';
import { createChart, kBaseOption, type ChartCard } from '../charts';
import {
  clear, errorBox, fmtCount, fmtDeviceTime, fmtFlops, fmtNumber, h, progressBar, stateBadge, throttle, timeCell,
} from '../dom';
import {errorText, markReady, showLoadError, type Page, type PageContext} from '../page';
import {mountInspection, type InspectionSection} from './inspection';

const kCurves: { name: string; title: string; unit: string; color: string; log?: boolean }[] = [
  { name: 'loss', title: 'Training loss', unit: 'loss', color: '#d62728' },
  { name: 'lr', title: 'Learning rate', unit: 'lr', color: '#2ca02c' },
  { name: 'images_per_sec', title: 'Throughput', unit: 'images/s', color: '#1f77b4' },
];
const kMetricPage = 5000;
const kFinished = new Set(['succeeded', 'failed', 'cancelled']);

async function fetchMetric(id: string, name: string): Promise<[number, number][]> {
  const points: [number, number][] = [];
  let after = -1;
  for (;;) {
    const answer = await getJson<{ points: MetricPoint[] }>(`jobs/${enc(id)}/metrics`, {
      name, after_step: after, limit: kMetricPage,
    });
    for (const p of answer.points) points.push([p.step, p.value]);
    if (answer.points.length < kMetricPage) return points;
    after = answer.points[answer.points.length - 1].step;
  }
}

function table(headers: string[], rows: (Node | string)[][], empty: string, id?: string): HTMLElement {
  if (rows.length === 0) return h('p', { class: 'empty' }, empty);
  return h('table', { class: 'grid', id },
    h('thead', null, h('tr', null, headers.map((t) => h('th', null, t)))),
    h('tbody', null, rows.map((r) => h('tr', null, r.map((c) => h('td', null, c))))));
}

export function mountJob(root: HTMLElement, context: PageContext, id: string): Page {
  let disposed = false;
  let inspection: InspectionSection|null = null;
  let job: JobDetail | null = null;
  const series = new Map<string, [number, number][]>();
  const charts: ChartCard[] = [];

  const head = h('div', { class: 'page-head' }, h('h2', null, 'Job ', h('span', { class: 'mono' }, id.slice(0, 12))));
  const summary = h('div', { class: 'card job-summary' });
  const actionMessage = h('div', { class: 'action-message', id: 'action-message', role: 'status' });
  const chartRow = h('div', { class: 'chart-row' });
  const attempts = h('section', { class: 'card' });
  const checkpoints = h('section', { class: 'card' });
  const results = h('section', { class: 'card' });
  const logBox = h('pre', { class: 'log', id: 'log-tail' });
  const logSection = h('section', { class: 'card' }, h('header', null, h('h3', null, 'Log tail')), logBox);
  const configBox = h('pre', { class: 'config' });
  const inspectionBox = h('div', {class: 'card'});
  const body =
      h('div', null, summary, actionMessage, chartRow,
        h('div', {class: 'two-col'}, attempts, checkpoints), results, inspectionBox, logSection,
        h('details', {class: 'card'}, h('summary', null, 'Job config'), configBox));
  root.append(head, body);

  for (const curve of kCurves) {
    const card = createChart(chartRow, `job-${curve.name}`, curve.title, `job-${id.slice(0, 12)}-${curve.name}`, { height: 240 });
    card.chart.setOption({
      ...kBaseOption,
      grid: { left: 64, right: 16, top: 16, bottom: 40 },
      tooltip: { trigger: 'axis' },
      xAxis: { type: 'value', name: 'step', nameLocation: 'middle', nameGap: 26, scale: true },
      yAxis: { type: 'value', name: curve.unit, scale: true, nameTextStyle: { align: 'left' } },
      series: [{ type: 'line', name: curve.name, showSymbol: false, color: curve.color, data: [] }],
    });
    charts.push(card);
  }

  const redrawCharts = () => {
    kCurves.forEach((curve, i) => {
      const data = series.get(curve.name) ?? [];
      charts[i].chart.setOption({ series: [{ data }] });
      charts[i].setEmpty(data.length ? null : `No ${curve.unit} reported yet.`);
    });
  };
  let redrawQueued = false;
  const queueRedraw = () => {
    if (redrawQueued) return;
    redrawQueued = true;
    requestAnimationFrame(() => {
      redrawQueued = false;
      if (!disposed) redrawCharts();
    });
  };

  const action = async (what: string, path: string, payload: unknown = {}) => {
    actionMessage.className = 'action-message';
    actionMessage.textContent = `${what}…`;
    try {
      const updated = await postJson<Job>(`jobs/${enc(job?.id ?? id)}/${path}`, payload);
      actionMessage.className = 'action-message ok';
      actionMessage.textContent = `${what}: done (state ${updated.state}, priority ${updated.priority})`;
      void loadJob();
    } catch (e) {
      actionMessage.className = 'action-message failed';
      actionMessage.textContent = `${what} refused: ${errorText(e)}`;
    }
  };

  const renderSummary = (j: JobDetail) => {
    clear(summary);
    const priorityInput = h('input', { type: 'number', value: j.priority, class: 'priority-input', 'aria-label': 'priority' });
    const finished = kFinished.has(j.state);
    const ledger = j.ledger;
    const device = ledger?.device_seconds
      ? Object.entries(ledger.device_seconds).map(([k, v]) => `${k} ${fmtDeviceTime(v / 3600)}`).join(', ')
      : '–';
    summary.append(
        h(
            'dl',
            {class: 'facts'},
            h('dt', null, 'State'),
            h('dd', {id: 'job-state'}, stateBadge(j.state)),
            h('dt', null, 'Model'),
            h('dd', null, `${j.model} (${j.family})`),
            h('dt', null, 'Pretraining'),
            h('dd', null,
              `${j.dataset}, ${fmtCount(j.subset_size)} images, ${j.epochs} epoch${
                  j.epochs === 1 ? '' : 's'}`),
            h('dt', null, 'Progress'),
            h('dd', null, progressBar(j.progress), ` ${fmtCount(j.images_seen)} images seen`,
              j.phase ? h('span', {class: 'phase', id: 'job-phase', 'data-phase': j.phase.phase},
                          ` · ${phaseText(j.phase)}`) :
                        null),
            h('dt', null, 'Compute'),
            h('dd', null,
              `planned ${fmtFlops(j.planned_exaflops)}; spent ${
                  fmtFlops(
                      ledger?.train_flops !== undefined ? ledger.train_flops / 1e18 :
                                                          null)} training`,
              ledger?.eval_flops !== undefined ?
                  `, ${fmtFlops(ledger.eval_flops / 1e18)} evaluating` :
                  ''),
            h('dt', null, 'Device time'),
            h('dd', null, device,
              ledger?.wall_seconds !== undefined ? `; wall ${fmtNumber(ledger.wall_seconds)} s` :
                                                   ''),
            h('dt', null, 'Sweeps'),
            h('dd', null,
              j.sweeps.flatMap((s, i) => [i ? ', ' : '', h('a', {href: `#/study/${enc(s)}`}, s)])),
            h('dt', null, 'Id'),
            h('dd', {class: 'mono small-text'}, j.id),
            h('dt', null, 'Updated'),
            h('dd', null, timeCell(j.updated_at)),
            ),
        h(
            'div',
            {class: 'actions'},
            h('button', {
              'data-action': 'cancel',
              disabled: finished,
              onclick: () => void action('Cancel', 'cancel')
            },
              'Cancel'),
            h('button', {
              'data-action': 'preempt',
              disabled: j.state !== 'running',
              onclick: () => void action('Preempt', 'preempt')
            },
              'Preempt'),
            h('span', {class: 'priority'}, 'Priority ', priorityInput,
              h('button', {
                'data-action': 'priority',
                onclick: () =>
                    void action('Set priority', 'priority', {priority: Number(priorityInput.value)})
              },
                'Set')),
            ),
    );
  };

  const renderRest = (j: JobDetail) => {
    clear(attempts);
    attempts.append(h('header', null, h('h3', null, 'Attempts')), table(
      ['#', 'Agent', 'Hosts', 'Started', 'Ended', 'Outcome', 'Exit', 'Resumed from step'],
      j.attempts.map((a) => [
        String(a.number), a.agent ?? '–', Array.isArray(a.hosts) ? a.hosts.join(' ') : String(a.hosts ?? ''), timeCell(a.started_at), timeCell(a.ended_at),
        a.outcome ? stateBadge(a.outcome) : h('span', { class: 'small-text' }, 'running'),
        a.exit_status === null ? '–' : String(a.exit_status),
        a.resumed_from_step ? String(a.resumed_from_step) : 'start',
      ]),
      'Not started yet.', 'attempts-table'));
    clear(checkpoints);
    checkpoints.append(h('header', null, h('h3', null, 'Checkpoints')), table(
      ['Step', 'Written', 'SHA-256', 'Path'],
      j.checkpoints.map((c) => [String(c.step), timeCell(c.created_at), h('span', { class: 'mono', title: c.sha256 }, c.sha256.slice(0, 12)), h('span', { class: 'mono small-text' }, c.path)]),
      'No checkpoints yet.'));
    clear(results);
    results.append(h('header', null, h('h3', null, 'Transfer results')), table(
      ['Evaluation', 'Dataset', 'Shots', 'Seed', 'Metric', 'Value'],
      j.results.map((r) => [r.evaluation, r.dataset, r.shots === null ? '–' : String(r.shots), r.seed === null ? '–' : String(r.seed), r.metric, fmtNumber(r.value, 4)]),
      'No results yet.', 'results-table'));
    configBox.textContent = JSON.stringify(j.config, null, 2);
  };

  const loadLog = async () => {
    try {
      const text = await getText(`jobs/${enc(job?.id ?? id)}/logs`, { tail_bytes: 65536 });
      if (disposed) return;
      const atBottom = logBox.scrollTop + logBox.clientHeight >= logBox.scrollHeight - 4;
      logBox.textContent = text || '(empty)';
      logBox.classList.remove('failed');
      if (atBottom) logBox.scrollTop = logBox.scrollHeight;
    } catch (e) {
      if (disposed) return;
      // A job that never ran has no log yet; anything else is shown.
      logBox.textContent = e instanceof ApiError && e.status === 404 ? '(no log yet)' : errorText(e);
      logBox.classList.toggle('failed', !(e instanceof ApiError && e.status === 404));
    }
  };

  const loadInspection = async (detail: JobDetail) => {
    inspection?.dispose();
    clear(inspectionBox);
    inspection = mountInspection(detail.id, detail.model, context.query.get('compare'));
    inspectionBox.append(inspection.element);
    await inspection.load();
  };

  const loadJob = async () => {
    const detail = await getJson<JobDetail>(`jobs/${enc(id)}`);
    if (disposed) return;
    // The views appear when an inspection phase ends (or the job ends).
    const inspected = job?.phase?.phase === 'inspection' && detail.phase?.phase !== 'inspection';
    job = detail;
    if (inspected) void loadInspection(detail);
    head.querySelector('.mono')!.textContent = `${detail.id.slice(0, 12)} · ${detail.model}`;
    renderSummary(detail);
    renderRest(detail);
  };

  const loadAll = async () => {
    try {
      await loadJob();
      const curves = await Promise.all(kCurves.map((c) => fetchMetric(job!.id, c.name)));
      if (disposed) return;
      kCurves.forEach((c, i) => series.set(c.name, curves[i]));
      redrawCharts();
      await loadInspection(job!);
      await loadLog();
    } catch (e) {
      if (disposed) return;
      if (!job) {
        charts.forEach((c) => c.dispose());
        charts.length = 0;
        showLoadError(root, e, `Job ${id}`, ['Go to the job table', '#/jobs']);
        return;
      }
      body.prepend(errorBox(errorText(e)));
    }
    markReady();
  };
  void loadAll();

  const refreshJob = throttle(() => void loadJob().catch((e) => {
    actionMessage.className = 'action-message failed';
    actionMessage.textContent = errorText(e);
  }), 500);
  const refreshLog = throttle(() => void loadLog(), 2000);

  return {
    onEvent(event) {
      if (event.type === 'reset') {
        void loadAll();
        return;
      }
      if (!job || event.job !== job.id) return;
      if (event.type === 'metric') {
        for (const p of (event.data?.points ?? []) as MetricPoint[]) {
          const list = series.get(p.name);
          if (!list) continue;
          // Catch-up after a reconnect may repeat points already loaded.
          if (list.length && p.step <= list[list.length - 1][0]) continue;
          list.push([p.step, p.value]);
        }
        queueRedraw();
        refreshLog();
      } else if (event.type === 'job' || event.type === 'result') {
        refreshJob();
        refreshLog();
      }
    },
    dispose() {
      disposed = true;
      inspection?.dispose();
      refreshJob.cancel();
      refreshLog.cancel();
      charts.forEach((c) => c.dispose());
    },
  };
}
