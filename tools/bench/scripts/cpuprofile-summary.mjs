// Self time of one or more V8 .cpuprofile files (NODE_OPTIONS="--cpu-prof --cpu-prof-dir=DIR"),
// summed by function and by where the code lives (a package under node_modules, a file of this
// repo, or V8's own entries: garbage collector, program), as shares of the busy time (idle excluded).
//
//   node tools/bench/scripts/cpuprofile-summary.mjs DIR/*.cpuprofile [--top 25] [--from S] [--to S]
//
// --from/--to keep the samples taken S seconds after each profile's start or later / earlier, so
// start-up (module loading, warm-up) stays out of a steady state's figures.
import { readFileSync } from 'node:fs';
import path from 'node:path';

const args = process.argv.slice(2);
const topAt = args.indexOf('--top');
const top = topAt >= 0 ? Number(args.splice(topAt, 2)[1]) : 25;
const seconds = (flag, fallback) => {
  const at = args.indexOf(flag);
  return at >= 0 ? Number(args.splice(at, 2)[1]) : fallback;
};
const fromUs = seconds('--from', 0) * 1e6;
const toUs = seconds('--to', Number.POSITIVE_INFINITY) * 1e6;
if (args.length === 0) {
  console.error('usage: cpuprofile-summary.mjs FILE.cpuprofile... [--top N]');
  process.exit(2);
}

/** Where a frame's code lives: a package, a repo path, or V8's name for it. */
function place(url, name) {
  if (!url) return name.startsWith('(') ? name : '(native)';
  const file = url.replace(/^file:\/\//, '');
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(file);
  if (pkg) return pkg[1];
  if (file.startsWith('node:')) return 'node:' + file.slice(5).split('/')[0];
  const dist = /\/dist\/(.+)$/.exec(file);
  return dist ? path.dirname(dist[1]) : path.dirname(file);
}

const byFunction = new Map();
const byPlace = new Map();
let busy = 0;
let idle = 0;
for (const file of args) {
  const profile = JSON.parse(readFileSync(file, 'utf8'));
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const deltas = profile.timeDeltas;
  const self = new Map();
  // timeDeltas[i] is the time from the previous sample to sample i; sample i lasts until the next.
  let at = 0;
  profile.samples.forEach((id, i) => {
    at += deltas[i] ?? 0;
    if (at < fromUs || at > toUs) return;
    self.set(id, (self.get(id) ?? 0) + (deltas[i + 1] ?? deltas[i] ?? 0));
  });
  for (const [id, micros] of self) {
    const { callFrame } = nodes.get(id);
    const name = callFrame.functionName || '(anonymous)';
    if (name === '(idle)') {
      idle += micros;
      continue;
    }
    busy += micros;
    const where = place(callFrame.url, name);
    const key = `${name}  ${callFrame.url ? `${path.basename(callFrame.url)}:${callFrame.lineNumber + 1}` : ''}  [${where}]`;
    byFunction.set(key, (byFunction.get(key) ?? 0) + micros);
    byPlace.set(where, (byPlace.get(where) ?? 0) + micros);
  }
}

const print = (title, map) => {
  console.log(`\n${title}`);
  for (const [key, micros] of [...map].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(
      `${((100 * micros) / busy).toFixed(1).padStart(5)} %  ${(micros / 1000).toFixed(0).padStart(7)} ms  ${key}`,
    );
  }
};
console.log(`${args.length} profile(s): busy ${(busy / 1000).toFixed(0)} ms, idle ${(idle / 1000).toFixed(0)} ms`);
print('by where the code lives (self time)', byPlace);
print('by function (self time)', byFunction);
