// A job's inspection views (paper Sec. 4.5, Fig. 6, 7, 11 and 14; docs/train-spec.md,
// "Inspection"), drawn on its job page from the arrays the trainer wrote and the coordinator
// serves (GET jobs/{id}/inspection/...): the principal components of the patch-embedding filters,
// the position-embedding similarity maps, the mean attention distance per head and layer, and
// attention rollout maps. Every figure downloads as SVG and PNG. A second job's attention
// distances can be overlaid on the first's (the paper compares ViTs and hybrids this way).

import { ApiError, enc, getBlob, getJson, type InspectionFile, type JobDetail } from '../api';
import { createChart, kBaseOption, kPalette, rasterise, type ChartCard } from '../charts';
import { clear, download, h } from '../dom';
import { errorText } from '../page';

interface FiltersFile {
  patch: number;
  channels: number;
  explained_variance: number[];
  components: number[][][][]; // (k, channels, patch, patch)
}
interface SimilarityFile {
  grid: number;
  similarity: number[][]; // (grid², grid²)
}
interface DistanceFile {
  layers: number;
  heads: number;
  resolution: number;
  pixels_per_token: number;
  distance: number[][]; // (layers, heads), input pixels
}
interface RolloutFile {
  images: number;
  grid: number;
  maps: number[][][]; // (images, grid, grid), each scaled to its maximum
}

// Beyond this many cells the similarity maps are shown as the trainer's PNG instead of drawn
// (a ViT-H/14 at 518 pixels has 37⁴ ≈ 1.9M).
const kMaxDrawnCells = 250_000;

