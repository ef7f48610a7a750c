// What the browser tests and the benchmark share: a real vitscale-coordinator on a free loopback
// port with a fresh state dir, calls to its API as the CLI and an agent make them, and a headless
// Debian chromium driven by playwright-core with a fresh profile.
//
// Environment:
//   VITSCALE_COORDINATOR  the coordinator binary (default: <repo>/build/bin/vitscale-coordinator)
//   VITSCALE_SCALE_FILL   the bulk filler of bench/scale (default: next to the coordinator)
//   VITSCALE_ARTIFACTS    where screenshots go (default: <repo>/build/dashboard-artifacts)
//   CHROMIUM              the browser (default: /usr/bin/chromium)

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const dashboardDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const repoDir = path.resolve(dashboardDir, '..');
export const coordinatorBinary =
  process.env.VITSCALE_COORDINATOR || path.join(repoDir, 'build/bin/vitscale-coordinator');
export const scaleFillBinary =
  process.env.VITSCALE_SCALE_FILL || path.join(path.dirname(coordinatorBinary), 'vitscale-scale-fill');
export const artifactsDir =
  process.env.VITSCALE_ARTIFACTS || path.join(repoDir, 'build/dashboard-artifacts');
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Reasons the tests cannot run at all, so that the runner says what to install or build.
export function missingPrerequisites() {
  const missing = [];
  if (!fs.existsSync(coordinatorBinary)) {
    missing.push(`no coordinator at ${coordinatorBinary}: build it (cmake --build build) or set VITSCALE_COORDINATOR`);
  }
  if (!fs.existsSync(scaleFillBinary)) {
    missing.push(`no vitscale-scale-fill at ${scaleFillBinary}: build it (cmake --build build) or set VITSCALE_SCALE_FILL`);
  }
  if (!fs.existsSync(chromiumPath)) missing.push(`no browser at ${chromiumPath}: apt-get install chromium`);
  if (!fs.existsSync(path.join(dashboardDir, 'dist/index.html'))) {
    missing.push('no dashboards/dist: run `npm ci && npm run build` in dashboards/');
  }
  return missing;
}

export class Coordinator {
  // `scaleJobs`: the state dir starts with one sweep, scale-000, of that many jobs written by
  // the store's bulk path (bench/scale/fill.cc: most finished, with results and ledgers).
  static async start({ openRead = true, scaleJobs = 0 } = {}) {
    const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vitscale-dash-state-'));
    if (scaleJobs) {
      const fill = spawnSync(scaleFillBinary, ['--db', path.join(stateDir, 'vitscale.db'), '--jobs', String(scaleJobs),
        '--sweep-jobs', String(scaleJobs)], { encoding: 'utf8' });
      if (fill.status !== 0) throw new Error(`vitscale-scale-fill failed (${fill.status}):\n${fill.stderr}`);
    }
    const c = new Coordinator(stateDir, openRead);
    await c.launch();
    return c;
  }

  constructor(stateDir, openRead) {
    this.stateDir = stateDir;
    this.openRead = openRead;
    this.port = 0;
    this.output = '';
  }

  // Starts (or restarts, on the same port and state dir) the coordinator and waits for health.
  async launch() {
    if (!this.port) this.port = await freePort();
    this.url = `http://127.0.0.1:${this.port}`;
    const args = ['--state-dir', this.stateDir, '--listen', `127.0.0.1:${this.port}`, '--dashboard', path.join(dashboardDir, 'dist')];
    if (this.openRead) args.push('--open-read');
    this.process = spawn(coordinatorBinary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.process.stdout.on('data', (d) => (this.output += d));
    this.process.stderr.on('data', (d) => (this.output += d));
    const exited = new Promise((resolve) => this.process.once('exit', (code) => resolve(code)));
    this.exited = exited;
    const deadline = Date.now() + 20_000;
    for (;;) {
      const code = await Promise.race([exited, sleep(100).then(() => undefined)]);
      if (code !== undefined) throw new Error(`the coordinator exited with ${code}:\n${this.output}`);
      try {
        const response = await fetch(`${this.url}/api/v1/health`, {
          headers: fs.existsSync(this.tokenPath()) ? { Authorization: `Bearer ${this.token()}` } : {},
        });
        if (response.ok) break;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`the coordinator did not answer /api/v1/health in 20 s:\n${this.output}`);
    }
  }

  tokenPath() {
    return path.join(this.stateDir, 'token');
  }

  token() {
    return fs.readFileSync(this.tokenPath(), 'utf8').trim();
  }

  async stop() {
    if (!this.process || this.process.exitCode !== null) return;
    this.process.kill('SIGTERM');
    const code = await Promise.race([this.exited, sleep(5000).then(() => 'timeout')]);
    if (code === 'timeout') {
      this.process.kill('SIGKILL');
      await this.exited;
    }
  }

  async close() {
    await this.stop();
    fs.rmSync(this.stateDir, { recursive: true, force: true });
  }

  // One API call, with the admin token unless another `token` is given; `auth` false sends
  // none. Bodies are JSON unless `yaml` is given.
  async call(method, apiPath, { body, yaml, auth = true, token, expect = 200 } = {}) {
    const headers = {};
    if (auth) headers.Authorization = `Bearer ${token ?? this.token()}`;
    let payload;
    if (yaml !== undefined) {
      headers['Content-Type'] = 'application/yaml';
      payload = yaml;
    } else if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      payload = JSON.stringify(body);
    }
    const response = await fetch(`${this.url}/api/v1/${apiPath}`, { method, headers, body: payload });
    const text = await response.text();
    if (expect !== null && response.status !== expect) {
      throw new Error(`${method} /api/v1/${apiPath}: expected ${expect}, got ${response.status}: ${text}`);
    }
    const type = response.headers.get('content-type') || '';
    return { status: response.status, body: type.includes('json') && text ? JSON.parse(text) : text };
  }

