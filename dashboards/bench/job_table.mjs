// Job-table benchmark: fills a real coordinator with 100,000 jobs (one sweep: 5 models x 20
// subset sizes x 1,000 seeds) and measures, in headless chromium, the job table's time to
// interactive (navigation start to the first page of rows drawn) and the time each paging,
// sorting and filtering step takes to redraw.
//
//   node bench/job_table.mjs [--jobs 100000] [--runs 5]
// Environment as for the browser tests (VITSCALE_COORDINATOR, CHROMIUM).

import { Browser, Coordinator, missingPrerequisites } from '../test/harness.mjs';

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const kModels = ['ViT-Mu/7', 'ViT-Mu/4', 'R11s', 'R20s', 'R11s+ViT-Mu/4'];
const kSubsets = Array.from({ length: 20 }, (_, i) => (i + 1) * 1000);
const jobs = option('jobs', 100_000);
const runs = option('runs', 5);
const seeds = Math.ceil(jobs / (kModels.length * kSubsets.length));

const missing = missingPrerequisites();
if (missing.length) {
  console.error(`bench: cannot run: ${missing.join('; ')}`);
  process.exit(2);
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (ms) => `${ms.toFixed(0)} ms`;

const coordinator = await Coordinator.start({ openRead: true });
let browser;
try {
  const yaml = `name: bench-100k
recipe: small-images
pretrain:
  dataset: fashion-mnist/0-4
  epochs: 1
grid:
  model: [${kModels.join(', ')}]
  subset: [${kSubsets.join(', ')}]
  seed: [${Array.from({ length: seeds }, (_, i) => i).join(', ')}]
`;
  let t = performance.now();
  const submitted = (await coordinator.call('POST', 'sweeps', { yaml })).body;
  const submitMs = performance.now() - t;
  const total = (await coordinator.get('jobs?limit=1')).total;
  console.log(`submitted ${submitted.jobs_added} jobs in ${fmt(submitMs)}; the coordinator holds ${total}`);

  t = performance.now();
  await coordinator.get('jobs?limit=50&page=last');
  console.log(`API alone, last page: ${fmt(performance.now() - t)}`);

  browser = await Browser.start();
  const page = browser.page;
  await page.goto(`${coordinator.url}/#/jobs`);
  await page.waitForSelector('body[data-page-ready]');

  // Time to interactive: a fresh load of the page, navigation start to rows drawn.
  const loads = [];
  for (let i = 0; i < runs; i++) {
    await page.reload();
    await page.waitForSelector('body[data-page-ready]');
    loads.push(Number(await page.getAttribute('body', 'data-page-ready')));
  }
  const rows = await page.$$eval('#jobs-table tbody tr[data-job]', (r) => r.length);
  const range = await page.textContent('#jobs-range');

  // One step: the time from the click to the redrawn table.
  const step = async (action, until) => {
    const times = [];
    for (let i = 0; i < runs; i++) {
      await page.evaluate(() => document.body.removeAttribute('data-page-ready'));
      const start = await page.evaluate(() => performance.now());
      await action(i);
      await page.waitForSelector('body[data-page-ready]');
      if (until) await page.waitForFunction(until);
      times.push(Number(await page.getAttribute('body', 'data-page-ready')) - start);
    }
    return times;
  };
  const next = await step(() => page.click('button[data-page="next"]'));
  const last = await step(async (i) => {
    await page.click(i % 2 ? 'button[data-page="first"]' : 'button[data-page="last"]');
  });
  const sort = await step(() => page.click('th[data-sort="model"]'));
  const filter = await step(() => page.click('input[data-state-filter="pending"]'));

  console.log(`\njob table with ${total.toLocaleString('en-US')} jobs (headless chromium, median of ${runs}):`);
  console.log(`  time to interactive (load to first ${rows} rows, "${range}"): ${fmt(median(loads))}  [${loads.map(fmt).join(', ')}]`);
  console.log(`  next page:                   ${fmt(median(next))}`);
  console.log(`  first/last page:             ${fmt(median(last))}`);
  console.log(`  sort by model (asc/desc):    ${fmt(median(sort))}`);
  console.log(`  filter state=pending on/off: ${fmt(median(filter))}`);
  if (browser.errors.length) console.log(`  page errors: ${browser.errors.join('; ')}`);
} finally {
  await browser?.close();
  await coordinator.close();
}
