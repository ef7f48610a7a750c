// The job table. Filtering, sorting and paging are the coordinator's (limit/offset in SQLite),
// so a page costs the same at 100 jobs or 100,000; the filters live in the URL so that a view
// can be linked. Job events update rows in view in place; other changes refetch the page at
// most once a second.

import {getJson, phaseText, type Job, type JobPage} from '../api';
import { clear, errorBox, fmtFlops, fmtCount, h, progressBar, shortId, stateBadge, throttle, timeCell } from '../dom';
import { errorText, markReady, type Page, type PageContext } from '../page';

export const kJobStates = ['pending', 'leased', 'running', 'preempted', 'succeeded', 'failed', 'cancelled'];
const kPageSizes = [50, 100, 200, 500];

interface Filters {
  sweep: string;
  states: string[];
  model: string;
  subset: string;
  sort: string;
  order: 'asc' | 'desc';
  limit: number;
  offset: number;
}

function readFilters(query: URLSearchParams): Filters {
  const limit = Number(query.get('limit'));
  return {
    sweep: query.get('sweep') ?? '',
    states: query.getAll('state'),
    model: query.get('model') ?? '',
    subset: query.get('subset') ?? '',
    sort: query.get('sort') ?? 'submitted',
    order: query.get('order') === 'desc' ? 'desc' : 'asc',
    limit: kPageSizes.includes(limit) ? limit : 50,
    offset: Math.max(0, Number(query.get('offset')) || 0),
  };
}

function filtersHash(f: Filters): string {
  const params = new URLSearchParams();
  if (f.sweep) params.set('sweep', f.sweep);
  for (const s of f.states) params.append('state', s);
  if (f.model) params.set('model', f.model);
  if (f.subset) params.set('subset', f.subset);
  if (f.sort !== 'submitted') params.set('sort', f.sort);
  if (f.order !== 'asc') params.set('order', f.order);
  if (f.limit !== 50) params.set('limit', String(f.limit));
  if (f.offset) params.set('offset', String(f.offset));
  const qs = params.toString();
  return `#/jobs${qs ? `?${qs}` : ''}`;
}

// Columns: header, the API's sort key when the column sorts, and the cell.
const kColumns: [string, string|null, (job: Job) => Node | string][] = [
  ['Job', null, (j) => h('a', {href: `#/jobs/${j.id}`, class: 'mono'}, shortId(j.id))],
  ['Model', 'model', (j) => j.model],
  ['Family', null, (j) => j.family],
  ['Dataset', null, (j) => j.dataset],
  ['Subset', 'subset', (j) => fmtCount(j.subset_size)],
  ['Epochs', null, (j) => String(j.epochs)],
  ['State', 'state', (j) => stateBadge(j.state)],
  ['Priority', 'priority', (j) => String(j.priority)],
  ['Attempts', null, (j) => String(j.attempts)],
  [
    'Progress', null,
    (j) =>
        h('span', {class: 'progress-cell'}, progressBar(j.progress),
          j.phase ? h('span', {class: 'phase small-text', 'data-phase': j.phase.phase},
                      phaseText(j.phase)) :
                    null)
  ],
  ['Planned compute', null, (j) => fmtFlops(j.planned_exaflops)],
  ['Updated', 'updated', (j) => timeCell(j.updated_at)],
];

function jobRow(job: Job): HTMLTableRowElement {
  return h('tr', { 'data-job': job.id }, kColumns.map(([, , cell]) => h('td', null, cell(job))));
}

