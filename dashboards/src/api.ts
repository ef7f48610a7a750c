// The coordinator's HTTP API (docs/api.md) as typed calls. The page is served by the
// coordinator itself, so every path is relative to the page's origin. The token, when the user
// entered one, lives in localStorage and goes with every call; reads work without it when the
// coordinator runs with --open-read.

export interface Sweep {
  name: string;
  created_at: string;
  jobs: number;
  by_state: Record<string, number>;
  planned_exaflops: number;
  spent_exaflops: number;
  definition?: string;
}

// What a running job is doing (docs/api.md, "Reports"): "few-shot 2/6 (digits seed 1)".
export interface JobPhase {
  phase: 'pretraining'|'few-shot'|'fine-tune'|'inspection';
  index: number;  // the part under way, 1..count; 0 without parts
  count: number;
  detail: string;
}

export function phaseText(p: JobPhase): string {
  let text: string = p.phase;
  if (p.count > 0) text += ` ${p.index}/${p.count}`;
  if (p.detail) text += ` (${p.detail})`;
  return text;
}

export interface Job {
  id: string;
  model: string;
  family: string;
  dataset: string;
  subset_size: number;
  epochs: number;
  state: string;
  priority: number;
  attempts: number;
  planned_exaflops: number;
  images_seen: number;
  progress: number;
  phase?: JobPhase|null;  // while running, once the trainer reported one
  created_at: string;
  updated_at: string;
}

// One page of the job list, paged by cursor (docs/api.md): `next`/`prev` are null at the ends;
// `total` is a lower bound when `total_exact` is false (a model or subset filter counts up to
// a bound).
export interface JobPage {
  total: number;
  total_exact: boolean;
  limit: number;
  jobs: Job[];
  next: string | null;
  prev: string | null;
}

export interface Attempt {
  number: number;
  agent: string;
  hosts: string[] | string; // "host-a:2" lists, or one comma-separated string
  started_at: string | null;
  ended_at: string | null;
  outcome: string | null;
  exit_status: number | null;
  resumed_from_step: number | null;
}

export interface Checkpoint {
  step: number;
  path: string;
  sha256: string;
  created_at: string;
}

export interface Result {
  evaluation: string;
  dataset: string;
  shots: number | null;
  seed: number | null;
  metric: string;
  value: number;
}

export interface Ledger {
  train_flops?: number;
  eval_flops?: number;
  images_seen?: number;
  device_seconds?: Record<string, number>;
  wall_seconds?: number;
}

// The detail's `attempts` is the list of attempts where the row's is their count.
export interface JobDetail extends Omit<Job, 'attempts'> {
  config: unknown;
  sweeps: string[];
  attempts: Attempt[];
  checkpoints: Checkpoint[];
  results: Result[];
  ledger: Ledger | null;
}

export interface MetricPoint {
  step: number;
  name: string;
  value: number;
  time?: string;
}

export interface Agent {
  id: string;
  host: string;
  slots: number;
  gpus: number;
  free_slots: number;
  last_heartbeat: string;
  alive: boolean;
  jobs: string[];
}

export interface UtilisationSample {
  time: string;
  busy_slots: number;
  total_slots: number;
}

export interface StudyRow {
  job: string;
  model: string;
  family: string;
  epochs: number;
  dataset: string;
  subset_size: number;
  state: string;
  exaflops: number;
  planned: boolean;
  device_hours: number | null;  // null where the ledger has no device time
  results: Record<string, number>;
  average: number | null;
}

// GET jobs/{id}/inspection: the inspection files present (docs/api.md, "Inspection").
export interface InspectionFile {
  name: string;  // "attention-distance.json", ...
  view: string;  // "attention-distance", ...
  bytes: number;
  modified_at: string;
}

// GET /study/{sweep}/rows: a page of the table in the sweep's order, paged by cursor.
export interface StudyRows {
  columns: string[];
  rows: StudyRow[];
  total: number;
  start: number;  // rows of the sweep before this page's first
  limit: number;
  next?: string;  // cursors of the pages after and before, absent at the ends
  prev?: string;
}

// Per accuracy column of a point: the mean over its finished seeds with a value (Fig. 4), and
// over those with compute on each axis, at their mean x (Fig. 5).
export interface StudyMean {
  runs: number;
  accuracy: number;
  exaflops?: { runs: number; x: number; accuracy: number };
  device_hours?: { runs: number; x: number; accuracy: number };
}

// One model, epochs and pretraining subset size of the sweep.
export interface StudyPoint {
  model: string;
  family: string;
  epochs: number;
  subset_size: number;
  values: Record<string, StudyMean>;  // by column title, and "average"
}

