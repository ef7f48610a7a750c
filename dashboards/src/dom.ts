// DOM building and number/time formatting shared by the pages. Text goes in through
// textContent only, so names and log lines from the API can never inject markup.

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | null | undefined | ((e: Event) => void)>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs | null = null,
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (typeof value === 'function') {
      el.addEventListener(key.replace(/^on/, ''), value);
    } else if (key === 'class') {
      el.className = String(value);
    } else if (key === 'value' && 'value' in el) {
      (el as HTMLInputElement).value = String(value);
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(el: HTMLElement, children: (Child | Child[])[]): void {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(typeof child === 'number' ? String(child) : child);
  }
}

export function clear(el: HTMLElement): void {
  while (el.firstChild) el.removeChild(el.firstChild);
}

// The banner every page uses for an API error: the error is shown as the coordinator said it.
export function errorBox(message: string): HTMLElement {
  return h('div', { class: 'error', role: 'alert' }, message);
}

export function shortId(id: string): string {
  return id.slice(0, 12);
}

// A unit of compute, as a multiple of the API's exaFLOPs.
export interface Unit {
  name: string;
  per: number;  // how many of the base quantity one unit is
}

const kFlopsUnits: Unit[] = [
  { name: 'GFLOPs', per: 1e-9 }, { name: 'TFLOPs', per: 1e-6 }, { name: 'PFLOPs', per: 1e-3 }, { name: 'exaFLOPs', per: 1 },
];
const kDeviceTimeUnits: Unit[] = [
  { name: 'device-seconds', per: 1 / 3600 }, { name: 'device-minutes', per: 1 / 60 }, { name: 'device-hours', per: 1 },
  { name: 'device-days', per: 24 },
];

// The largest unit in which `value` (in the base quantity) is at least 1; the smallest below that.
function unitFor(units: Unit[], value: number): Unit {
  let chosen = units[0];
  for (const unit of units) if (Number.isFinite(value) && value / unit.per >= 1) chosen = unit;
  return chosen;
}

// FLOPs by scale, so that a laptop study reads "17.6 TFLOPs", not "1.76e-5 exaFLOPs". Plots and
// columns pass the unit of their largest value, so that every value of one axis shares it.
export function flopsUnit(exaflops: number): Unit {
  return unitFor(kFlopsUnits, exaflops);
}

// Device time by scale: seconds up to days (the paper counts TPUv3-core-days).
export function deviceTimeUnit(hours: number): Unit {
  return unitFor(kDeviceTimeUnits, hours);
}

// `value` (in the unit's base quantity) as a number of `unit`s, without the unit's name: for a
// column whose header names the unit.
export function fmtInUnit(value: number | null | undefined, unit: Unit): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return '–';
  if (value === 0) return '0';
  const scaled = value / unit.per;
  return Math.abs(scaled) >= 1000 || Math.abs(scaled) < 0.01 ? scaled.toExponential(2) : scaled.toPrecision(3);
}

function fmtWithUnit(value: number | null | undefined, unit: Unit): string {
  const text = fmtInUnit(value, unit);
  return text === '–' || text === '0' ? text : `${text} ${unit.name}`;
}

// "17.6 TFLOPs" from exaFLOPs, in `unit` or the value's own.
export function fmtFlops(exaflops: number | null | undefined, unit?: Unit): string {
  return fmtWithUnit(exaflops, unit ?? flopsUnit(exaflops ?? 0));
}

// "3.50 device-hours" from hours, in `unit` or the value's own.
export function fmtDeviceTime(hours: number | null | undefined, unit?: Unit): string {
  return fmtWithUnit(hours, unit ?? deviceTimeUnit(hours ?? 0));
}

export function fmtNumber(n: number | null | undefined, digits = 3): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '–';
  if (Number.isInteger(n)) return n.toLocaleString('en-US');
  const abs = Math.abs(n);
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e6)) return n.toExponential(2);
  return n.toPrecision(digits);
}

// 60000 → "60k", 9000000 → "9M": how the paper names subset sizes.
export function fmtCount(n: number): string {
  const units: [number, string][] = [[1e9, 'B'], [1e6, 'M'], [1e3, 'k']];
  for (const [scale, suffix] of units) {
    if (n >= scale && n % (scale / 10) === 0) return `${n / scale}${suffix}`;
  }
  return n.toLocaleString('en-US');
}

export function fmtPercent(x: number | null | undefined): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return '–';
  return `${(x * 100).toFixed(1)}%`;
}

export function fmtTime(iso: string | null | undefined): string {
  if (!iso) return '–';
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  const seconds = Math.round((Date.now() - t) / 1000);
  if (seconds < 5) return 'just now';
  if (seconds < 90) return `${seconds} s ago`;
  if (seconds < 90 * 60) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 36 * 3600) return `${Math.round(seconds / 3600)} h ago`;
  return new Date(t).toISOString().slice(0, 16).replace('T', ' ');
}

export function timeCell(iso: string | null | undefined): HTMLElement {
  return h('span', { title: iso ?? '' }, fmtTime(iso));
}

export function stateBadge(state: string): HTMLElement {
  return h('span', { class: `state state-${state}` }, state);
}

export function progressBar(fraction: number): HTMLElement {
  const pct = Math.max(0, Math.min(1, fraction || 0)) * 100;
  const bar = h('div', { class: 'progress', title: `${pct.toFixed(0)}%` }, h('div', { class: 'fill' }));
  (bar.firstChild as HTMLElement).style.width = `${pct}%`;
  return bar;
}

// Saves a text or blob as a file through a temporary link.
export function download(filename: string, data: Blob): void {
  const url = URL.createObjectURL(data);
  const a = h('a', { href: url, download: filename });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

// Calls `fn` at most once per `ms`, trailing: bursts of events cost one refetch.
export function throttle(fn: () => void, ms: number): { (): void; cancel(): void } {
  let timer: number | null = null;
  const wrapped = () => {
    if (timer !== null) return;
    timer = window.setTimeout(() => {
      timer = null;
      fn();
    }, ms);
  };
  wrapped.cancel = () => {
    if (timer !== null) window.clearTimeout(timer);
    timer = null;
  };
  return wrapped;
}
