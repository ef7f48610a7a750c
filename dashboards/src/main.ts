// The dashboard's shell: navigation, the token control, the live indicator and the hash router.
// Routes (hash, so the coordinator serves one index.html for all of them):
//   #/sweeps                 sweeps overview
//   #/jobs?sweep=&state=...  job table with filters, sort and paging in the URL
//   #/jobs/<id>              job detail
//   #/cluster                agents and utilisation
//   #/study/<sweep>          Fig. 5, Fig. 4 and the Table 6 table of one sweep
// Each page mounts into #page and gets the event stream's events until it is unmounted.

import { getToken, setToken } from './api';
import { clear, errorBox, h } from './dom';
import { events, type CoordinatorEvent } from './events';
import { errorText, markReady, type Page, type PageContext } from './page';
import { mountSweeps } from './pages/sweeps';
import { mountJobs } from './pages/jobs';
import { notFound } from './page';

type Mount = (root: HTMLElement, context: PageContext, ...params: string[]) => Page;

interface Route {
  pattern: RegExp;
  nav: string;
  mount: Mount;
}

// A page whose code (and ECharts with it) is fetched when it is first opened: the pages with
// charts, kept out of what the job table and the sweeps list load (build.mjs splits them).
function later(load: () => Promise<Mount>): Mount {
  return (root, context, ...params) => {
    let page: Page | null = null;
    let disposed = false;
    load().then(
      (mount) => {
        if (!disposed) page = mount(root, context, ...params);
      },
      (e: unknown) => {
        if (disposed) return;
        root.append(errorBox(`cannot load this page's code: ${errorText(e)}`));
        markReady();
      },
    );
    return {
      onEvent: (event) => page?.onEvent?.(event),
      dispose: () => {
        disposed = true;
        page?.dispose();
      },
    };
  };
}

const loadJob = () => import('./pages/job').then((m) => m.mountJob);
const loadCluster = () => import('./pages/cluster').then((m) => m.mountCluster);
const loadStudy = () => import('./pages/study').then((m) => m.mountStudy);
const mountJob = later(loadJob);
const mountCluster = later(loadCluster);
const mountStudy = later(loadStudy);

// Once the first page is up and the browser idle, the chart pages' code is loaded beforehand,
// so that the first job or study opened does not wait for ECharts. A failure here is left to
// the page's own load to report when it is opened.
function loadChartPagesWhenIdle(): void {
  const load = () => {
    for (const chunk of [loadJob, loadCluster, loadStudy]) chunk().catch(() => undefined);
  };
  const whenIdle = () =>
    'requestIdleCallback' in window ? requestIdleCallback(load, { timeout: 5000 }) : setTimeout(load, 500);
  window.addEventListener('load', whenIdle, { once: true });
}

const routes: Route[] = [
  { pattern: /^\/?$/, nav: 'sweeps', mount: mountSweeps },
  { pattern: /^\/sweeps$/, nav: 'sweeps', mount: mountSweeps },
  { pattern: /^\/jobs$/, nav: 'jobs', mount: mountJobs },
  { pattern: /^\/jobs\/([^/]+)$/, nav: 'jobs', mount: mountJob },
  { pattern: /^\/cluster$/, nav: 'cluster', mount: mountCluster },
  { pattern: /^\/study$/, nav: 'study', mount: mountStudy },
  { pattern: /^\/study\/([^/]+)$/, nav: 'study', mount: mountStudy },
];

let current: Page | null = null;

function parseHash(): { path: string; query: URLSearchParams } {
  const hash = location.hash.replace(/^#/, '');
  const [path, qs] = hash.split('?', 2);
  return { path: path || '/', query: new URLSearchParams(qs ?? '') };
}

function route(): void {
  const root = document.getElementById('page')!;
  current?.dispose();
  current = null;
  clear(root);
  document.body.removeAttribute('data-page-ready');
  const { path, query } = parseHash();
  const context: PageContext = { query };
  for (const r of routes) {
    const match = r.pattern.exec(path);
    if (!match) continue;
    highlightNav(r.nav);
    current = r.mount(root, context, ...match.slice(1).map(decodeURIComponent));
    return;
  }
  highlightNav('');
  current = notFound(root, `There is no page at #${path}.`, 'Go to the sweeps overview', '#/sweeps');
}

function highlightNav(name: string): void {
  for (const a of document.querySelectorAll<HTMLAnchorElement>('nav a[data-nav]')) {
    a.classList.toggle('active', a.dataset.nav === name);
  }
}

function tokenControl(): HTMLElement {
  const label = h('span', { class: 'token-state' });
  const refresh = () => {
    label.textContent = getToken() ? 'token set' : 'read-only';
    label.title = getToken()
      ? 'Actions send the token kept in this browser'
      : 'No token: reading works when the coordinator allows it; actions are refused';
  };
  const input = h('input', {
    type: 'password',
    placeholder: 'token from <state dir>/token',
    autocomplete: 'off',
    'aria-label': 'coordinator token',
  });
  const form = h(
    'form',
    { class: 'token-form', hidden: true },
    input,
    h('button', { type: 'submit', class: 'small' }, 'Save'),
    h('button', { type: 'button', class: 'small', onclick: () => save('') }, 'Forget'),
  );
  const save = (value: string) => {
    setToken(value.trim());
    input.value = '';
    form.hidden = true;
    refresh();
    events.restart();
    route();
  };
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    save(input.value);
  });
  const toggle = h('button', { class: 'small', id: 'token-button', onclick: () => {
    form.hidden = !form.hidden;
    if (!form.hidden) input.focus();
  } }, 'Token');
  refresh();
  return h('div', { class: 'token' }, label, toggle, form);
}

function liveIndicator(): HTMLElement {
  const dot = h('span', { class: 'live', id: 'live', 'data-state': 'connecting' }, 'connecting');
  events.onState((state, detail) => {
    dot.dataset.state = state;
    dot.textContent = state === 'live' ? 'live' : state;
    dot.title = detail || (state === 'live' ? 'receiving the coordinator\'s events' : '');
  });
  return dot;
}

function shell(): void {
  const nav = h(
    'nav',
    null,
    h('a', { href: '#/sweeps', class: 'brand' }, 'vitscale'),
    h('a', { href: '#/sweeps', 'data-nav': 'sweeps' }, 'Sweeps'),
    h('a', { href: '#/jobs', 'data-nav': 'jobs' }, 'Jobs'),
    h('a', { href: '#/cluster', 'data-nav': 'cluster' }, 'Cluster'),
    h('a', { href: '#/study', 'data-nav': 'study' }, 'Study'),
    h('span', { class: 'spacer' }),
    liveIndicator(),
    tokenControl(),
  );
  document.body.append(h('header', { class: 'top' }, nav), h('main', { id: 'page' }));
}

shell();
events.subscribe((event: CoordinatorEvent) => current?.onEvent?.(event));
events.start();
window.addEventListener('hashchange', route);
route();
loadChartPagesWhenIdle();
