// The study the browser tests and the demo screenshots put into a coordinator through its API:
// a 60-job sweep of small models on Fashion-MNIST (the first axis of the grid varies slowest, so
// the first jobs launched cover every model at the small subsets), some of whose jobs an agent
// runs to the end with metrics, a checkpoint, a preemption and transfer results.

import fs from 'node:fs';
import path from 'node:path';
import { Agent } from './harness.mjs';

export const kSweepName = 'dash-test';
export const kModels = ['ViT-Mu/7', 'ViT-Mu/4', 'R11s', 'R20s', 'R11s+ViT-Mu/4'];
export const kSubsets = [1000, 2000, 3000, 5000, 10000, 20000];
export const kSeeds = [0, 1];
export const kJobCount = kModels.length * kSubsets.length * kSeeds.length;
export const kFewShot = 'fashion-mnist/5-9';

export const kSweepYaml = `name: ${kSweepName}
description: the dashboard's browser test
recipe: small-images
pretrain:
  dataset: fashion-mnist/0-4
  epochs: 1
grid:
  seed: [${kSeeds.join(', ')}]
  subset: [${kSubsets.join(', ')}]
  model: [${kModels.join(', ')}]
transfer:
  few_shot:
    datasets: [${kFewShot}]
    shots: [5]
    seeds: 1
`;

// Training curves as the trainer reports them: loss falling, a warmup-then-cosine lr.
export function curvePoints(fromStep, toStep, every, totalSteps) {
  const points = [];
  for (let step = fromStep; step <= toStep; step += every) {
    const t = step / totalSteps;
    points.push({ step, name: 'loss', value: 2.3 * Math.exp(-3 * t) + 0.25 + 0.03 * Math.sin(step / 7) });
    const lr = step < totalSteps * 0.1 ? (1e-3 * step) / (totalSteps * 0.1) : 0.5e-3 * (1 + Math.cos(Math.PI * t));
    points.push({ step, name: 'lr', value: lr });
    points.push({ step, name: 'images_per_sec', value: 1800 + 120 * Math.sin(step / 13) });
  }
  return points;
}

// Submits the sweep and runs `finished` of its jobs to the end (the first of them preempted once
// and resumed on the way), leaving one more running. Then the agent registers again with the
// one slot it still uses, so that its heartbeat keeps that job's lease without taking new work.
// Returns the finished jobs with the compute each spent.
export async function fillStudy(coordinator, { finished = 15 } = {}) {
  const submitted = (await coordinator.call('POST', 'sweeps', { yaml: kSweepYaml })).body;
  const agent = new Agent(coordinator, 'test-agent', finished + 1);
  await agent.register();
  const launches = await agent.pollLaunches(finished + 1);
  if (launches.length < finished + 1) {
    throw new Error(`the coordinator launched ${launches.length} jobs, expected ${finished + 1}`);
  }
  const totalSteps = 400;
  const done = [];
  const finish = async (launch, i, fromStep) => {
    await agent.metrics(launch, curvePoints(fromStep, totalSteps, 10, totalSteps));
    // Spent compute near the plan, and accuracy rising with it, as in a real study.
    const planned = (await coordinator.get(`jobs/${launch.job}`)).planned_exaflops * 1e18;
    const trainFlops = planned * (1 + 0.01 * i);
    const accuracy = Math.min(0.95, 0.35 + 0.08 * Math.log10(trainFlops / 1e9));
    await agent.finish(launch, {
      results: [{ evaluation: 'few_shot', dataset: kFewShot, shots: 5, seed: 0, metric: 'accuracy', value: accuracy }],
      ledger: { train_flops: trainFlops, eval_flops: 1e10, images_seen: 1000 * (i + 1), device_kind: 'cpu', device_seconds: 30 + i, wall_seconds: 15 + i },
    });
    done.push({ job: launch.job, exaflops: trainFlops / 1e18, accuracy });
  };
  for (let i = 1; i < finished; i++) await finish(launches[i], i, 0);

  // The first job: preempted at step 200 after a checkpoint, launched again, run to the end.
  const preempted = launches[0];
  await agent.metrics(preempted, curvePoints(0, 200, 10, totalSteps));
  await agent.checkpoint(preempted, 200);
  await agent.exit(preempted, 'preempted', 75);
  const extra = [];
  let resumed = null;
  const deadline = Date.now() + 30_000;
  while (!resumed && Date.now() < deadline) {
    for (const launch of await agent.pollLaunches(1, 5000)) {
      if (launch.job === preempted.job) resumed = launch;
      else extra.push(launch);
    }
  }
  if (!resumed) throw new Error(`the preempted job ${preempted.job} was not launched again within 30 s`);
  await finish(resumed, 0, 210);
  // Jobs launched into the slots the finished ones freed go back as preempted, so that the
  // sweep holds exactly `finished` succeeded jobs and one running.
  for (const launch of extra) await agent.exit(launch, 'preempted', 75);

  const running = launches[finished];
  await agent.metrics(running, curvePoints(0, 100, 10, totalSteps));
  agent.slots = 1;
  await agent.register();
  agent.startHeartbeat();
  return { submitted, agent, done, running, preempted: resumed.job };
}

