// The views of bench/scale/run.sh, timed on a coordinator started on a filled state dir: the
// restart (process start to the first answered /api/v1/health), its resident memory, the API's
// job list, filters, sorts, detail, study and export, and the same views in the dashboard in
// headless chromium (as dashboards/bench/job_table.mjs does). Prints one JSON object per line.
//
//   node bench/scale/views.mjs --state-dir DIR --study scale-000 [--runs 5] [--label 1M]
// Environment as for the dashboard's browser tests (VITSCALE_COORDINATOR, CHROMIUM).

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Browser, coordinatorBinary, dashboardDir, freePort, missingPrerequisites } from '../../dashboards/test/harness.mjs';

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const stateDir = option('state-dir');
const study = option('study', 'scale-000');
const runs = Number(option('runs', 5));
const label = option('label', '');
if (!stateDir) {
  console.error('usage: node bench/scale/views.mjs --state-dir DIR [--study NAME] [--runs N] [--label L]');
  process.exit(2);
}
const missing = missingPrerequisites();
if (missing.length) {
  console.error(`views.mjs: cannot run: ${missing.join('; ')}`);
  process.exit(2);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const report = (kind, view, times, extra = {}) =>
  console.log(JSON.stringify({ label, kind, view, median_ms: Number(median(times).toFixed(1)), runs: times.map((t) => Number(t.toFixed(1))), ...extra }));

// --- Restart: spawn to the first answered health check, polled every 5 ms. ------------------
const port = await freePort();
const url = `http://127.0.0.1:${port}`;
const started = performance.now();
const coordinator = spawn(coordinatorBinary, ['--state-dir', stateDir, '--listen', `127.0.0.1:${port}`, '--open-read', '--dashboard', path.join(dashboardDir, 'dist')], { stdio: ['ignore', 'ignore', 'pipe'] });
let log = '';
coordinator.stderr.on('data', (d) => (log += d));
let exited = null;
coordinator.once('exit', (code) => (exited = code));
for (;;) {
  if (exited !== null) {
    console.error(`views.mjs: the coordinator exited with ${exited}:\n${log}`);
    process.exit(1);
  }
  try {
    if ((await fetch(`${url}/api/v1/health`)).ok) break;
  } catch {
    // not listening yet
  }
  if (performance.now() - started > 120_000) {
    console.error(`views.mjs: no answer from the coordinator in 120 s:\n${log}`);
    process.exit(1);
  }
  await sleep(5);
}
report('restart', 'process start to first answer', [performance.now() - started]);

const rss = () => {
  const status = fs.readFileSync(`/proc/${coordinator.pid}/status`, 'utf8');
  const kb = (key) => Number(status.match(new RegExp(`${key}:\\s+(\\d+)`))[1]);
  // RssFile is the database's pages mapped in (the system's file cache, shared, not the
  // coordinator's own); RssAnon its own memory, SQLite's page cache included.
  return { rss_mib: Number((kb('VmRSS') / 1024).toFixed(1)), peak_mib: Number((kb('VmHWM') / 1024).toFixed(1)),
    anon_mib: Number((kb('RssAnon') / 1024).toFixed(1)), file_mib: Number((kb('RssFile') / 1024).toFixed(1)) };
};
console.log(JSON.stringify({ label, kind: 'memory', view: 'after restart', ...rss() }));

let browser;
try {
  // --- API. ----------------------------------------------------------------------------------
  const get = async (apiPath) => {
    const response = await fetch(`${url}/api/v1/${apiPath}`);
    const text = await response.text();
    if (!response.ok) throw new Error(`GET ${apiPath}: ${response.status} ${text.slice(0, 300)}`);
    return text;
  };
  const timeApi = async (view, apiPath) => {
    const times = [];
    let bytes = 0;
    for (let i = 0; i < runs; i++) {
      const t = performance.now();
      bytes = (await get(apiPath)).length;
      times.push(performance.now() - t);
    }
    report('api', view, times, { bytes });
  };
  const first = JSON.parse(await get('jobs?limit=50'));
  const second = JSON.parse(await get(`jobs?limit=50&after=${first.next}`));
  const job = first.jobs[0].id;
  const sweeps = JSON.parse(await get('sweeps')).sweeps;
  const middleSweep = sweeps[Math.floor(sweeps.length / 2)].name;
  console.log(JSON.stringify({ label, kind: 'size', view: 'jobs', total: first.total, sweeps: sweeps.length }));

  await timeApi('first page', 'jobs?limit=50');
  await timeApi('next page', `jobs?limit=50&after=${first.next}`);
  await timeApi('previous page', `jobs?limit=50&before=${second.prev}`);
  await timeApi('last page', 'jobs?limit=50&page=last');
  await timeApi('filter state=pending', 'jobs?limit=50&state=pending');
  await timeApi('filter state=succeeded, last page', 'jobs?limit=50&state=succeeded&page=last');
  await timeApi('filter state=failed,cancelled', 'jobs?limit=50&state=failed,cancelled');
  await timeApi('filter model=R20s', 'jobs?limit=50&model=R20s');
  await timeApi('filter subset=5000', 'jobs?limit=50&subset=5000');
  await timeApi(`filter sweep (${middleSweep})`, `jobs?limit=50&sweep=${middleSweep}`);
  await timeApi('filter sweep, last page', `jobs?limit=50&sweep=${middleSweep}&page=last`);
  await timeApi('filter unknown model', 'jobs?limit=50&model=ViT-Nope');
  for (const sort of ['priority', 'model', 'subset', 'state', 'updated']) {
    await timeApi(`sort ${sort}`, `jobs?limit=50&sort=${sort}`);
    await timeApi(`sort ${sort} desc, last page`, `jobs?limit=50&sort=${sort}&order=desc&page=last`);
  }
  await timeApi('state=pending sorted by updated desc', 'jobs?limit=50&state=pending&sort=updated&order=desc');
  await timeApi('model=R20s sorted by subset desc', 'jobs?limit=50&model=R20s&sort=subset&order=desc');
  await timeApi('sweep sorted by model', `jobs?limit=50&sweep=${middleSweep}&sort=model`);
  await timeApi('job detail', `jobs/${job}`);
  await timeApi('sweeps list', 'sweeps');
  // The study: its summary and plot points with the first page of rows, then pages of rows by
  // cursor (a middle one, the last, the one before the last), and the whole table as CSV.
  await timeApi(`study of ${study} (summary, points, first page)`, `study/${study}`);
  const studyFirst = JSON.parse(await get(`study/${study}`));
  const studyLast = JSON.parse(await get(`study/${study}/rows?page=last`));
  await timeApi(`study of ${study}: next page`, `study/${study}/rows?after=${studyFirst.next}`);
  await timeApi(`study of ${study}: last page`, `study/${study}/rows?page=last`);
  await timeApi(`study of ${study}: page before the last`, `study/${study}/rows?before=${studyLast.prev}`);
  await timeApi(`export csv of ${study}`, `export?sweep=${study}&format=csv`);
  // The scaling-law fits: the first call fits (seconds of the server thread for 10,000 jobs);
  // the coordinator keeps them until the sweep's table changes, so later calls only check that.
  const fitted = performance.now();
  await get(`study/${study}/fits`);
  report('api', `fits of ${study}: first call (fitted)`, [performance.now() - fitted]);
  await timeApi(`fits of ${study}: again (kept)`, `study/${study}/fits`);

  // --- Dashboard. ----------------------------------------------------------------------------
  browser = await Browser.start();
  const page = browser.page;
  await page.goto(`${url}/#/jobs`);
  await page.waitForSelector('body[data-page-ready]', { timeout: 60_000 });
  const readyAt = async () => Number(await page.getAttribute('body', 'data-page-ready'));

  const loads = [];
  for (let i = 0; i < runs; i++) {
    await page.reload();
    await page.waitForSelector('body[data-page-ready]', { timeout: 60_000 });
    loads.push(await readyAt());
  }
  report('dashboard', 'jobs: time to interactive', loads);

  // One step: from the action to the redrawn view (the page marks itself ready after drawing).
  // `prepare`, untimed, opens the view the step starts from.
  const step = async (view, action, prepare) => {
    const times = [];
    for (let i = 0; i < runs; i++) {
      if (prepare) await prepare(i);
      await page.evaluate(() => document.body.removeAttribute('data-page-ready'));
      const start = await page.evaluate(() => performance.now());
      await action(i);
      await page.waitForSelector('body[data-page-ready]', { timeout: 60_000 });
      times.push((await readyAt()) - start);
    }
    report('dashboard', view, times);
  };
  const route = (hash) => page.evaluate((h) => { location.hash = h; }, hash);
  const open = (hash) => browser.open(url, hash);
  const click = (selector) => page.click(selector);
  await step('jobs: next page', () => click('button[data-page="next"]'), () => open('/jobs'));
  await step('jobs: previous page', () => click('button[data-page="prev"]'), async () => {
    await open('/jobs');
    await page.evaluate(() => document.body.removeAttribute('data-page-ready'));
    await click('button[data-page="next"]');
    await page.waitForSelector('body[data-page-ready]');
  });
  await step('jobs: last page', () => click('button[data-page="last"]'), () => open('/jobs'));
  await step('jobs: first page from the last', () => click('button[data-page="first"]'), () => open('/jobs?page=last'));
  await step('jobs: filter state=pending', () => click('input[data-state-filter="pending"]'), () => open('/jobs'));
  await step('jobs: filter state=succeeded,failed', async () => {
    await click('input[data-state-filter="failed"]');
  }, () => open('/jobs?state=succeeded'));
  const type = async (label, value) => {
    await page.fill(`input[aria-label="${label}"]`, value);
    await page.press(`input[aria-label="${label}"]`, 'Enter');
  };
  await step('jobs: filter model', () => type('model', 'R20s'), () => open('/jobs'));
  await step('jobs: filter subset', () => type('subset size', '5000'), () => open('/jobs'));
  await step('jobs: filter sweep', () => type('sweep', middleSweep), () => open('/jobs'));
  for (const sort of ['priority', 'model', 'subset', 'state', 'updated']) {
    await step(`jobs: sort by ${sort}`, () => click(`th[data-sort="${sort}"]`), () => open('/jobs'));
    await step(`jobs: sort by ${sort} desc`, () => click(`th[data-sort="${sort}"]`), () => open(`/jobs?sort=${sort}`));
  }
  await step('jobs: sort by updated desc within state=pending', () => click('th[data-sort="updated"]'), () => open('/jobs?state=pending&sort=updated'));
  await step('job detail page', () => route(`#/jobs/${job}`), () => open('/jobs'));
  await step(`study page of ${study}`, () => route(`#/study/${study}`), () => open('/jobs'));
  // The study table's pages: the action to the redrawn range (the page stays ready), once the
  // page has settled: its fits drawn (the coordinator reads the whole table on its server thread
  // to check the kept fits, which holds up a page asked for meanwhile) and its schedule line.
  const changedRange = (before) => page.waitForFunction((text) => document.querySelector('#study-range')?.textContent !== text, before, { timeout: 60_000 })
    .catch(async (e) => {
      const shown = await page.evaluate(() => document.querySelector('#study-range')?.textContent + ' | ' + document.body.innerText.slice(0, 400));
      throw new Error(`the study table did not page: ${shown}; page errors: ${browser.errors.slice(-3).join('; ')}; ${e.message}`);
    });
  const studyStep = async (view, button, prepare) => {
    const times = [];
    for (let i = 0; i < runs; i++) {
      await prepare();
      const before = await page.textContent('#study-range');
      const start = await page.evaluate(() => performance.now());
      await click(`button[data-study-page="${button}"]:not([disabled])`);
      await changedRange(before);
      times.push((await page.evaluate(() => performance.now())) - start);
    }
    report('dashboard', view, times);
  };
  const openStudy = async () => {
    await open(`/study/${study}`);
    await page.waitForSelector('#study-range');
    await page.waitForSelector('#fits-card[data-fits="drawn"], #fits-card[data-fits="failed"]', { timeout: 60_000 });
    await page.waitForFunction(() => !/^loading/.test(document.querySelector('#timeline-summary')?.textContent ?? 'loading'), null, { timeout: 60_000 });
  };
  await studyStep(`study page of ${study}: next page`, 'next', openStudy);
  await studyStep(`study page of ${study}: last page`, 'last', openStudy);
  await studyStep(`study page of ${study}: previous page from the last`, 'prev', async () => {
    await openStudy();
    const before = await page.textContent('#study-range');
    await click('button[data-study-page="last"]:not([disabled])');
    await changedRange(before);
  });
  if (browser.errors.length) console.log(JSON.stringify({ label, kind: 'errors', view: 'page errors', errors: browser.errors.slice(0, 5) }));
  console.log(JSON.stringify({ label, kind: 'memory', view: 'after the views', ...rss() }));
} finally {
  await browser?.close();
  coordinator.kill('SIGTERM');
}
