// Bundles src/ into dist/ (what the coordinator serves at /). Everything the page loads is in
// dist/: clusters are often offline, so nothing comes from a CDN at run time.
import * as esbuild from 'esbuild';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.join(here, 'dist');
fs.rmSync(dist, { recursive: true, force: true });
fs.mkdirSync(dist, { recursive: true });

// ES modules split into chunks: the shell and the pages without charts are app.js; the pages
// that draw charts load ECharts (most of the bytes) when they are first opened, so the job
// table and the sweeps list start without parsing it.
await esbuild.build({
  entryPoints: { app: path.join(here, 'src/main.ts') },
  outdir: dist,
  chunkNames: 'chunk-[hash]',
  bundle: true,
  splitting: true,
  minify: true,
  sourcemap: true,
  format: 'esm',
  target: ['es2020'],
  logLevel: 'warning',
});
for (const file of ['index.html', 'style.css']) {
  fs.copyFileSync(path.join(here, 'src', file), path.join(dist, file));
}
const sizes = fs.readdirSync(dist).filter((f) => f.endsWith('.js'))
  .map((f) => `${f} ${(fs.statSync(path.join(dist, f)).size / 1024).toFixed(0)} KiB`);
console.log(`dashboards/dist: ${sizes.join(', ')}`);
