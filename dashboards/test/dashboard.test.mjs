// Browser tests of the dashboard against a real coordinator: the test starts
// vitscale-coordinator on a free loopback port with a fresh state dir, fills it through the API
// (a sweep, an agent that runs jobs and reports metrics, results and exits), and checks the pages
// in headless chromium. Screenshots go to $VITSCALE_ARTIFACTS (default build/dashboard-artifacts).

import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { Browser, Coordinator, missingPrerequisites } from './harness.mjs';
import { fillStudy, kJobCount, kModels, kSweepName, kFewShot, writeInspection } from './fill.mjs';

const missing = missingPrerequisites();

describe('dashboard against a real coordinator', { skip: missing.length ? missing.join('; ') : false }, () => {
  let coordinator;
  let browser;
  let study;

  before(async () => {
    coordinator = await Coordinator.start({ openRead: true });
    study = await fillStudy(coordinator);
    browser = await Browser.start();
  });

  after(async () => {
    await study?.agent.stopHeartbeat();
    await browser?.close();
    await coordinator?.close();
  });

  const rowIds = () => browser.page.$$eval('#jobs-table tbody tr[data-job]', (rows) => rows.map((r) => r.dataset.job));
  const rangeText = () => browser.page.textContent('#jobs-range');

  test('the job table shows the right rows and pages', async () => {
    const page = browser.page;
    await browser.open(coordinator.url, `/jobs?sweep=${kSweepName}`);
    const first = await coordinator.get(`jobs?sweep=${kSweepName}&limit=50`);
    assert.equal(first.total, kJobCount);
    assert.deepEqual(await rowIds(), first.jobs.map((j) => j.id));
    assert.equal(await rangeText(), `1–50 of ${kJobCount}`);
    await browser.screenshot('jobs-page-1');

    await page.click('button[data-page="next"]');
    await page.waitForFunction((n) => document.querySelector('#jobs-range')?.textContent?.startsWith('51–'), kJobCount);
    const second = await coordinator.get(`jobs?sweep=${kSweepName}&limit=50&after=${first.next}`);
    assert.match(page.url(), new RegExp(`after=${first.next}`));
    assert.equal(second.next, null);
    assert.deepEqual(await rowIds(), second.jobs.map((j) => j.id));
    assert.equal(await rangeText(), `51–${kJobCount} of ${kJobCount}`);
    const all = new Set([...first.jobs, ...second.jobs].map((j) => j.id));
    assert.equal(all.size, kJobCount);
    assert.ok(study.submitted.jobs.every((id) => all.has(id)), 'every submitted job is on one of the pages');

    // Filter by state: exactly the jobs the agent finished.
    await page.check('input[data-state-filter="succeeded"]');
    await page.waitForFunction((n) => document.querySelector('#jobs-range')?.textContent?.endsWith(` of ${n}`), study.done.length);
    assert.deepEqual(new Set(await rowIds()), new Set(study.done.map((d) => d.job)));
    assert.match(page.url(), /state=succeeded/);
    await page.uncheck('input[data-state-filter="succeeded"]');

    // Filter by model and sort by subset, descending.
    await page.fill('input[aria-label="model"]', kModels[2]);
    await page.press('input[aria-label="model"]', 'Enter');
    const perModel = kJobCount / kModels.length;
    await page.waitForFunction((n) => document.querySelector('#jobs-range')?.textContent?.endsWith(` of ${n}`), perModel);
    await page.click('th[data-sort="subset"]');
    await page.click('th[data-sort="subset"]');
    await page.waitForFunction(() => location.hash.includes('order=desc'));
    await page.waitForFunction(() => document.querySelector('#jobs-table tbody tr td:nth-child(5)')?.textContent === '20k');
    const expected = await coordinator.get(`jobs?sweep=${kSweepName}&model=${encodeURIComponent(kModels[2])}&sort=subset&order=desc`);
    assert.deepEqual(await rowIds(), expected.jobs.map((j) => j.id));
    const models = await page.$$eval('#jobs-table tbody tr td:nth-child(2)', (cells) => cells.map((c) => c.textContent));
    assert.deepEqual([...new Set(models)], [kModels[2]]);
    await browser.screenshot('jobs-filtered');
  });

  test('the job table pages by cursor: first, next, previous, last, and a forged cursor', async () => {
    const page = browser.page;
    const base = `jobs?sweep=${kSweepName}&sort=subset&order=desc&limit=50`;
    await browser.open(coordinator.url, `/jobs?sweep=${kSweepName}&sort=subset&order=desc`);
    const first = await coordinator.get(base);
    assert.deepEqual(await rowIds(), first.jobs.map((j) => j.id));
    assert.equal(first.prev, null);
    assert.ok(await page.isDisabled('button[data-page="prev"]'));

    // Last: the API's last page, drawn with its place in the list.
    await page.click('button[data-page="last"]');
    await page.waitForFunction(() => location.hash.includes('page=last'));
    const last = await coordinator.get(`${base}&page=last`);
    await page.waitForFunction((id) => document.querySelector('#jobs-table tbody tr[data-job]')?.getAttribute('data-job') === id, last.jobs[0].id);
    assert.deepEqual(await rowIds(), last.jobs.map((j) => j.id));
    assert.equal(await rangeText(), `${kJobCount - last.jobs.length + 1}–${kJobCount} of ${kJobCount}`);
    assert.equal(last.next, null);
    assert.ok(await page.isDisabled('button[data-page="next"]'));
    assert.deepEqual(last.jobs.map((j) => j.id), [...first.jobs, ...(await coordinator.get(`${base}&after=${first.next}`)).jobs].slice(-last.jobs.length).map((j) => j.id));

    // Previous from the last page: the full page before it (here the first page again).
    await page.click('button[data-page="prev"]');
    await page.waitForFunction(() => location.hash.includes('before='));
    const previous = await coordinator.get(`${base}&before=${last.prev}`);
    await page.waitForFunction((id) => document.querySelector('#jobs-table tbody tr[data-job]')?.getAttribute('data-job') === id, previous.jobs[0].id);
    assert.deepEqual(await rowIds(), previous.jobs.map((j) => j.id));
    assert.equal(previous.jobs.length, 50);

    // A smaller page size, walked forward by next cursors, sees every job once, in order.
    await page.selectOption('select[aria-label="rows per page"]', '100');
    await page.waitForFunction(() => location.hash.includes('limit=100'));
    const seen = [];
    let cursor = null;
    do {
      const p = await coordinator.get(`jobs?sweep=${kSweepName}&sort=subset&order=desc&limit=7${cursor ? `&after=${cursor}` : ''}`);
      seen.push(...p.jobs);
      cursor = p.next;
    } while (cursor);
    assert.equal(seen.length, kJobCount);
    assert.equal(new Set(seen.map((j) => j.id)).size, kJobCount);
    for (let i = 1; i < seen.length; i++) assert.ok(seen[i - 1].subset_size >= seen[i].subset_size);

    // A forged cursor in a link: the API refuses it (400) and the page shows the first page.
    const forged = await coordinator.call('GET', `${base}&after=${'ab'.repeat(20)}`, { expect: null });
    assert.equal(forged.status, 400);
    const foreign = await coordinator.call('GET', `jobs?sweep=${kSweepName}&sort=model&after=${first.next}`, { expect: null });
    assert.equal(foreign.status, 400, 'a cursor made for another order is refused');
    const errorsBefore = browser.errors.length;
    await browser.open(coordinator.url, `/jobs?sweep=${kSweepName}&sort=subset&order=desc&after=${'ab'.repeat(20)}`);
    await page.waitForSelector('.error');
    await page.waitForFunction(() => !location.hash.includes('after='));
    assert.deepEqual(await rowIds(), first.jobs.map((j) => j.id));
    assert.match(await page.textContent('.error'), /cursor/);
    await browser.screenshot('jobs-forged-cursor');
    // The browser logged the refused request; that one is expected, nothing else is.
    const logged = browser.errors.splice(errorsBefore);
    assert.ok(logged.length > 0 && logged.every((e) => /status of 400/.test(e)), JSON.stringify(logged));
  });

  test('the study plot has one point per finished job at the right x', async () => {
    const page = browser.page;
    await browser.open(coordinator.url, `/study/${kSweepName}`);
    await page.waitForSelector('#fits-card[data-fits="drawn"]');
    const api = await coordinator.get(`study/${kSweepName}`);
    assert.ok(api.columns.includes(`${kFewShot} 5-shot`), `columns ${JSON.stringify(api.columns)}`);
    for (const d of study.done) {
      const row = api.rows.find((r) => r.job === d.job);
      assert.ok(row && !row.planned, `study row of finished job ${d.job}`);
      assert.ok(Math.abs(row.exaflops / d.exaflops - 1) < 1e-9, `exaflops ${row.exaflops} vs ledger ${d.exaflops}`);
    }
    // The points as drawn: every scatter symbol in the chart's SVG, mapped back through the
    // chart's own axes to data coordinates.
    const drawnPoints = () => page.evaluate(() => {
      const chart = window.vitscaleCharts['study-compute'];
      const svg = document.querySelector('[data-chart="study-compute"] svg');
      const colours = chart.getOption().series.map((s) => s.color);
      const points = [];
      for (const path of svg.querySelectorAll('path[transform^="matrix"]')) {
        if (!colours.includes(path.getAttribute('fill'))) continue;
        const m = path.getAttribute('transform').match(/matrix\(([^)]*)\)/)[1].split(',').map(Number);
        const [x, y] = chart.convertFromPixel({ gridIndex: 0 }, [m[4], m[5]]);
        points.push({ x, y, fill: path.getAttribute('fill') });
      }
      // The legend draws one symbol per series too; keep the ones inside the plot.
      return points.filter((p) => Number.isFinite(p.x) && p.x > 0 && p.y > 0 && p.y <= 100);
    });
    const near = (p, e) => Math.abs(Math.log10(p.x) - Math.log10(e.x)) < 0.02 && Math.abs(p.y - e.y) < 0.5;
    const axisName = () => page.evaluate(() => window.vitscaleCharts['study-compute'].getOption().xAxis[0].name);
    // The unit of the study's scale: the largest in which its largest value is at least 1 (a
    // laptop study is not "1e-7 exaFLOPs").
    const unitFor = (units, value) => units.find(([, per]) => value / per >= 1) ?? units[units.length - 1];
    const flopsUnit = unitFor([['exaFLOPs', 1], ['PFLOPs', 1e-3], ['TFLOPs', 1e-6], ['GFLOPs', 1e-9]],
      Math.max(...study.done.map((d) => d.exaflops)));
    assert.equal(await axisName(), `Pretraining compute (${flopsUnit[0]})`);
    const inPlot = await drawnPoints();
    const expected = study.done.map((d) => ({ x: d.exaflops / flopsUnit[1], y: d.accuracy * 100 }));
    const matched = expected.filter((e) => inPlot.some((p) => near(p, e)));
    assert.equal(matched.length, expected.length, `drawn ${JSON.stringify(inPlot)} expected ${JSON.stringify(expected)}`);
    const onPoints = inPlot.filter((p) => expected.some((e) => near(p, e)));
    assert.equal(onPoints.length, study.done.length, 'one point per finished job, no more');
    // The table's compute column: planned jobs too, in the unit of its largest value.
    const tableUnit = unitFor([['exaFLOPs', 1], ['PFLOPs', 1e-3], ['TFLOPs', 1e-6], ['GFLOPs', 1e-9]],
      Math.max(...api.rows.map((r) => r.exaflops)));
    const header = await page.$$eval('#study-table thead th', (cells) => cells.map((c) => c.textContent));
    assert.ok(header.includes(`Compute (${tableUnit[0]})`), `the compute column names its unit: ${JSON.stringify(header)}`);
    const finishedRow = study.done[0];
    const cell = await page.$eval(`#study-table tr[data-job="${finishedRow.job}"] td:nth-last-child(3)`, (td) => td.textContent);
    assert.ok(Math.abs(Number(cell) / (finishedRow.exaflops / tableUnit[1]) - 1) < 0.01, `compute cell ${cell}`);

    // Device time on the same axis where the ledger has it, in its own unit of scale.
    await page.selectOption('#study-axis', 'device');
    await page.waitForFunction(() => location.hash.includes('x=device'));
    const timed = api.rows.filter((r) => !r.planned && r.device_hours > 0 && study.done.some((d) => d.job === r.job));
    assert.equal(timed.length, study.done.length, 'every finished job has device time');
    const timeUnit = unitFor([['device-days', 24], ['device-hours', 1], ['device-minutes', 1 / 60], ['device-seconds', 1 / 3600]],
      Math.max(...timed.map((r) => r.device_hours)));
    assert.equal(await axisName(), `Pretraining device time (${timeUnit[0]})`);
    const timedPoints = await drawnPoints();
    const expectedTimes = timed.map((r) => ({ x: r.device_hours / timeUnit[1], y: study.done.find((d) => d.job === r.job).accuracy * 100 }));
    assert.equal(expectedTimes.filter((e) => timedPoints.some((p) => near(p, e))).length, expectedTimes.length,
      `drawn ${JSON.stringify(timedPoints)} expected ${JSON.stringify(expectedTimes)}`);
    await page.selectOption('#study-axis', 'flops');
    await page.waitForFunction(() => !location.hash.includes('x=device'));
    const axisType = await page.evaluate(() => window.vitscaleCharts['study-compute'].getOption().xAxis[0].type);
    assert.equal(axisType, 'log');
    assert.match(await page.textContent('#study-count'), new RegExp(`${study.done.length} with results plotted`));
    const seriesNames = await page.evaluate(() => window.vitscaleCharts['study-compute'].getOption().series
      .filter((s) => s.type === 'scatter').map((s) => s.name));
    assert.deepEqual(seriesNames, ['ResNet (BiT)', 'Transformer (ViT)', 'Hybrid'], 'one series of points per family');
    await browser.screenshot('study');

    // The plot downloads as SVG and PNG; the table as CSV, Markdown and LaTeX.
    const svg = await downloadText(page, '.chart-card:has([data-chart="study-compute"]) button[data-download="svg"]');
    assert.match(svg, /<svg[\s\S]*<\/svg>/);
    const parseError = await page.evaluate((text) =>
      new DOMParser().parseFromString(text, 'image/svg+xml').querySelector('parsererror')?.textContent ?? '', svg);
    assert.equal(parseError, '', 'the SVG download is well-formed XML');
    assert.equal((svg.match(/<path[^>]*transform="matrix/g) ?? []).length >= study.done.length, true);
    const png = await downloadBytes(page, '.chart-card:has([data-chart="study-compute"]) button[data-download="png"]');
    assert.deepEqual([...png.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47]);
    for (const format of ['csv', 'markdown', 'latex']) {
      const text = await downloadText(page, `button[data-export="${format}"]`);
      const fromApi = (await coordinator.call('GET', `export?sweep=${kSweepName}&format=${format}`)).body;
      assert.equal(text, fromApi, `${format} download`);
    }
  });

  test('the study page draws the coordinator\'s fits, and says where there are too few points', async () => {
    const page = browser.page;
    await browser.open(coordinator.url, `/study/${kSweepName}`);
    await page.waitForSelector('#fits-card[data-fits="drawn"]');
    const fits = await coordinator.get(`study/${kSweepName}/fits`);
    // The fill gives ViT and ResNet 6 finished jobs each and the hybrid 3; one subset size each
    // per model and seed, 3 sizes per model.
    const vit = fits.compute.find((g) => g.family === 'ViT');
    const hybrid = fits.compute.find((g) => g.family === 'hybrid');
    assert.equal(vit.fit.status, 'ok', JSON.stringify(vit.fit));
    assert.equal(hybrid.fit.status, 'too_few_points');
    assert.ok(fits.data_size.every((g) => g.fit.status === 'too_few_points'), 'three sizes cannot fit four parameters');

    // The extrapolated part of the ViT curve, as drawn: its dashed SVG path mapped back through
    // the chart's axes ends where the API's curve ends, a decade beyond the largest compute.
    const vitColor = await page.evaluate(() => window.vitscaleCharts['study-compute'].getOption().series
      .find((s) => s.name === 'Transformer (ViT) extrapolated').color);
    const ends = await page.evaluate((color) => {
      const chart = window.vitscaleCharts['study-compute'];
      const svg = document.querySelector('[data-chart="study-compute"] svg');
      const out = [];
      for (const path of svg.querySelectorAll('path[stroke-dasharray]')) {
        if (path.getAttribute('stroke') !== color || path.getAttribute('fill') !== 'none') continue;
        const numbers = (path.getAttribute('d').match(/-?[0-9.]+(e-?[0-9]+)?/g) ?? []).map(Number);
        if (numbers.length < 4) continue;
        const first = chart.convertFromPixel({ gridIndex: 0 }, [numbers[0], numbers[1]]);
        const last = chart.convertFromPixel({ gridIndex: 0 }, numbers.slice(-2));
        out.push({ first, last });
      }
      return out;
    }, vitColor);
    const curve = vit.fit.curve;
    const end = curve[curve.length - 1];
    // The fits are in exaFLOPs; the axis is in the unit its title names.
    const axisTitle = await page.evaluate(() => window.vitscaleCharts['study-compute'].getOption().xAxis[0].name);
    const per = { exaFLOPs: 1, PFLOPs: 1e-3, TFLOPs: 1e-6, GFLOPs: 1e-9 }[axisTitle.match(/\((\w+)\)$/)[1]];
    assert.ok(per, `a FLOPs unit in the axis title: ${axisTitle}`);
    assert.ok(ends.some((e) => Math.abs(Math.log10(e.last[0]) - Math.log10(end.x / per)) < 0.02 &&
      Math.abs(e.last[1] - (1 - end.error) * 100) < 0.5 &&
      Math.abs(Math.log10(e.first[0]) - Math.log10(vit.fit.extrapolated_from / per)) < 0.02),
    `dashed paths ${JSON.stringify(ends)} vs curve end ${JSON.stringify(end)}`);
    const names = await page.evaluate(() => window.vitscaleCharts['study-compute'].getOption().series.map((s) => s.name));
    assert.ok(names.includes('Transformer (ViT) band'), 'the bootstrap band is drawn');
    assert.ok(!names.some((n) => /^Hybrid (fit|extrapolated|band)/.test(n)), 'no hybrid curve: too few points');
    assert.ok(names.includes('Hybrid frontier'), 'its frontier is still drawn');

    // The table says so, and gives the parameters the API gave.
    const hybridRow = await page.textContent('#fits-table tr[data-fit-figure="compute"][data-fit-group="hybrid"]');
    assert.match(hybridRow, /no curve drawn: 3 points for 4 parameters/);
    const vitCells = await page.$$eval('#fits-table tr[data-fit-figure="compute"][data-fit-group="ViT"] td', (cells) => cells.map((c) => c.textContent));
    assert.equal(Number(vitCells[4]).toPrecision(2), vit.fit.params.b.toPrecision(2), `b in ${JSON.stringify(vitCells)}`);
    await browser.screenshot('study-fits');
    for (const format of ['csv', 'markdown', 'latex']) {
      const text = await downloadText(page, `button[data-fits-export="${format}"]`);
      const fromApi = (await coordinator.call('GET', `export?sweep=${kSweepName}&format=${format}&fits=1&column=average`)).body;
      assert.equal(text, fromApi, `fits ${format} download`);
    }
  });

  test('the study page draws the simulated schedule next to the real one', async () => {
    const page = browser.page;
    await browser.open(coordinator.url, `/study/${kSweepName}`);
    await page.waitForFunction(() => /simulated on/.test(document.querySelector('#timeline-summary')?.textContent ?? ''));
    const timeline = await coordinator.get(`sweeps/${kSweepName}/timeline`);
    assert.equal(timeline.hosts, '1x1:cpu', 'the agent holds one slot now');
    assert.equal(timeline.simulated.jobs.length, kJobCount);
    assert.ok(timeline.simulated.attempts.length >= kJobCount);
    const drawn = await page.evaluate(() => window.vitscaleCharts['study-timeline'].getOption().series
      .map((s) => ({ name: s.name, bars: s.data.length })));
    assert.deepEqual(drawn, [
      { name: 'real', bars: timeline.real.attempts.length },
      { name: 'simulated', bars: timeline.simulated.attempts.length },
    ]);
    // One simulated slot runs one job at a time: the bars never overlap.
    const bars = [...timeline.simulated.attempts].sort((a, b) => a.start - b.start);
    for (let i = 1; i < bars.length; i++) assert.ok(bars[i].start >= bars[i - 1].end - 1e-6);
    const rects = await page.$$eval('[data-chart="study-timeline"] svg path', (paths) => paths.length);
    assert.ok(rects >= timeline.simulated.attempts.length + timeline.real.attempts.length);
    await browser.screenshot('study-timeline');

    // Another cluster from the page: two hosts of two slots run four jobs at once.
    await page.fill('input[aria-label="simulated hosts"]', '2x2:cpu');
    await page.click('form.inline button[type="submit"]');
    await page.waitForFunction(() => /simulated on 2x2:cpu/.test(document.querySelector('#timeline-summary')?.textContent ?? ''));
    // A cluster description the simulation cannot take says what to write.
    await page.fill('input[aria-label="simulated hosts"]', '8:H200');
    await page.click('form.inline button[type="submit"]');
    await page.waitForFunction(() => /--hosts '8:H200'.*HOSTSxDEVICES:KIND/.test(document.querySelector('[data-chart="study-timeline"]')?.closest('.card')?.textContent ?? ''));
    // That 400 was asked for; the page's later checks look for errors nobody asked for.
    const asked = browser.errors.filter((e) => /status of 400/.test(e));
    assert.equal(asked.length, 1, JSON.stringify(browser.errors));
    browser.errors.splice(browser.errors.indexOf(asked[0]), 1);
  });

  test('a metric point posted now shows on the open job page within 2 s', async () => {
    const page = browser.page;
    const running = study.running;
    await browser.open(coordinator.url, `/jobs/${running.job}`);
    await page.waitForSelector('#live[data-state="live"]');
    const before = await page.evaluate(() => window.vitscaleCharts['job-loss'].getOption().series[0].data.length);
    assert.ok(before > 0, 'the loss curve so far is drawn');
    const started = Date.now();
    await study.agent.metrics(running, [{ step: 150, name: 'loss', value: 0.123 }, { step: 150, name: 'lr', value: 4e-4 }]);
    await page.waitForFunction(() => {
      const data = window.vitscaleCharts['job-loss'].getOption().series[0].data;
      const last = data[data.length - 1];
      return last && last[0] === 150 && Math.abs(last[1] - 0.123) < 1e-9;
    }, null, { timeout: 2000 });
    const elapsed = Date.now() - started;
    assert.ok(elapsed < 2000, `shown after ${elapsed} ms`);
    await browser.screenshot('job-live');
  });

  test('a running job names its phase on its page and in the job table, live', async () => {
    const page = browser.page;
    const running = study.running;
    await browser.open(coordinator.url, `/jobs/${running.job}`);
    await page.waitForSelector('#live[data-state="live"]');
    await study.agent.phase(running, { phase: 'few-shot', index: 2, count: 6, detail: `${kFewShot} seed 0` });
    await page.waitForFunction(() => document.querySelector('#job-phase')?.textContent?.includes('few-shot 2/6'), null, { timeout: 5000 });
    assert.equal(await page.textContent('#job-phase'), ` · few-shot 2/6 (${kFewShot} seed 0)`);
    await study.agent.phase(running, { phase: 'fine-tune', index: 3, count: 4, detail: 'lr=0.01' });
    await page.waitForFunction(() => document.querySelector('#job-phase')?.textContent === ' · fine-tune 3/4 (lr=0.01)', null, { timeout: 5000 });
    await browser.screenshot('job-phase');

    await browser.open(coordinator.url, `/jobs?sweep=${kSweepName}&state=running`);
    const cell = `#jobs-table tr[data-job="${running.job}"] .phase`;
    assert.equal(await page.textContent(cell), 'fine-tune 3/4 (lr=0.01)');
    await study.agent.phase(running, { phase: 'inspection', index: 1, count: 4, detail: 'filters' });
    await page.waitForFunction((s) => document.querySelector(s)?.textContent === 'inspection 1/4 (filters)', cell, { timeout: 5000 });
    await browser.screenshot('jobs-phase');
  });

  test('inspection views are drawn on the job page, download, and overlay across jobs', async () => {
    const page = browser.page;
    const models = await Promise.all(study.done.map(async (d) => ({ job: d.job, model: (await coordinator.get(`jobs/${d.job}`)).model })));
    const vit = models.find((m) => m.model === 'ViT-Mu/7');
    const hybrid = models.find((m) => m.model === 'R11s+ViT-Mu/4');
    assert.ok(vit && hybrid, `a finished ViT and hybrid among ${JSON.stringify(models)}`);
    const vitFiles = writeInspection(coordinator, vit.job, { layers: 4, heads: 3, grid: 4, patch: 7, seed: 1 });
    const hybridFiles = writeInspection(coordinator, hybrid.job, { layers: 4, heads: 2, grid: 7, patch: 4, hybrid: true, seed: 2 });

    await browser.open(coordinator.url, `/jobs/${vit.job}`);
    await page.waitForSelector('[data-chart="inspection-distance"]');
    // Every cell of every map is drawn (plus one white background rectangle per figure).
    const rects = (figure) => page.$$eval(`[data-figure="${figure}"] .figure-box rect`, (r) => r.length);
    assert.equal(await rects('inspection-filters'), 8 * 7 * 7 + 1);
    assert.equal(await rects('inspection-similarity'), 16 * 16 + 1);
    assert.equal(await rects('inspection-rollout'), 4 * 16 + 1);
    // The similarity map of patch 0 at patch 0 is the diagonal: 1, the top of the colour scale.
    assert.equal(await page.$eval('[data-figure="inspection-similarity"] .figure-box g rect', (r) => r.getAttribute('fill')), 'rgb(253,231,37)');
    assert.ok(await page.$eval('img[data-file="attention-rollout.png"]', (i) => i.complete && i.naturalWidth === 1));

    // The distances as drawn: each head's dot, mapped back through the chart's axes.
    const drawn = await page.evaluate(() => {
      const chart = window.vitscaleCharts['inspection-distance'];
      const svg = document.querySelector('[data-chart="inspection-distance"] svg');
      const points = [];
      for (const path of svg.querySelectorAll('path[transform^="matrix"]')) {
        const m = path.getAttribute('transform').match(/matrix\(([^)]*)\)/)[1].split(',').map(Number);
        const [x, y] = chart.convertFromPixel({ gridIndex: 0 }, [m[4], m[5]]);
        points.push({ x, y });
      }
      return points.filter((p) => p.x >= 0.5 && p.y >= 0);
    });
    const expected = vitFiles.distance.flatMap((heads, l) => heads.map((v) => ({ x: l + 1, y: v })));
    const missed = expected.filter((e) => !drawn.some((p) => Math.abs(p.x - e.x) < 0.02 && Math.abs(p.y - e.y) < 0.3));
    assert.deepEqual(missed, [], `drawn ${JSON.stringify(drawn)}`);
    await browser.screenshot('job-inspection');

    const svg = await downloadText(page, '[data-figure="inspection-similarity"] button[data-download="svg"]');
    const parseError = await page.evaluate((text) =>
      new DOMParser().parseFromString(text, 'image/svg+xml').querySelector('parsererror')?.textContent ?? '', svg);
    assert.equal(parseError, '', 'the SVG download is well-formed XML');
    assert.equal((svg.match(/<rect /g) ?? []).length, 16 * 16 + 1);
    const png = await downloadBytes(page, '[data-figure="inspection-filters"] button[data-download="png"]');
    assert.deepEqual([...png.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47]);
    const chartSvg = await downloadText(page, '.chart-card:has([data-chart="inspection-distance"]) button[data-download="svg"]');
    assert.match(chartSvg, /<svg[\s\S]*<\/svg>/);

    // Overlay the hybrid's distances: both jobs' dots and per-layer means in one chart.
    await page.fill('input[aria-label="compare with job"]', hybrid.job.slice(0, 10));
    await page.click('button[data-action="compare"]');
    await page.waitForFunction(() => document.querySelector('#compare-message')?.textContent?.startsWith('Overlaid'), null, { timeout: 5000 });
    const series = await page.evaluate(() => window.vitscaleCharts['inspection-compare'].getOption().series.map((s) => ({ type: s.type, data: s.data })));
    const means = (d) => d.map((heads, l) => [l + 1, heads.reduce((a, b) => a + b, 0) / heads.length]);
    assert.deepEqual(series.map((s) => s.type), ['scatter', 'line', 'scatter', 'line']);
    assert.deepEqual(series[1].data, means(vitFiles.distance));
    assert.deepEqual(series[3].data, means(hybridFiles.distance));
    assert.equal(series[2].data.length, 4 * 2);
    assert.match(page.url(), new RegExp(`compare=${hybrid.job.slice(0, 12)}`));
    await browser.screenshot('job-inspection-compare');
    const overlay = await downloadBytes(page, '.chart-card:has([data-chart="inspection-compare"]) button[data-download="png"]');
    assert.deepEqual([...overlay.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47]);

    // The hybrid: no image filters (its embedding is 1x1 over feature maps), the rest drawn.
    await browser.open(coordinator.url, `/jobs/${hybrid.job}`);
    await page.waitForSelector('[data-chart="inspection-distance"]');
    assert.equal(await page.$('[data-figure="inspection-filters"]'), null);
    assert.equal(await rects('inspection-similarity'), 49 * 49 + 1);
    // A job never inspected says how to inspect it.
    const plain = study.done.find((d) => d.job !== vit.job && d.job !== hybrid.job);
    await browser.open(coordinator.url, `/jobs/${plain.job}`);
    assert.match(await page.textContent('#inspection-empty'), /vitscale inspect/);
  });

  test('an action without the token is refused and says so; with it, it works', async () => {
    const page = browser.page;
    const job = study.running.job;
    await browser.open(coordinator.url, `/jobs/${job}`);
    await page.click('button[data-action="cancel"]');
    await page.waitForSelector('#action-message.failed');
    const message = await page.textContent('#action-message');
    assert.match(message, /refused/);
    assert.match(message, /401/);
    assert.equal((await coordinator.get(`jobs/${job}`)).state, 'running', 'a refused cancel changes nothing');
    await browser.screenshot('action-refused');

    await page.click('#token-button');
    await page.fill('.token-form input', coordinator.token());
    await page.click('.token-form button[type="submit"]');
    await page.waitForSelector('body[data-page-ready]');
    await page.fill('input.priority-input', '7');
    await page.click('button[data-action="priority"]');
    await page.waitForSelector('#action-message.ok');
    assert.equal((await coordinator.get(`jobs/${job}`)).priority, 7);
    await page.evaluate(() => localStorage.removeItem('vitscale.token'));
  });

  test('unknown job and sweep ids show a not-found page', async () => {
    await browser.open(coordinator.url, '/jobs/0123456789abcdef0123');
    assert.ok(await browser.page.$('[data-not-found]'));
    assert.match(await browser.page.textContent('.not-found'), /does not exist/);
    await browser.screenshot('not-found');
    await browser.open(coordinator.url, '/study/no-such-sweep');
    assert.ok(await browser.page.$('[data-not-found]'));
  });

  test('the other pages draw without errors', async () => {
    await browser.open(coordinator.url, '/sweeps');
    assert.equal(await browser.page.textContent(`#sweeps-table tr[data-sweep="${kSweepName}"] td:nth-child(3)`), String(kJobCount));
    await browser.screenshot('sweeps');
    await browser.open(coordinator.url, '/cluster');
    assert.ok(await browser.page.$('#agents-table tr[data-agent="test-agent"]'));
    await browser.screenshot('cluster');
    await browser.open(coordinator.url, `/jobs/${study.preempted}`);
    assert.ok((await browser.page.$$('#attempts-table tbody tr')).length >= 2, 'the preempted attempt and its resume');
    await browser.screenshot('job-finished');
    const unexpected = browser.errors.filter((e) => !/status of (401|404)/.test(e));
    assert.deepEqual(unexpected, []);
  });

  test('a restarted coordinator: the page reconnects and catches up on what it missed', async () => {
    const page = browser.page;
    await browser.open(coordinator.url, `/jobs?sweep=${kSweepName}&sort=updated&order=desc`);
    await page.waitForSelector('#live[data-state="live"]');
    await coordinator.stop();
    await page.waitForSelector('#live[data-state="reconnecting"]', { timeout: 10_000 });
    // Retries come after 0.5, 1 and 2 s, then 4 s: after 4 s down the page stays offline for
    // about 4 s more, long enough to change something it can only learn by catching up.
    await page.waitForTimeout(4000);
    await coordinator.launch();
    const job = study.submitted.jobs[kJobCount - 1];
    await coordinator.post(`jobs/${job}/cancel`);
    assert.equal(await page.getAttribute('#live', 'data-state'), 'reconnecting', 'the change was made while the page was offline');
    await page.waitForSelector('#live[data-state="live"]', { timeout: 15_000 });
    await page.waitForFunction((id) => document.querySelector(`tr[data-job="${id}"] .state`)?.textContent === 'cancelled', job, { timeout: 5000 });
    await browser.screenshot('jobs-after-restart');
  });
});

// A sweep of thousands of jobs, written into the coordinator's database by the scale
// benchmark's bulk filler (5 models x 20 subset sizes x 60 seeds, most finished with results).
// In an AddressSanitizer build (`make sanitize`) the instrumented fill alone outlasts the test's
// time limit (docs/sanitizers.md, "The large fills").
const bigSweepSkip = missing.length ? missing.join('; ')
  : process.env.VITSCALE_SANITIZED ? 'a 6,000-job fill is too slow in an AddressSanitizer build' : false;
describe('the study page of a sweep of thousands of jobs', { skip: bigSweepSkip }, () => {
  const kJobs = 6000;
  const kSweep = 'scale-000';
  let coordinator;
  let browser;

  before(async () => {
    coordinator = await Coordinator.start({ openRead: true, scaleJobs: kJobs });
    browser = await Browser.start();
  });

  after(async () => {
    await browser?.close();
    await coordinator?.close();
  });

  test('it draws a page of the table, pages it by cursor, one point per model and subset size, and no schedule', async () => {
    const page = browser.page;
    const errorsBefore = browser.errors.length;
    await browser.open(coordinator.url, `/study/${kSweep}`);
    // Every row, in the sweep's order, read by cursor through the API.
    const api = await coordinator.get(`study/${kSweep}`);
    assert.equal(api.jobs, kJobs);
    assert.equal(api.rows.length, 100, 'the study view holds one page of rows');
    const all = [...api.rows];
    for (let next = api.next; next;) {
      const more = await coordinator.get(`study/${kSweep}/rows?limit=500&after=${next}`);
      all.push(...more.rows);
      next = more.next;
    }
    assert.equal(all.length, kJobs);
    assert.match(await page.textContent('#study-count'), new RegExp(`^${kJobs} jobs; `));

    // The table holds one page of rows in the sweep's order (Table 6's), and pages through
    // them by the coordinator's cursors: next, next, previous, last, previous, first.
    const ordered = all.map((r) => r.job);
    const shown = () => page.$$eval('#study-table tbody tr[data-job]', (rows) => rows.map((r) => r.dataset.job));
    const range = () => page.textContent('#study-range');
    const go = async (button, expected) => {
      const before = await range();
      const pages = [];
      const listen = (request) => { if (request.url().includes(`/study/${kSweep}/rows`)) pages.push(request.url()); };
      page.on('request', listen);
      await page.click(`button[data-study-page="${button}"]`);
      await page.waitForFunction((text) => document.querySelector('#study-range')?.textContent !== text, before);
      page.off('request', listen);
      assert.equal(pages.length, 1, `one page asked for by ${button}`);
      assert.equal(await range(), expected, button);
    };
    assert.deepEqual(await shown(), ordered.slice(0, 100));
    assert.equal(await range(), '1–100 of 6,000');
    assert.equal(await page.isDisabled('button[data-study-page="prev"]'), true);
    await go('next', '101–200 of 6,000');
    assert.deepEqual(await shown(), ordered.slice(100, 200));
    await go('next', '201–300 of 6,000');
    await go('prev', '101–200 of 6,000');
    assert.deepEqual(await shown(), ordered.slice(100, 200));
    await go('last', '5,901–6,000 of 6,000');
    assert.deepEqual(await shown(), ordered.slice(-100));
    assert.equal(await page.isDisabled('button[data-study-page="next"]'), true);
    await go('prev', '5,801–5,900 of 6,000');
    assert.deepEqual(await shown(), ordered.slice(-200, -100));
    await go('first', '1–100 of 6,000');
    assert.deepEqual(await shown(), ordered.slice(0, 100));
    assert.equal(await page.$$eval('tr', (rows) => rows.length) < 200, true, 'the page holds no more than a page of rows');

    // A forged cursor is refused, naming it.
    const forged = await fetch(`${coordinator.url}/api/v1/study/${kSweep}/rows?after=abc`);
    assert.equal(forged.status, 400);
    assert.match(await forged.text(), /cursor in 'after'/);

    // Fig. 5: one point per model, epochs and subset size, at the mean of its seeds.
    const groups = new Map();
    for (const r of all) {
      if (r.planned || r.average === null) continue;
      const key = `${r.model}|${r.epochs}|${r.subset_size}`;
      const g = groups.get(key) ?? { x: 0, y: 0, n: 0 };
      g.x += r.exaflops;
      g.y += r.average;
      g.n += 1;
      groups.set(key, g);
    }
    assert.equal(groups.size, 100);
    const axisName = await page.evaluate(() => window.vitscaleCharts['study-compute'].getOption().xAxis[0].name);
    const per = { exaFLOPs: 1, PFLOPs: 1e-3, TFLOPs: 1e-6, GFLOPs: 1e-9 }[axisName.match(/\((\w+)\)$/)[1]];
    const drawn = await page.evaluate(() => window.vitscaleCharts['study-compute'].getOption().series
      .filter((s) => s.type === 'scatter').flatMap((s) => s.data.map((d) => d.value)));
    assert.equal(drawn.length, groups.size, 'one point per model and subset size');
    for (const g of groups.values()) {
      const x = g.x / g.n / per;
      const y = (g.y / g.n) * 100;
      assert.ok(drawn.some(([dx, dy]) => Math.abs(dx / x - 1) < 1e-6 && Math.abs(dy - y) < 1e-6), `a point at ${x}, ${y}`);
    }

    // The fits come after the page is drawn; then the schedule, which for a sweep this large is
    // not drawn: the page says why, without asking for it.
    await page.waitForSelector('#fits-card[data-fits="drawn"]', { timeout: 60_000 });
    await page.waitForFunction(() => /6,000 jobs: .* at most 5,000 jobs/.test(document.querySelector('#timeline-summary')?.textContent ?? ''));
    assert.deepEqual(browser.errors.slice(errorsBefore), [], 'no failed request');
    await browser.screenshot('study-large');
  });
});

async function downloadBytes(page, selector) {
  const [download] = await Promise.all([page.waitForEvent('download'), page.click(selector)]);
  const file = await download.path();
  return fs.readFileSync(file);
}

async function downloadText(page, selector) {
  return (await downloadBytes(page, selector)).toString('utf8');
}

test('prerequisites for the browser tests', { skip: missing.length === 0 }, () => {
  assert.fail(`the browser tests cannot run: ${missing.join('; ')}`);
});
