// Sweeps overview: each sweep's jobs by state and its compute spent against planned, updated
// from `sweep` events.

import { enc, getJson, type Sweep } from '../api';
import { clear, flopsUnit, fmtFlops, h, throttle, timeCell } from '../dom';
import { markReady, showLoadError, type Page } from '../page';

const kStateOrder = ['succeeded', 'running', 'leased', 'pending', 'preempted', 'failed', 'cancelled'];

function stateBar(sweep: Sweep): HTMLElement {
  const bar = h('div', { class: 'stack', title: stateSummary(sweep) });
  const rank = (state: string) => {
    const i = kStateOrder.indexOf(state);
    return i < 0 ? kStateOrder.length : i;
  };
  const states = Object.keys(sweep.by_state).sort((a, b) => rank(a) - rank(b));
  for (const state of states) {
    const segment = h('div', { class: `seg state-${state}` });
    segment.style.width = `${(100 * sweep.by_state[state]) / Math.max(1, sweep.jobs)}%`;
    bar.append(segment);
  }
  return bar;
}

function stateSummary(sweep: Sweep): string {
  return Object.entries(sweep.by_state)
    .map(([state, n]) => `${n} ${state}`)
    .join(', ');
}

function computeCell(sweep: Sweep): HTMLElement {
  const fraction = sweep.planned_exaflops > 0 ? sweep.spent_exaflops / sweep.planned_exaflops : 0;
  const bar = h('div', { class: 'progress' }, h('div', { class: 'fill compute' }));
  (bar.firstChild as HTMLElement).style.width = `${Math.min(100, fraction * 100)}%`;
  return h(
    'div',
    { class: 'compute-cell' },
    bar,
    h('span', { class: 'num' }, `${fmtFlops(sweep.spent_exaflops, flopsUnit(sweep.planned_exaflops))} / ${fmtFlops(sweep.planned_exaflops)}`),
  );
}

export function mountSweeps(root: HTMLElement): Page {
  const sweeps = new Map<string, Sweep>();
  const body = h('div');
  root.append(
    h('div', { class: 'page-head' }, h('h2', null, 'Sweeps'),
      h('p', { class: 'note' }, 'Jobs by state and pretraining compute spent against planned.')),
    body,
  );
  let disposed = false;

  const render = () => {
    clear(body);
    if (sweeps.size === 0) {
      body.append(h('p', { class: 'empty' }, 'No sweeps yet. Submit one with `vitscale submit experiments/…yaml`.'));
      return;
    }
    const rows = [...sweeps.values()].sort((a, b) => a.created_at.localeCompare(b.created_at));
    body.append(
      h(
        'table',
        { class: 'grid', id: 'sweeps-table' },
        h('thead', null, h('tr', null, ['Sweep', 'Created', 'Jobs', 'By state', 'Done', 'Compute spent / planned', ''].map((t) => h('th', null, t)))),
        h(
          'tbody',
          null,
          rows.map((s) => {
            const done = (s.by_state.succeeded ?? 0) + (s.by_state.failed ?? 0) + (s.by_state.cancelled ?? 0);
            return h(
              'tr',
              { 'data-sweep': s.name },
              h('td', null, h('a', { href: `#/jobs?sweep=${enc(s.name)}` }, s.name)),
              h('td', null, timeCell(s.created_at)),
              h('td', { class: 'num' }, s.jobs.toLocaleString('en-US')),
              h('td', null, stateBar(s), h('div', { class: 'small-text' }, stateSummary(s))),
              h('td', { class: 'num' }, `${done} / ${s.jobs}`),
              h('td', null, computeCell(s)),
              h('td', null,
                h('a', { href: `#/jobs?sweep=${enc(s.name)}` }, 'jobs'), ' · ',
                h('a', { href: `#/study/${enc(s.name)}` }, 'study')),
            );
          }),
        ),
      ),
    );
  };

  const load = async () => {
    try {
      const answer = await getJson<{ sweeps: Sweep[] }>('sweeps');
      if (disposed) return;
      sweeps.clear();
      for (const s of answer.sweeps) sweeps.set(s.name, s);
      render();
    } catch (e) {
      if (!disposed) showLoadError(body, e, 'The sweep list', ['Reload', '#/sweeps']);
    }
    markReady();
  };
  void load();
  // Job state changes move a sweep's counts; a sweep event may carry the whole entry or only
  // the name. Either way one refetch a second keeps the page current.
  const refetch = throttle(() => void load(), 1000);

  return {
    onEvent(event) {
      if (event.type === 'reset') {
        void load();
      } else if (event.type === 'sweep' && event.data?.name && event.data.by_state) {
        sweeps.set(event.data.name, event.data as Sweep);
        render();
      } else if (event.type === 'sweep' || event.type === 'job' || event.type === 'result') {
        refetch();
      }
    },
    dispose() {
      disposed = true;
      refetch.cancel();
    },
  };
}
