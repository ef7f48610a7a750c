// Cluster: the agents with their slots and jobs, and slot utilisation over time. Agent events
// update the table in place and fetch the utilisation samples that are new since the last one.

import { getJson, type Agent, type UtilisationSample } from '../api';
import { createChart, kBaseOption } from '../charts';
import { clear, errorBox, h, shortId, timeCell, throttle } from '../dom';
import { errorText, markReady, type Page } from '../page';

const kWindows: [string, number][] = [['last hour', 3600], ['last 6 h', 6 * 3600], ['last day', 86400], ['all', 0]];

export function mountCluster(root: HTMLElement): Page {
  let disposed = false;
  let windowSeconds = 3600;
  const agents = new Map<string, Agent>();
  let samples: UtilisationSample[] = [];

  const errorSlot = h('div');
  const agentBox = h('section', { class: 'card' });
  const summary = h('div', { class: 'big-numbers' });
  const select = h('select', { 'aria-label': 'time window', onchange: (e: Event) => {
    windowSeconds = Number((e.target as HTMLSelectElement).value);
    void loadUtilisation(true);
  } }, kWindows.map(([label, s]) => h('option', { value: s, selected: s === windowSeconds }, label)));
  const chartSlot = h('div');
  root.append(h('div', { class: 'page-head' }, h('h2', null, 'Cluster')), errorSlot, summary, chartSlot, agentBox);
  const card = createChart(chartSlot, 'cluster-utilisation', 'Slot utilisation', 'cluster-utilisation', { height: 280 });
  card.element.querySelector('header')!.insertBefore(select, card.element.querySelector('header .spacer')!.nextSibling);
  card.chart.setOption({
    ...kBaseOption,
    tooltip: { trigger: 'axis' },
    legend: { top: 4, right: 16 },
    xAxis: { type: 'time' },
    yAxis: { type: 'value', name: 'slots', minInterval: 1 },
    series: [
      { type: 'line', name: 'busy slots', step: 'end', showSymbol: false, areaStyle: { opacity: 0.25 }, color: '#1f77b4', data: [] },
      { type: 'line', name: 'total slots', step: 'end', showSymbol: false, lineStyle: { type: 'dashed' }, color: '#7f7f7f', data: [] },
    ],
  });

  const renderAgents = () => {
    clear(agentBox);
    clear(summary);
    const list = [...agents.values()].sort((a, b) => a.id.localeCompare(b.id));
    const total = list.filter((a) => a.alive).reduce((n, a) => n + a.slots, 0);
    const free = list.filter((a) => a.alive).reduce((n, a) => n + a.free_slots, 0);
    summary.append(
      h('div', null, h('b', null, String(list.filter((a) => a.alive).length)), ' agents alive'),
      h('div', null, h('b', { id: 'busy-slots' }, String(total - free)), ` of ${total} slots busy`),
      h('div', null, h('b', null, String(list.reduce((n, a) => n + a.gpus, 0))), ' GPUs'),
    );
    agentBox.append(h('header', null, h('h3', null, 'Agents')));
    if (list.length === 0) {
      agentBox.append(h('p', { class: 'empty' }, 'No agent has registered. Start one with `vitscale-agent --coordinator URL`.'));
      return;
    }
    agentBox.append(h('table', { class: 'grid', id: 'agents-table' },
      h('thead', null, h('tr', null, ['Agent', 'Host', 'Slots', 'GPUs', 'Busy', 'Heartbeat', 'Alive', 'Jobs'].map((t) => h('th', null, t)))),
      h('tbody', null, list.map((a) => h('tr', { 'data-agent': a.id, class: a.alive ? '' : 'dead' },
        h('td', null, a.id), h('td', null, a.host), h('td', { class: 'num' }, String(a.slots)), h('td', { class: 'num' }, String(a.gpus)),
        h('td', { class: 'num' }, String(a.slots - a.free_slots)), h('td', null, timeCell(a.last_heartbeat)),
        h('td', null, a.alive ? 'yes' : h('span', { class: 'state state-failed' }, 'lost')),
        h('td', null, a.jobs.flatMap((j, i) => [i ? ' ' : '', h('a', { href: `#/jobs/${j}`, class: 'mono' }, shortId(j))])))))));
  };

  const redraw = () => {
    const now = new Date().toISOString();
    const busy = samples.map((s) => [s.time, s.busy_slots]);
    const total = samples.map((s) => [s.time, s.total_slots]);
    // Extend the last sample to now: the state holds until the next change.
    if (samples.length) {
      const last = samples[samples.length - 1];
      busy.push([now, last.busy_slots]);
      total.push([now, last.total_slots]);
    }
    card.chart.setOption({ series: [{ data: busy }, { data: total }] });
  };

  const loadAgents = async () => {
    const answer = await getJson<{ agents: Agent[] }>('agents');
    if (disposed) return;
    agents.clear();
    for (const a of answer.agents) agents.set(a.id, a);
    renderAgents();
  };

  const loadUtilisation = async (full: boolean) => {
    try {
      const since = !full && samples.length
        ? samples[samples.length - 1].time
        : windowSeconds ? new Date(Date.now() - windowSeconds * 1000).toISOString() : '';
      const answer = await getJson<{ samples: UtilisationSample[] }>('cluster/utilisation', { since });
      if (disposed) return;
      if (full) samples = answer.samples;
      else {
        const lastTime = samples.length ? samples[samples.length - 1].time : '';
        samples.push(...answer.samples.filter((s) => s.time > lastTime));
      }
      redraw();
    } catch (e) {
      if (!disposed) errorSlot.replaceChildren(errorBox(errorText(e)));
    }
  };

  const loadAll = async () => {
    try {
      await Promise.all([loadAgents(), loadUtilisation(true)]);
      clear(errorSlot);
    } catch (e) {
      if (!disposed) errorSlot.replaceChildren(errorBox(errorText(e)));
    }
    markReady();
  };
  void loadAll();
  const moreSamples = throttle(() => void loadUtilisation(false), 1000);
  const tick = window.setInterval(() => {
    renderAgents();
    redraw();
  }, 15_000);

  return {
    onEvent(event) {
      if (event.type === 'reset') void loadAll();
      if (event.type === 'agent' && event.data?.id) {
        agents.set(event.data.id, event.data as Agent);
        renderAgents();
        moreSamples();
      }
    },
    dispose() {
      disposed = true;
      moreSamples.cancel();
      window.clearInterval(tick);
      card.dispose();
    },
  };
}