// Inspection files as vitscale-train --inspect writes them (docs/train-spec.md, "Inspection"),
// with arrays made up from `seed`, into the coordinator's run folder of `job`. A hybrid has no
// image filters. Returns the arrays written.
export function writeInspection(coordinator, job, { layers, heads, grid, patch = 7, hybrid = false, seed = 1 }) {
  const dir = path.join(coordinator.stateDir, 'runs', job, 'inspection');
  fs.mkdirSync(dir, { recursive: true });
  const write = (name, content) => fs.writeFileSync(path.join(dir, `${job.slice(0, 12)}-${name}`), content);
  const wave = (i) => Math.sin(seed * 12.9898 + i * 78.233) * 0.5 + 0.5;
  const resolution = grid * patch;
  const distance = Array.from({ length: layers }, (_, l) =>
    Array.from({ length: heads }, (_, h) => Math.round((4 + (resolution * 0.6 * (l + 1)) / layers * wave(l * heads + h)) * 100) / 100));
  write('attention-distance.json', JSON.stringify({ layers, heads, images: 32, resolution, pixels_per_token: patch, distance }));
  write('attention-distance.svg', '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>');
  const n = grid * grid;
  const similarity = Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => {
    const dy = Math.floor(i / grid) - Math.floor(j / grid);
    const dx = (i % grid) - (j % grid);
    return Math.cos(Math.min(Math.PI, Math.hypot(dx, dy) / 2));
  }));
  write('position-similarity.json', JSON.stringify({ grid, similarity }));
  const maps = Array.from({ length: 4 }, (_, m) => Array.from({ length: grid }, (_, y) =>
    Array.from({ length: grid }, (_, x) => (x === m % grid && y === m % grid ? 1 : wave(m * n + y * grid + x) * 0.8))));
  write('attention-rollout.json', JSON.stringify({ images: 4, grid, maps }));
  write('attention-rollout.png', kOnePixelPng);
  let components = null;
  if (!hybrid) {
    components = Array.from({ length: 8 }, (_, k) => Array.from({ length: 3 }, (_, c) =>
      Array.from({ length: patch }, (_, y) => Array.from({ length: patch }, (_, x) => Math.cos((k + 1) * (x + c) / patch) * Math.sin((y + 1) / patch)))));
    const variance = components.map((_, k) => 0.5 ** (k + 1));
    write('filters.json', JSON.stringify({ patch, channels: 3, explained_variance: variance, components }));
  }
  return { distance, similarity, maps, components, resolution };
}

// A 1x1 grey PNG, standing in for the trainer's picture of the images.
const kOnePixelPng = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNoAAAAggCBd81ytgAAAABJRU5ErkJggg==', 'base64');
