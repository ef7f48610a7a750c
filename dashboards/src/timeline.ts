// The schedule of one sweep: every real attempt beside the same sweep simulated by the
// coordinator (GET /sweeps/{name}/timeline, planning/simulate.h), one row per job, hours from
// the first start on x. Real bars sit in the upper half of a row, simulated ones in the lower.

import { enc, getJson, type Timeline, type TimelineAttempt } from './api';
import { createChart, kBaseOption, type ChartCard } from './charts';
import { errorBox, h } from './dom';
import { errorText } from './page';

const kRealColor = '#1f77b4';
const kSimulatedColor = '#ff7f0e';
const kOutcomeOpacity: Record<string, number> = { succeeded: 1, running: 0.6 };

function hours(seconds: number): number {
  return seconds / 3600;
}

function fmtHours(seconds: number | undefined): string {
  if (seconds === undefined) return '–';
  if (seconds < 120) return `${seconds.toFixed(0)} s`;
  if (seconds < 7200) return `${(seconds / 60).toFixed(1)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

// The coordinator draws the timeline of sweeps up to this size (kMaxTimelineJobs in
// coordinator/user_api.cc): one row per job is unreadable, and slow to simulate, beyond it.
const kMaxTimelineJobs = 5000;

export interface TimelineView {
  // `jobs`: the sweep's size, when known; a sweep too large to draw is not asked for.
  reload(jobs?: number): Promise<void>;
  dispose(): void;
}

export function mountTimeline(parent: HTMLElement, sweep: string): TimelineView {
  let hosts = '';
  const summary = h('p', { class: 'note', id: 'timeline-summary' }, 'loading…');
  const message = h('div');
  const hostsInput = h('input', { type: 'text', placeholder: 'e.g. 8x8:H200 (default: the agents now)', 'aria-label': 'simulated hosts', size: 30 }) as HTMLInputElement;
  const form = h('form', { class: 'inline', onsubmit: (e: Event) => {
    e.preventDefault();
    hosts = hostsInput.value.trim();
    void reload();
  } }, h('label', { class: 'inline' }, 'Simulate on: ', hostsInput), h('button', { class: 'small', type: 'submit' }, 'Simulate'));
  const box = h('div');
  parent.append(box);
  const card: ChartCard = createChart(box, 'study-timeline', 'Schedule: real and simulated', `${sweep}-timeline`, {
    height: 360,
    note: 'One row per job: the real attempts (upper bar) beside the coordinator\'s simulation of the same sweep (lower bar), hours from the first start.',
  });
  card.element.insertBefore(h('div', null, form, summary, message), card.element.querySelector('.chart-box'));

  const render = (t: Timeline) => {
    const sim = t.simulated.attempts ?? [];
    const jobs: string[] = [];
    const label = new Map<string, string>();
    const firstStart = new Map<string, number>();
    for (const a of sim) {
      if (!firstStart.has(a.job)) firstStart.set(a.job, a.start);
    }
    for (const j of t.simulated.jobs ?? []) label.set(j.job, `${j.model} · ${j.job.slice(0, 8)}`);
    for (const a of t.real.attempts) {
      if (!label.has(a.job)) label.set(a.job, `${a.model ?? ''} · ${a.job.slice(0, 8)}`);
      if (!firstStart.has(a.job)) firstStart.set(a.job, Number.MAX_VALUE);
    }
    jobs.push(...[...firstStart.keys()].sort((a, b) => firstStart.get(a)! - firstStart.get(b)! || a.localeCompare(b)));
    const row = new Map(jobs.map((j, i) => [j, i]));
    // Rows of a readable height: the plot grows with the sweep (the card's observer resizes it).
    const plot = card.element.querySelector<HTMLElement>('[data-chart="study-timeline"]');
    if (plot) plot.style.height = `${Math.min(2400, Math.max(240, 14 * jobs.length + 90))}px`;
    const bars = (list: TimelineAttempt[], lower: boolean) => list.filter((a) => row.has(a.job)).map((a) => ({
      value: [row.get(a.job)!, hours(a.start), hours(a.end), lower ? 1 : 0],
      attempt: a,
    }));
    const renderBar = (_params: unknown, api: {
      value(i: number): number; coord(v: [number, number]): [number, number]; size(v: [number, number]): [number, number]; style(): object;
    }) => {
      const start = api.coord([api.value(1), api.value(0)]);
      const end = api.coord([api.value(2), api.value(0)]);
      const band = api.size([0, 1])[1];
      const half = band * 0.4;
      const y = start[1] - band * 0.42 + (api.value(3) ? half + band * 0.04 : 0);
      return { type: 'rect', shape: { x: start[0], y, width: Math.max(end[0] - start[0], 1), height: half }, style: api.style() };
    };
    const tooltip = (p: { seriesName: string; data: { attempt: TimelineAttempt } }) => {
      const a = p.data.attempt;
      return `<b>${p.seriesName}</b> · ${label.get(a.job) ?? a.job}<br>attempt ${a.number}: ${fmtHours(a.start)} → ${fmtHours(a.end)} (${a.outcome})`;
    };
    card.chart.setOption({
      ...kBaseOption,
      grid: { left: 160, right: 24, top: 36, bottom: 48 },
      legend: { top: 4, left: 'center', data: ['real', 'simulated'] },
      tooltip: { trigger: 'item', formatter: tooltip },
      xAxis: { type: 'value', name: 'hours from the first start', nameLocation: 'middle', nameGap: 28, min: 0 },
      yAxis: { type: 'category', data: jobs.map((j) => label.get(j) ?? j), inverse: true, axisLabel: { fontSize: 10 } },
      series: [
        { type: 'custom', name: 'real', color: kRealColor, renderItem: renderBar, encode: { x: [1, 2], y: 0 },
          data: bars(t.real.attempts, false).map((b) => ({ ...b, itemStyle: { opacity: kOutcomeOpacity[b.attempt.outcome] ?? 0.45 } })) },
        { type: 'custom', name: 'simulated', color: kSimulatedColor, renderItem: renderBar, encode: { x: [1, 2], y: 0 },
          data: bars(sim, true) },
      ],
    }, { replaceMerge: ['series'] });
    card.setEmpty(jobs.length ? null : 'Nothing to draw yet.');
    const realEnd = Math.max(0, ...t.real.attempts.map((a) => a.end));
    const running = t.real.attempts.filter((a) => a.outcome === 'running').length;
    const parts = [
      t.real.attempts.length
        ? `real: ${fmtHours(realEnd)} so far${running ? `, ${running} attempt${running === 1 ? '' : 's'} running` : ''}`
        : 'real: nothing has run yet',
    ];
    if (t.simulated.error) {
      message.replaceChildren(errorBox(`The simulation cannot run: ${t.simulated.error}`));
    } else {
      message.replaceChildren();
      parts.push(`simulated on ${t.simulated.cluster}: makespan ${fmtHours(t.simulated.makespan_seconds)}, ` +
        `utilisation ${((t.simulated.utilisation ?? 0) * 100).toFixed(0)}%`);
      if (t.simulated.estimated?.length) parts.push(`${t.simulated.estimated.length} estimated rate${t.simulated.estimated.length === 1 ? '' : 's'}`);
    }
    summary.textContent = parts.join(' · ');
  };

  let sweepJobs: number | undefined;
  const reload = async (jobs?: number) => {
    if (jobs !== undefined) sweepJobs = jobs;
    if (sweepJobs !== undefined && sweepJobs > kMaxTimelineJobs) {
      const text = `This sweep has ${sweepJobs.toLocaleString('en-US')} jobs: the schedule (one row per job) is drawn ` +
        `for sweeps of at most ${kMaxTimelineJobs.toLocaleString('en-US')} jobs.`;
      summary.textContent = text;
      form.hidden = true;
      card.setEmpty('Not drawn for a sweep this large.');
      return;
    }
    form.hidden = false;
    try {
      const t = await getJson<Timeline>(`sweeps/${enc(sweep)}/timeline`, hosts ? { hosts } : {});
      if (!hostsInput.value) hostsInput.placeholder = t.hosts || hostsInput.placeholder;
      render(t);
    } catch (e) {
      message.replaceChildren(errorBox(errorText(e)));
    }
  };
  return { reload, dispose: () => card.dispose() };
}