export function mountJobs(root: HTMLElement, context: PageContext): Page {
  const filters = readFilters(context.query);
  let disposed = false;
  let requestNumber = 0;
  let shown: JobPage | null = null;
  const rowsById = new Map<string, HTMLTableRowElement>();

  const status = h('div', { class: 'status-line' });
  const errorSlot = h('div');
  const thead = h('thead');
  const tbody = h('tbody');
  const table = h('table', { class: 'grid jobs', id: 'jobs-table' }, thead, tbody);
  const pager = h('div', { class: 'pager' });

  const modelInput = h('input', { type: 'text', value: filters.model, placeholder: 'e.g. ViT-B/16', list: 'model-names', 'aria-label': 'model' });
  const modelNames = h('datalist', { id: 'model-names' });
  const subsetInput = h('input', { type: 'number', min: 1, value: filters.subset, placeholder: 'e.g. 10000', 'aria-label': 'subset size' });
  const sweepInput = h('input', { type: 'text', value: filters.sweep, placeholder: 'all sweeps', 'aria-label': 'sweep' });
  const stateBoxes = kJobStates.map((state) =>
    h('label', { class: `chip state-${state}` },
      h('input', { type: 'checkbox', value: state, checked: filters.states.includes(state), 'data-state-filter': state }),
      state),
  );
  const applyText = () => {
    filters.model = modelInput.value.trim();
    filters.subset = subsetInput.value.trim();
    filters.sweep = sweepInput.value.trim();
    filters.offset = 0;
    update();
  };
  for (const input of [modelInput, subsetInput, sweepInput]) input.addEventListener('change', applyText);
  for (const label of stateBoxes) {
    label.querySelector('input')!.addEventListener('change', () => {
      filters.states = stateBoxes
        .map((l) => l.querySelector('input')!)
        .filter((i) => i.checked)
        .map((i) => i.value);
      filters.offset = 0;
      update();
    });
  }

  root.append(
    h('div', { class: 'page-head' }, h('h2', null, 'Jobs')),
    h('div', { class: 'filters card' },
      h('label', null, 'Sweep ', sweepInput),
      h('label', null, 'Model ', modelInput, modelNames),
      h('label', null, 'Subset ', subsetInput),
      h('div', { class: 'chips' }, stateBoxes),
    ),
    errorSlot,
    status,
    h('div', { class: 'table-wrap' }, table),
    pager,
  );

  const renderHead = () => {
    clear(thead);
    thead.append(h('tr', null, kColumns.map(([title, key]) => {
      if (!key) return h('th', null, title);
      const active = filters.sort === key;
      const arrow = active ? (filters.order === 'asc' ? ' ▲' : ' ▼') : '';
      return h('th', { class: `sortable${active ? ' active' : ''}`, 'data-sort': key, onclick: () => {
        if (filters.sort === key) filters.order = filters.order === 'asc' ? 'desc' : 'asc';
        else {
          filters.sort = key;
          filters.order = 'asc';
        }
        filters.offset = 0;
        update();
      } }, title + arrow);
    })));
  };

  const renderPager = (page: JobPage) => {
    clear(pager);
    const first = page.total === 0 ? 0 : page.offset + 1;
    const last = Math.min(page.offset + page.jobs.length, page.total);
    const pageCount = Math.max(1, Math.ceil(page.total / filters.limit));
    const pageIndex = Math.floor(page.offset / filters.limit) + 1;
    const go = (offset: number) => {
      filters.offset = Math.max(0, offset);
      update();
    };
    const size = h('select', { 'aria-label': 'rows per page', onchange: (e: Event) => {
      filters.limit = Number((e.target as HTMLSelectElement).value);
      filters.offset = 0;
      update();
    } }, kPageSizes.map((n) => h('option', { value: n, selected: n === filters.limit }, `${n} rows`)));
    pager.append(
      h('button', { class: 'small', 'data-page': 'first', disabled: page.offset === 0, onclick: () => go(0) }, '« First'),
      h('button', { class: 'small', 'data-page': 'prev', disabled: page.offset === 0, onclick: () => go(page.offset - filters.limit) }, '‹ Prev'),
      h('span', { class: 'range', id: 'jobs-range' }, `${first.toLocaleString('en-US')}–${last.toLocaleString('en-US')} of ${page.total.toLocaleString('en-US')}`),
      h('span', { class: 'small-text' }, ` page ${pageIndex} of ${pageCount} `),
      h('button', { class: 'small', 'data-page': 'next', disabled: last >= page.total, onclick: () => go(page.offset + filters.limit) }, 'Next ›'),
      h('button', { class: 'small', 'data-page': 'last', disabled: last >= page.total, onclick: () => go((pageCount - 1) * filters.limit) }, 'Last »'),
      size,
    );
  };

  const load = async () => {
    const number = ++requestNumber;
    const started = performance.now();
    status.textContent = 'loading…';
    try {
      const page = await getJson<JobPage>('jobs', {
        sweep: filters.sweep,
        state: filters.states,
        model: filters.model,
        subset: filters.subset,
        sort: filters.sort,
        order: filters.order,
        limit: filters.limit,
        offset: filters.offset,
      });
      if (disposed || number !== requestNumber) return;
      clear(errorSlot);
      shown = page;
      rowsById.clear();
      clear(tbody);
      for (const job of page.jobs) {
        const row = jobRow(job);
        rowsById.set(job.id, row);
        tbody.append(row);
      }
      if (page.jobs.length === 0) {
        tbody.append(h('tr', null, h('td', { colspan: kColumns.length, class: 'empty' }, 'No jobs match these filters.')));
      }
      const models = new Set([...modelNames.querySelectorAll('option')].map((o) => o.value));
      for (const job of page.jobs) {
        if (!models.has(job.model)) modelNames.append(h('option', { value: job.model }));
        models.add(job.model);
      }
      renderPager(page);
      status.textContent = `${page.total.toLocaleString('en-US')} jobs · fetched in ${(performance.now() - started).toFixed(0)} ms`;
    } catch (e) {
      if (disposed || number !== requestNumber) return;
      clear(errorSlot);
      errorSlot.append(errorBox(errorText(e)));
      status.textContent = '';
    }
    markReady();
  };

  const refetch = throttle(() => void load(), 1000);

  function update() {
    history.replaceState(null, '', filtersHash(filters));
    renderHead();
    void load();
  }

  renderHead();
  void load();

  return {
    onEvent(event) {
      if (event.type === 'reset') {
        void load();
        return;
      }
      if (event.type !== 'job' || !event.data) return;
      const job = event.data as Job;
      const row = rowsById.get(job.id);
      const stillMatches = filters.states.length === 0 || filters.states.includes(job.state);
      if (row && stillMatches && filters.sort !== 'state' && filters.sort !== 'updated' && filters.sort !== 'priority') {
        const fresh = jobRow(job);
        row.replaceWith(fresh);
        rowsById.set(job.id, fresh);
        if (shown) shown.jobs = shown.jobs.map((j) => (j.id === job.id ? job : j));
      } else {
        refetch();
      }
    },
    dispose() {
      disposed = true;
      refetch.cancel();
    },
  };
}
