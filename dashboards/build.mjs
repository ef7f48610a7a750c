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

await esbuild.build({
  entryPoints: [path.join(here, 'src/main.ts')],
  outfile: path.join(dist, 'app.js'),
  bundle: true,
  minify: true,
  sourcemap: true,
  format: 'iife',
  target: ['es2020'],
  logLevel: 'warning',
});
for (const file of ['index.html', 'style.css']) {
  fs.copyFileSync(path.join(here, 'src', file), path.join(dist, file));
}
const size = fs.statSync(path.join(dist, 'app.js')).size;
console.log(`dashboards/dist: app.js ${(size / 1024).toFixed(0)} KiB`);