// GET /study/{sweep}: the counts and the plots' points of the whole sweep, and a page of rows.
export interface Study extends StudyRows {
  sweep: string;
  jobs: number;
  by_state: Record<string, number>;
  not_run: number;
  points: StudyPoint[];
}

// GET /study/{sweep}/fits: the scaling-law fits, computed by the coordinator (planning/fit.h).
export interface CurvePoint {
  x: number;
  error: number;
  low: number | null;
  high: number | null;
}

export interface CurveFit {
  status: 'ok' | 'too_few_points' | 'failed';
  message: string;
  points: number;
  params?: { a: number; b: number; c: number; d: number };
  rmse?: number;
  extrapolated_from?: number;
  resamples?: number;
  resamples_fitted?: number;
  curve?: CurvePoint[];
}

export interface FitGroup {
  group: string;
  family: string;
  jobs: number; // the group's runs; `points` holds only those fitted
  points: { model: string; job?: string; exaflops?: number; examples?: number; error: number; runs: number }[];
  fitted: number[];
  fit: CurveFit;
}

export interface StudyFits {
  sweep: string;
  column: string;
  law: string;
  parameters: number;
  compute: FitGroup[];
  data_size: FitGroup[];
}

// GET /sweeps/{name}/timeline: the real attempts beside the simulated plan (planning/simulate.h).
export interface TimelineAttempt {
  job: string;
  model?: string;
  number: number;
  start: number;
  end: number;
  outcome: string;
}

export interface Timeline {
  sweep: string;
  hosts: string;
  real: { origin: string | null; attempts: TimelineAttempt[] };
  simulated: {
    error?: string;
    cluster?: string;
    makespan_seconds?: number;
    device_days?: number;
    utilisation?: number;
    estimated?: string[];
    jobs?: { job: string; model: string }[];
    attempts?: TimelineAttempt[];
  };
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const kTokenKey = 'vitscale.token';

export function getToken(): string {
  try {
    return localStorage.getItem(kTokenKey) ?? '';
  } catch {
    return '';
  }
}

export function setToken(token: string): void {
  if (token) localStorage.setItem(kTokenKey, token);
  else localStorage.removeItem(kTokenKey);
}

type Query = Record<string, string | number | string[] | null | undefined>;

export function apiUrl(path: string, query: Query = {}): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === null || value === undefined || value === '') continue;
    for (const v of Array.isArray(value) ? value : [value]) params.append(key, String(v));
  }
  const qs = params.toString();
  return `/api/v1/${path}${qs ? `?${qs}` : ''}`;
}

async function request(method: string, path: string, query: Query, body?: unknown): Promise<Response> {
  const headers: Record<string, string> = {};
  const token = getToken();
  if (token) headers['Authorization'] = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response: Response;
  try {
    response = await fetch(apiUrl(path, query), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, `cannot reach the coordinator (${method} /api/v1/${path}): ${String(e)}`);
  }
  if (response.ok) return response;
  let detail = response.statusText;
  try {
    const text = await response.text();
    try {
      detail = (JSON.parse(text) as { error?: string }).error ?? text;
    } catch {
      detail = text || detail;
    }
  } catch {
    // keep the status text
  }
  // Long job ids make the message hard to read; the first 12 digits name a job well enough.
  const where = `${method} /api/v1/${path.replace(/([0-9a-f]{12})[0-9a-f]{52}/g, '$1…')}`;
  let message = `${detail} (${response.status}, ${where})`;
  if (response.status === 401) {
    message += token
      ? '. The token entered is not the coordinator\'s: check <state dir>/token'
      : '. Enter the coordinator\'s token (from <state dir>/token) with the Token button';
  }
  throw new ApiError(response.status, message);
}

export async function getJson<T>(path: string, query: Query = {}): Promise<T> {
  const response = await request('GET', path, query);
  try {
    return (await response.json()) as T;
  } catch (e) {
    throw new ApiError(response.status, `GET /api/v1/${path}: the answer is not JSON (${String(e)})`);
  }
}

export async function getText(path: string, query: Query = {}): Promise<string> {
  return (await request('GET', path, query)).text();
}

export async function getBlob(path: string, query: Query = {}): Promise<Blob> {
  return (await request('GET', path, query)).blob();
}

export async function postJson<T>(path: string, body: unknown = {}): Promise<T> {
  const response = await request('POST', path, {}, body);
  return (await response.json()) as T;
}

export const enc = encodeURIComponent;
