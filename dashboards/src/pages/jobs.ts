// The job table. Filtering, sorting and paging are the coordinator's: pages are keyset pages
// (the API's next/prev cursors, docs/api.md), so first, next, previous and last cost the same at
// 100 jobs or a million; the filters and the page's cursor live in the URL so that a view can
// be linked. Job events update rows in view in place; other changes refetch the page at most
// once a second.

import { ApiError, getJson, phaseText, type Job, type JobPage } from '../api';
import { clear, errorBox, fmtFlops, fmtCount, h, progressBar, shortId, stateBadge, throttle, timeCell } from '../dom';
import { errorText, markReady, type Page, type PageContext } from '../page';

export const kJobStates = ['pending', 'leased', 'running', 'preempted', 'succeeded', 'failed', 'cancelled'];
const kPageSizes = [50, 100, 200, 500];

// Where the page starts: an end of the list, or just after/before the row a cursor names.
type Start = { from: 'first' } | { from: 'last' } | { from: 'after' | 'before'; cursor: string };

interface Filters {
  sweep: string;
  states: string[];
  model: string;
  subset: string;
  sort: string;
  order: 'asc' | 'desc';
  limit: number;
  start: Start;
}

function readStart(query: URLSearchParams): Start {
  const after = query.get('after');
  const before = query.get('before');
  if (after) return { from: 'after', cursor: after };
  if (before) return { from: 'before', cursor: before };
  return query.get('page') === 'last' ? { from: 'last' } : { from: 'first' };
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
    start: readStart(query),
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
  if (f.start.from === 'last') params.set('page', 'last');
  if (f.start.from === 'after' || f.start.from === 'before') params.set(f.start.from, f.start.cursor);
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
    filters.start = { from: 'first' };
    update();
  };
  for (const input of [modelInput, subsetInput, sweepInput]) input.addEventListener('change', applyText);
  for (const label of stateBoxes) {
    label.querySelector('input')!.addEventListener('change', () => {
      filters.states = stateBoxes
        .map((l) => l.querySelector('input')!)
        .filter((i) => i.checked)
        .map((i) => i.value);
      filters.start = { from: 'first' };
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
        filters.start = { from: 'first' };
        update();
      } }, title + arrow);
    })));
  };

  // The index of the first row shown, when it is known: keyset pages have no offsets, so it is
  // followed from the ends as the user pages (a linked cursor page does not know it).
  let firstIndex: number | null = 0;
  let moved = true; // the next load goes to another page (not a refetch of the shown one)
  const totalText = (page: JobPage) =>
    page.total_exact ? page.total.toLocaleString('en-US') : `more than ${page.total.toLocaleString('en-US')}`;

  const renderPager = (page: JobPage) => {
    clear(pager);
    const go = (start: Start) => {
      filters.start = start;
      update();
    };
    const size = h('select', { 'aria-label': 'rows per page', onchange: (e: Event) => {
      filters.limit = Number((e.target as HTMLSelectElement).value);
      filters.start = { from: 'first' };
      update();
    } }, kPageSizes.map((n) => h('option', { value: n, selected: n === filters.limit }, `${n} rows`)));
    const shown = page.jobs.length;
    let range = `${shown.toLocaleString('en-US')} of ${totalText(page)}`;
    let where = '';
    if (shown === 0) range = `0 of ${totalText(page)}`;
    else if (firstIndex !== null) {
      range = `${(firstIndex + 1).toLocaleString('en-US')}–${(firstIndex + shown).toLocaleString('en-US')} of ${totalText(page)}`;
      if (page.total_exact) {
        where = ` page ${Math.floor(firstIndex / filters.limit) + 1} of ${Math.max(1, Math.ceil(page.total / filters.limit))} `;
      }
    }
    pager.append(
      h('button', { class: 'small', 'data-page': 'first', disabled: !page.prev, onclick: () => go({ from: 'first' }) }, '« First'),
      h('button', { class: 'small', 'data-page': 'prev', disabled: !page.prev, onclick: () => go({ from: 'before', cursor: page.prev! }) }, '‹ Prev'),
      h('span', { class: 'range', id: 'jobs-range' }, range),
      h('span', { class: 'small-text' }, where || ' '),
      h('button', { class: 'small', 'data-page': 'next', disabled: !page.next, onclick: () => go({ from: 'after', cursor: page.next! }) }, 'Next ›'),
      h('button', { class: 'small', 'data-page': 'last', disabled: !page.next, onclick: () => go({ from: 'last' }) }, 'Last »'),
      size,
    );
  };

  // Where the new page's first row stands, from where the shown one stood and how we moved.
  const placeOf = (page: JobPage, start: Start): number | null => {
    if (start.from === 'first' || !page.prev) return 0;
    if (start.from === 'last') return page.total_exact ? page.total - page.jobs.length : null;
    if (firstIndex === null || !shown) return null;
    return start.from === 'after' ? firstIndex + shown.jobs.length : Math.max(0, firstIndex - page.jobs.length);
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
        page: filters.start.from === 'last' ? 'last' : null,
        after: filters.start.from === 'after' ? filters.start.cursor : null,
        before: filters.start.from === 'before' ? filters.start.cursor : null,
      });
      if (disposed || number !== requestNumber) return;
      clear(errorSlot);
      // A refetch of the same page (an event) keeps its place; a move computes the new one.
      firstIndex = moved ? placeOf(page, filters.start) : page.prev ? firstIndex : 0;
      moved = false;
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
      const bound = page.total_exact ? '' : ' (counted up to this bound; model and subset filters are not counted further)';
      status.textContent = `${totalText(page)} jobs${bound} · fetched in ${(performance.now() - started).toFixed(0)} ms`;
    } catch (e) {
      if (disposed || number !== requestNumber) return;
      if (e instanceof ApiError && e.status === 400 && (filters.start.from === 'after' || filters.start.from === 'before')) {
        // A cursor from an old link or another filter: start again at the first page.
        filters.start = { from: 'first' };
        history.replaceState(null, '', filtersHash(filters));
        void load().then(() => errorSlot.append(errorBox(`${errorText(e)} — showing the first page`)));
        return;
      }
      clear(errorSlot);
      errorSlot.append(errorBox(errorText(e)));
      status.textContent = '';
    }
    markReady();
  };

  const refetch = throttle(() => void load(), 1000);

  function update() {
    moved = true;
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
