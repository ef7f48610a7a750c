// The study the browser tests and the demo screenshots put into a coordinator through its API:
// a 60-job sweep of small models on Fashion-MNIST (the first axis of the grid varies slowest, so
// the first jobs launched cover every model at the small subsets), some of whose jobs an agent
// runs to the end with metrics, a checkpoint, a preemption and transfer results.

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
