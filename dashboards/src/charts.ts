// Charts: ECharts with its SVG renderer, so that what is on screen is what "SVG" downloads; the
// PNG is the same SVG rasterised at twice the size. Every chart sits in a card with its title and
// the two download buttons. Charts are listed by id on window.vitscaleCharts, which the browser
// tests read to map drawn points back to data coordinates.

import * as echarts from 'echarts/core';
import { CustomChart, LineChart, ScatterChart } from 'echarts/charts';
import {
  GridComponent,
  LegendComponent,
  TooltipComponent,
  DataZoomComponent,
  MarkLineComponent,
} from 'echarts/components';
import { SVGRenderer } from 'echarts/renderers';
import { download, h } from './dom';

echarts.use([
  CustomChart,
  LineChart,
  ScatterChart,
  GridComponent,
  LegendComponent,
  TooltipComponent,
  DataZoomComponent,
  MarkLineComponent,
  SVGRenderer,
]);

export type EChart = echarts.ECharts;
export type ChartOption = echarts.EChartsCoreOption;

// The paper's families get fixed colours so that Fig. 4 and Fig. 5 read the same everywhere.
export const kFamilyColors: Record<string, string> = {
  ViT: '#1f77b4',
  ResNet: '#7f7f7f',
  hybrid: '#ff7f0e',
};
export const kPalette = [
  '#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd',
  '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf',
];

const registry: Record<string, EChart> = {};
(window as unknown as { vitscaleCharts: Record<string, EChart> }).vitscaleCharts = registry;

export interface ChartCard {
  element: HTMLElement;
  chart: EChart;
  // A line over the plot while it has nothing to draw (null removes it).
  setEmpty(message: string | null): void;
  dispose(): void;
}

const kSuperscripts: Record<string, string> = {
  '-': '⁻', '0': '⁰', '1': '¹', '2': '²', '3': '³', '4': '⁴',
  '5': '⁵', '6': '⁶', '7': '⁷', '8': '⁸', '9': '⁹',
};

// 1e-7 → "10⁻⁷"; other values in short exponent form.
export function powerOfTen(value: number): string {
  const exponent = Math.log10(value);
  if (Math.abs(exponent - Math.round(exponent)) < 1e-9) {
    const digits = String(Math.round(exponent));
    return `10${[...digits].map((c) => kSuperscripts[c] ?? c).join('')}`;
  }
  return value.toExponential(1);
}

export const kBaseOption: ChartOption = {
  animation: false,
  // No double quotes: ECharts writes this into a double-quoted SVG attribute unescaped.
  textStyle: { fontFamily: "system-ui, -apple-system, 'Segoe UI', sans-serif" },
  grid: { left: 64, right: 24, top: 36, bottom: 48, containLabel: false },
  tooltip: { trigger: 'item', confine: true },
};

// Appends the card to `parent` before ECharts starts: it reads the plot's size at init.
export function createChart(
  parent: HTMLElement,
  id: string,
  title: string,
  filename: string,
  options: { height?: number; note?: string } = {},
): ChartCard {
  const plot = h('div', { class: 'chart', 'data-chart': id });
  plot.style.height = `${options.height ?? 320}px`;
  const empty = h('div', { class: 'chart-empty', hidden: true });
  const svgButton = h('button', { class: 'small', 'data-download': 'svg' }, 'SVG');
  const pngButton = h('button', { class: 'small', 'data-download': 'png' }, 'PNG');
  const element = h(
    'section',
    { class: 'card chart-card' },
    h('header', null, h('h3', null, title), h('span', { class: 'spacer' }), svgButton, pngButton),
    options.note ? h('p', { class: 'note' }, options.note) : null,
    h('div', { class: 'chart-box' }, plot, empty),
  );
  parent.append(element);
  const chart = echarts.init(plot, null, { renderer: 'svg' });
  chart.setOption(kBaseOption);
  registry[id] = chart;
  svgButton.addEventListener('click', () => {
    download(`${filename}.svg`, new Blob([svgText(chart)], { type: 'image/svg+xml' }));
  });
  pngButton.addEventListener('click', () => {
    void toPng(chart).then((blob) => download(`${filename}.png`, blob));
  });
  const observer = new ResizeObserver(() => chart.resize());
  observer.observe(plot);
  return {
    element,
    chart,
    setEmpty(message) {
      empty.hidden = message === null;
      empty.textContent = message ?? '';
    },
    dispose() {
      observer.disconnect();
      chart.dispose();
      if (registry[id] === chart) delete registry[id];
    },
  };
}

// A standalone SVG document of the chart as drawn, on a white background.
function svgText(chart: EChart): string {
  let svg = chart.renderToSVGString();
  if (!svg.startsWith('<?xml')) svg = `<?xml version="1.0" encoding="UTF-8"?>\n${svg}`;
  return svg.replace(/<svg([^>]*)>/, '<svg$1><rect width="100%" height="100%" fill="#ffffff"/>');
}

function toPng(chart: EChart): Promise<Blob> {
  return rasterise(svgText(chart), chart.getWidth(), chart.getHeight());
}

// An SVG document drawn at twice its size on white, as a PNG.
export function rasterise(svg: string, width: number, height: number): Promise<Blob> {
  const scale = 2;
  const url = URL.createObjectURL(new Blob([svg], {type: 'image/svg+xml'}));
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => {
      const canvas = document.createElement('canvas');
      canvas.width = width * scale;
      canvas.height = height * scale;
      const context = canvas.getContext('2d')!;
      context.fillStyle = '#ffffff';
      context.fillRect(0, 0, canvas.width, canvas.height);
      context.drawImage(image, 0, 0, canvas.width, canvas.height);
      URL.revokeObjectURL(url);
      canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error('PNG encoding failed'))), 'image/png');
    };
    image.onerror = () => {
      URL.revokeObjectURL(url);
      reject(new Error('the SVG could not be rasterised'));
    };
    image.src = url;
  });
}
