// The job table's time to interactive (navigation start to the first page of rows drawn) of
// several builds of the dashboard, alternated on one coordinator so that each sees the same
// machine state: before each load the served folder is filled with the next build's files (the
// coordinator reads them per request). Prints, per build, the median and every run, and how
// the time splits (script fetched and run, then the job list fetched and drawn).
//
//   node bench/time_to_interactive.mjs --state-dir DIR --dist A_DIST --dist B_DIST [--runs 5]
// Environment as for the browser tests (VITSCALE_COORDINATOR, CHROMIUM).

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Browser, coordinatorBinary, freePort, missingPrerequisites } from '../test/harness.mjs';

const args = process.argv.slice(2);
const all = (name) => args.flatMap((a, i) => (a === `--${name}` ? [args[i + 1]] : []));
const stateDir = all('state-dir')[0];
const dists = all('dist');
const runs = Number(all('runs')[0] ?? 5);
if (!stateDir || dists.length === 0) {
  console.error('usage: node bench/time_to_interactive.mjs --state-dir DIR --dist DIR [--dist DIR ...] [--runs N]');
  process.exit(2);
}
const missing = missingPrerequisites();
if (missing.length) {
  console.error(`time_to_interactive.mjs: cannot run: ${missing.join('; ')}`);
  process.exit(2);
}

const served = fs.mkdtempSync(path.join(os.tmpdir(), 'vitscale-tti-'));
const serve = (dist) => {
  for (const f of fs.readdirSync(served)) fs.rmSync(path.join(served, f));
  for (const f of fs.readdirSync(dist)) fs.copyFileSync(path.join(dist, f), path.join(served, f));
};
const port = await freePort();
const url = `http://127.0.0.1:${port}`;
const coordinator = spawn(coordinatorBinary, ['--state-dir', stateDir, '--listen', `127.0.0.1:${port}`,
  '--open-read', '--dashboard', served], { stdio: ['ignore', 'ignore', 'inherit'] });
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
let browser;
try {
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`${url}/api/v1/health`)).ok) break;
    } catch {
      // not listening yet
    }
    if (i > 24_000) throw new Error('no answer from the coordinator in 120 s');
    await new Promise((r) => setTimeout(r, 5));
  }
  browser = await Browser.start();
  const page = browser.page;
  const times = dists.map(() => []);
  const splits = dists.map(() => []);
  // One load of each first, untimed (the database's pages into memory, chromium warmed).
  for (let run = -1; run < runs; run++) {
    for (let d = 0; d < dists.length; d++) {
      serve(dists[d]);
      await page.goto('about:blank');
      await page.goto(`${url}/#/jobs`);
      await page.waitForSelector('body[data-page-ready]', { timeout: 60_000 });
      if (run < 0) continue;
      times[d].push(Number(await page.getAttribute('body', 'data-page-ready')));
      splits[d].push(await page.evaluate(() => {
        const list = performance.getEntriesByType('resource').find((e) => e.name.includes('/api/v1/jobs'));
        return list ? Math.round(list.startTime) : null;
      }));
    }
  }
  console.log(`${runs} runs each, alternated; load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  dists.forEach((dist, d) => {
    console.log(`${dist}: time to interactive ${median(times[d]).toFixed(0)} ms median ` +
      `(${times[d].map((t) => t.toFixed(0)).join(', ')}); job list requested at ` +
      `${median(splits[d])} ms median`);
  });
} finally {
  await browser?.close();
  coordinator.kill('SIGTERM');
  fs.rmSync(served, { recursive: true, force: true });
}