// Viridis, as the paper's maps use it, by linear interpolation between five of its colours.
const kViridis = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
function viridis(t: number): string {
  const x = Math.max(0, Math.min(1, Number(t) || 0)) * (kViridis.length - 1);
  const i = Math.min(kViridis.length - 2, Math.floor(x));
  const f = x - i;
  const c = kViridis[i].map((v, k) => Math.round(v + f * (kViridis[i + 1][k] - v)));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

// An SVG document (numbers only are interpolated into it) and its size.
interface Figure {
  svg: string;
  width: number;
  height: number;
}

function svgDocument(width: number, height: number, body: string): Figure {
  return {
    svg: `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">` +
      `<rect width="100%" height="100%" fill="#ffffff"/>${body}</svg>`,
    width,
    height,
  };
}

// `maps` drawn side by side, `columns` to a row, each cell `cell` pixels, coloured by `colour`.
function mapGrid(maps: number[][][], columns: number, cell: number, gap: number, colour: (v: number) => string): Figure {
  const rowsOf = (m: number[][]) => m.length;
  const side = Math.max(...maps.map(rowsOf)) * cell;
  const rows = Math.ceil(maps.length / columns);
  const parts: string[] = [];
  maps.forEach((map, n) => {
    const ox = (n % columns) * (side + gap);
    const oy = Math.floor(n / columns) * (side + gap);
    map.forEach((row, y) => row.forEach((v, x) => {
      parts.push(`<rect x="${ox + x * cell}" y="${oy + y * cell}" width="${cell}" height="${cell}" fill="${colour(v)}"/>`);
    }));
  });
  return svgDocument(columns * (side + gap) - gap, rows * (side + gap) - gap, `<g shape-rendering="crispEdges">${parts.join('')}</g>`);
}

// Fig. 7 left: each component as a patch, its channels as RGB, scaled to its own range.
function filtersFigure(f: FiltersFile): Figure {
  const cell = Math.max(2, Math.floor(56 / f.patch));
  const side = f.patch * cell;
  const gap = 4;
  const columns = 7;
  const parts: string[] = [];
  f.components.forEach((component, n) => {
    const values = component.flat(2);
    const low = Math.min(...values);
    const range = Math.max(...values) - low || 1;
    const level = (c: number, y: number, x: number) => Math.round((255 * (component[Math.min(c, component.length - 1)][y][x] - low)) / range);
    const ox = (n % columns) * (side + gap);
    const oy = Math.floor(n / columns) * (side + gap);
    for (let y = 0; y < f.patch; y++) {
      for (let x = 0; x < f.patch; x++) {
        const fill = `rgb(${level(0, y, x)},${level(1, y, x)},${level(2, y, x)})`;
        parts.push(`<rect x="${ox + x * cell}" y="${oy + y * cell}" width="${cell}" height="${cell}" fill="${fill}"/>`);
      }
    }
  });
  const rows = Math.ceil(f.components.length / columns);
  return svgDocument(Math.min(columns, f.components.length) * (side + gap) - gap, rows * (side + gap) - gap,
    `<g shape-rendering="crispEdges">${parts.join('')}</g>`);
}

// Fig. 7 centre: at each patch's place in the grid, its similarity map over the grid, -1..1.
function similarityFigure(f: SimilarityFile): Figure {
  const g = f.grid;
  const maps = f.similarity.map((row) => Array.from({ length: g }, (_, y) => row.slice(y * g, (y + 1) * g)));
  const cell = Math.max(1, Math.floor(320 / (g * g)));
  return mapGrid(maps, g, cell, Math.max(1, cell), (v) => viridis((v + 1) / 2));
}

// Fig. 6: the [class] token's rolled-out attention over the patches, each map scaled to its max.
function rolloutFigure(f: RolloutFile): Figure {
  const cell = Math.max(2, Math.floor(128 / f.grid));
  return mapGrid(f.maps, f.maps.length, cell, 8, viridis);
}

function figureCard(parent: HTMLElement, id: string, title: string, filename: string, figure: Figure, note: string, extra?: Node): HTMLElement {
  const box = h('div', { class: 'figure-box' });
  box.innerHTML = figure.svg; // built from numbers only
  const svgButton = h('button', { class: 'small', 'data-download': 'svg' }, 'SVG');
  const pngButton = h('button', { class: 'small', 'data-download': 'png' }, 'PNG');
  svgButton.addEventListener('click', () => {
    download(`${filename}.svg`, new Blob([`<?xml version="1.0" encoding="UTF-8"?>\n${figure.svg}`], { type: 'image/svg+xml' }));
  });
  pngButton.addEventListener('click', () => {
    void rasterise(figure.svg, figure.width, figure.height).then((blob) => download(`${filename}.png`, blob));
  });
  const card = h('section', { class: 'card chart-card figure-card', 'data-figure': id },
    h('header', null, h('h3', null, title), h('span', { class: 'spacer' }), svgButton, pngButton),
    h('p', { class: 'note' }, note), box, extra ?? null);
  parent.append(card);
  return card;
}

// The trainer's own picture of a view, fetched with the token (an <img> cannot send it).
async function trainerImage(jobId: string, name: string, alt: string): Promise<HTMLElement> {
  const blob = await getBlob(`jobs/${enc(jobId)}/inspection/${enc(name)}`);
  const url = URL.createObjectURL(blob);
  const image = h('img', { class: 'inspection-image', src: url, alt, 'data-file': name });
  const button = h('button', { class: 'small', 'data-download': 'trainer-png' }, 'PNG as drawn by the trainer');
  button.addEventListener('click', () => download(`${jobId.slice(0, 12)}-${name}`, blob));
  return h('div', { class: 'trainer-image' }, image, h('div', null, button));
}

interface DistanceOf {
  label: string;
  file: DistanceFile;
}

// Per layer: the mean over heads, for the overlay's curves.
function meanPerLayer(d: DistanceFile): [number, number][] {
  return d.distance.map((heads, layer) => [layer + 1, heads.reduce((a, b) => a + b, 0) / heads.length]);
}

function headPoints(d: DistanceFile): [number, number][] {
  return d.distance.flatMap((heads, layer) => heads.map((v) => [layer + 1, v] as [number, number]));
}

const kDistanceAxes = (resolution: number) => ({
  xAxis: { type: 'value', name: 'Network depth (layer)', nameLocation: 'middle', nameGap: 28, minInterval: 1, min: 0.5, max: 'dataMax' },
  yAxis: { type: 'value', name: 'Mean attention distance (pixels)', nameLocation: 'middle', nameGap: 44, min: 0, max: resolution },
});

export interface InspectionSection {
  element: HTMLElement;
  load(): Promise<void>;
  dispose(): void;
}

export function mountInspection(jobId: string, model: string, compareWith: string | null): InspectionSection {
  const element = h('section', { class: 'inspection', id: 'inspection' });
  const charts: ChartCard[] = [];
  const objectUrls: string[] = [];
  let disposed = false;
  let own: DistanceOf | null = null;
  let compareCard: ChartCard | null = null;

  const disposeCharts = () => {
    charts.forEach((c) => c.dispose());
    charts.length = 0;
    compareCard = null;
    objectUrls.forEach((u) => URL.revokeObjectURL(u));
    objectUrls.length = 0;
  };

  const getFile = <T>(id: string, name: string) => getJson<T>(`jobs/${enc(id)}/inspection/${enc(name)}`);

  const compareMessage = h('span', { class: 'compare-message', id: 'compare-message', role: 'status' });
  const compareInput = h('input', { type: 'text', placeholder: 'job id or 8+ digit prefix', 'aria-label': 'compare with job', value: compareWith ?? '' });
  const compareButton = h('button', { 'data-action': 'compare' }, 'Overlay');

  // Both jobs' heads as dots and their per-layer means as lines, in one colour per job.
  const drawCompare = (parent: HTMLElement, other: DistanceOf) => {
    if (!own) return;
    if (!compareCard) {
      compareCard = createChart(parent, 'inspection-compare', 'Mean attention distance, two jobs overlaid',
        `${jobId.slice(0, 12)}-attention-distance-compare`, {
          height: 340, note: 'Dots: one per head and layer; lines: the mean over heads per layer (Fig. 7 right, Fig. 11).',
        });
      charts.push(compareCard);
    }
    const jobs = [own, other];
    compareCard.chart.setOption({
      ...kBaseOption,
      grid: { left: 64, right: 24, top: 36, bottom: 48 },
      legend: { top: 4 },
      ...kDistanceAxes(Math.max(own.file.resolution, other.file.resolution)),
      series: jobs.flatMap((j, i) => [
        { type: 'scatter', name: j.label, data: headPoints(j.file), symbolSize: 6, color: kPalette[i], itemStyle: { opacity: 0.7 } },
        { type: 'line', name: j.label, data: meanPerLayer(j.file), color: kPalette[i], showSymbol: false, lineStyle: { width: 2 } },
      ]),
    }, { notMerge: true });
  };

  const compare = async (parent: HTMLElement, what: string) => {
    compareMessage.className = 'compare-message';
    compareMessage.textContent = `Loading ${what}…`;
    try {
      const other = await getJson<JobDetail>(`jobs/${enc(what)}`);
      const file = await getFile<DistanceFile>(other.id, 'attention-distance.json');
      if (disposed) return;
      drawCompare(parent, { label: `${other.model} ${other.id.slice(0, 8)}`, file });
      compareMessage.textContent = `Overlaid ${other.model} (${other.id.slice(0, 12)}).`;
      history.replaceState(null, '', `#/jobs/${jobId}?compare=${other.id.slice(0, 12)}`);
    } catch (e) {
      if (disposed) return;
      compareMessage.className = 'compare-message failed';
      compareMessage.textContent = e instanceof ApiError && e.status === 404 && e.message.includes('attention-distance')
        ? `Job ${what} has no attention distances to overlay: ${errorText(e)}`
        : errorText(e);
    }
  };

  const load = async () => {
    disposeCharts();
    clear(element);
    const listing = await getJson<{ files: InspectionFile[] }>(`jobs/${enc(jobId)}/inspection`);
    if (disposed) return;
    const has = new Set(listing.files.map((f) => f.name));
    element.append(h('header', { class: 'section-head' }, h('h3', null, 'Inspection (paper Sec. 4.5)')));
    if (!has.has('attention-distance.json') && !has.has('position-similarity.json') && !has.has('filters.json')) {
      element.append(h('p', { class: 'empty', id: 'inspection-empty' },
        'No inspection views yet. Run ', h('code', null, `vitscale inspect ${jobId.slice(0, 12)}`),
        ' once the job has a checkpoint, or submit it with "inspect": true.'));
      return;
    }
    const grid = h('div', { class: 'inspection-grid' });
    element.append(grid);
    const stem = jobId.slice(0, 12);

    if (has.has('filters.json')) {
      const f = await getFile<FiltersFile>(jobId, 'filters.json');
      const shown = f.explained_variance.slice(0, f.components.length).reduce((a, b) => a + b, 0);
      figureCard(grid, 'inspection-filters', 'Patch-embedding filters: principal components', `${stem}-filters`, filtersFigure(f),
        `Fig. 7 left: the first ${f.components.length} principal components of the ${f.patch}×${f.patch} filters, ` +
        `largest first (together ${(100 * shown).toFixed(1)}% of their variance).`);
    }
    if (has.has('position-similarity.json')) {
      const f = await getFile<SimilarityFile>(jobId, 'position-similarity.json');
      const cells = f.grid ** 4;
      if (cells <= kMaxDrawnCells) {
        figureCard(grid, 'inspection-similarity', 'Position-embedding similarity', `${stem}-position-similarity`, similarityFigure(f),
          `Fig. 7 centre: at each patch's place in the ${f.grid}×${f.grid} grid, the cosine similarity of its position ` +
          'embedding with every patch\'s (viridis, −1 to 1).');
      } else if (has.has('position-similarity.png')) {
        const image = await trainerImage(jobId, 'position-similarity.png', 'position-embedding similarity');
        objectUrls.push((image.querySelector('img') as HTMLImageElement).src);
        grid.append(h('section', { class: 'card figure-card', 'data-figure': 'inspection-similarity' },
          h('header', null, h('h3', null, 'Position-embedding similarity')),
          h('p', { class: 'note' }, `Fig. 7 centre; ${cells.toLocaleString()} cells are too many to draw here: the trainer's picture.`), image));
      }
    }
    if (has.has('attention-distance.json')) {
      const f = await getFile<DistanceFile>(jobId, 'attention-distance.json');
      own = { label: `${model} ${jobId.slice(0, 8)}`, file: f };
      const card = createChart(grid, 'inspection-distance', 'Mean attention distance per head', `${stem}-attention-distance`, {
        height: 340,
        note: `Fig. 7 right, Fig. 11: for each of the ${f.heads} heads of each of the ${f.layers} layers, the attention-weighted ` +
          `distance between query and key patches in input pixels (${f.pixels_per_token} per token, ${f.resolution}-pixel images).`,
      });
      charts.push(card);
      card.element.classList.add('figure-card');
      card.chart.setOption({
        ...kBaseOption,
        grid: { left: 64, right: 24, top: 36, bottom: 48 },
        legend: { top: 4 },
        ...kDistanceAxes(f.resolution),
        series: Array.from({ length: f.heads }, (_, head) => ({
          type: 'scatter', name: `Head ${head + 1}`, symbolSize: 7, color: kPalette[head % kPalette.length],
          data: f.distance.map((heads, layer) => [layer + 1, heads[head]]),
        })),
      });
      const compareRow = h('div', { class: 'compare-row' }, 'Compare with another job: ', compareInput, compareButton, ' ', compareMessage);
      const compareBox = h('div', { class: 'compare-box' });
      grid.append(h('section', { class: 'card compare-card' }, h('header', null, h('h3', null, 'Compare attention distances')), compareRow, compareBox));
      const start = () => {
        const what = compareInput.value.trim();
        if (what) void compare(compareBox, what);
      };
      compareButton.onclick = start;
      compareInput.onkeydown = (e: KeyboardEvent) => {
        if (e.key === 'Enter') start();
      };
      if (compareWith) start();
    }
    if (has.has('attention-rollout.json')) {
      const f = await getFile<RolloutFile>(jobId, 'attention-rollout.json');
      const image = has.has('attention-rollout.png') ? await trainerImage(jobId, 'attention-rollout.png', 'attention rollout over the images') : undefined;
      if (image) objectUrls.push((image.querySelector('img') as HTMLImageElement).src);
      figureCard(grid, 'inspection-rollout', 'Attention rollout', `${stem}-attention-rollout`, rolloutFigure(f),
        `Fig. 6, 14: attention averaged over heads, the identity added and rows renormalised, multiplied through the ` +
        `layers (Abnar & Zuidema 2020); the [class] token's row over the ${f.grid}×${f.grid} patches of ${f.images} test images, ` +
        'each scaled to its maximum. Below: the images, weighted by their maps.', image);
    }
  };

  return {
    element,
    async load() {
      try {
        await load();
      } catch (e) {
        if (disposed) return;
        element.append(h('p', { class: 'error-box' }, `Inspection: ${errorText(e)}`));
      }
    },
    dispose() {
      disposed = true;
      disposeCharts();
    },
  };
}