  async get(apiPath) {
    return (await this.call('GET', apiPath)).body;
  }

  async post(apiPath, body, token) {
    return (await this.call('POST', apiPath, { body, token })).body;
  }
}

// An agent as docs/api.md describes it, driven by hand: register, poll for launches, report.
// It uses an agent credential of its own (issued with the admin token on first use), and
// reports for a launch with that attempt's report token, as the trainer would.
export class Agent {
  constructor(coordinator, host, slots) {
    this.coordinator = coordinator;
    this.host = host;
    this.slots = slots;
    this.running = [];
  }

  async register() {
    if (!this.token) this.token = (await this.coordinator.post('agents/credentials', { host: this.host })).token;
    await this.coordinator.post('agents/register', { host: this.host, slots: this.slots, gpus: 0, running: this.running }, this.token);
  }

  // Polls until `count` launches arrived (or `timeoutMs` passed); returns them.
  async pollLaunches(count, timeoutMs = 30_000) {
    const launches = [];
    const deadline = Date.now() + timeoutMs;
    while (launches.length < count && Date.now() < deadline) {
      const answer = await this.coordinator.post(`agents/${encodeURIComponent(this.host)}/poll`, { running: this.running }, this.token);
      for (const launch of answer.launch ?? []) {
        launches.push(launch);
        this.running.push({ job: launch.job, attempt: launch.attempt });
      }
    }
    return launches;
  }

  // Keeps the leases of what it runs alive by polling in the background (a poll answers after
  // at most 20 s, inside the 30 s lease). Launches it receives are kept as running. Survives a
  // coordinator restart by registering again, as a real agent does.
  startHeartbeat() {
    this.beating = true;
    this.heartbeat = (async () => {
      while (this.beating) {
        this.abort = new AbortController();
        try {
          const response = await fetch(`${this.coordinator.url}/api/v1/agents/${encodeURIComponent(this.host)}/poll`, {
            method: 'POST',
            headers: { Authorization: `Bearer ${this.token}`, 'Content-Type': 'application/json' },
            body: JSON.stringify({ running: this.running }),
            signal: this.abort.signal,
          });
          if (response.ok) {
            for (const launch of (await response.json()).launch ?? []) this.running.push({ job: launch.job, attempt: launch.attempt });
          } else if (response.status === 404) {
            await this.register();
          }
        } catch {
          if (!this.beating) break;
          await sleep(300);
          await this.register().catch(() => {});
        }
      }
    })();
  }

  async stopHeartbeat() {
    this.beating = false;
    this.abort?.abort();
    await this.heartbeat;
  }

  async metrics(launch, points) {
    await this.coordinator.post(`jobs/${launch.job}/attempts/${launch.attempt}/metrics`, { points }, launch.spec.run.report_token);
  }

  async checkpoint(launch, step) {
    await this.coordinator.post(`jobs/${launch.job}/attempts/${launch.attempt}/checkpoints`, {
      step, path: `${launch.spec.run.dir}/checkpoints/step-${step}`, sha256: 'a'.repeat(64),
    }, launch.spec.run.report_token);
  }

  async phase(launch, report) {
    await this.coordinator.post(`jobs/${launch.job}/attempts/${launch.attempt}/phase`, report, launch.spec.run.report_token);
  }

  async finish(launch, { results, ledger }) {
    await this.coordinator.post(`jobs/${launch.job}/attempts/${launch.attempt}/results`, { results, ledger }, launch.spec.run.report_token);
    await this.exit(launch, 'succeeded', 0);
  }

  async exit(launch, outcome, exitStatus) {
    const exit = { job: launch.job, attempt: launch.attempt, outcome, exit_status: exitStatus };
    await this.coordinator.post(`agents/${this.host}/exits`, { exits: [exit] }, this.token);
    this.running = this.running.filter((r) => !(r.job === launch.job && r.attempt === launch.attempt));
  }
}

export class Browser {
  static async start() {
    const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'vitscale-dash-chromium-'));
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: chromiumPath,
      headless: true,
      acceptDownloads: true,
      viewport: { width: 1440, height: 960 },
      args: [
        '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
      ],
    });
    const b = new Browser(profile, context);
    b.page = context.pages()[0] ?? (await context.newPage());
    b.page.on('pageerror', (e) => b.errors.push(String(e)));
    b.page.on('console', (m) => {
      if (m.type() === 'error') b.errors.push(m.text());
    });
    return b;
  }

  constructor(profile, context) {
    this.profile = profile;
    this.context = context;
    this.errors = [];
  }

  // Opens a route of the dashboard and waits until the page says it has drawn its data.
  async open(baseUrl, hash) {
    await this.page.evaluate(() => document.body?.removeAttribute('data-page-ready')).catch(() => {});
    const url = `${baseUrl}/#${hash}`;
    // The same route again is a reload; another route of the open app is a hash change.
    if (this.page.url() === url) await this.page.reload();
    else if (this.page.url().startsWith(baseUrl)) await this.page.evaluate((u) => { location.href = u; }, url);
    else await this.page.goto(url);
    await this.page.waitForSelector('body[data-page-ready]', { timeout: 15_000 });
  }

  async screenshot(name) {
    fs.mkdirSync(artifactsDir, { recursive: true });
    const file = path.join(artifactsDir, `${name}.png`);
    await this.page.screenshot({ path: file, fullPage: true });
    return file;
  }

  async close() {
    await this.context.close();
    fs.rmSync(this.profile, { recursive: true, force: true });
  }
}

export { sleep };
