import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

/**
 * The folders of the results app depend on each other one way only (docs: apps/results/README.md):
 *
 *   domain ← store ← api ← studies, fhir ← findings ← grpc, openapi, review, feedback ← testing, app.module ← service ← main
 *
 * - domain: pure study logic (aggregate, FHIR ids), no I/O;
 * - store: the store's ports (results-store.port.ts) and their SQL adapters;
 * - api: what every read edge shares (API errors, cursors, the HTTP error filter);
 * - studies, fhir, findings: services and their HTTP controllers; the findings consumer also
 *   publishes FHIR bundles;
 * - grpc, openapi: edges over several features;
 * - review, feedback: the review page, its APIs and images, reviewers' verdicts and their topic.
 * `config.ts` and `version.ts` are leaves anyone may import. Tests may reach across layers.
 */
const LAYERS: readonly string[][] = [
  ['config.ts', 'version.ts'],
  ['domain'],
  ['store'],
  ['api'],
  ['studies', 'fhir'],
  ['findings'],
  ['grpc', 'openapi', 'review', 'feedback'],
  ['testing', 'app.module.ts'],
  ['service.ts'],
  ['main.ts'],
];

const SRC = __dirname;
const rank = new Map(LAYERS.flatMap((names, i) => names.map((name) => [name, i] as const)));

/** The folder (or root file) a source file belongs to. */
function unitOf(file: string): string {
  const [first = ''] = path.relative(SRC, file).split(path.sep);
  return first;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(full);
    return entry.name.endsWith('.ts') && !/\.(spec|integration-spec)\.ts$/.test(entry.name) ? [full] : [];
  });
}

/** Edges between units through relative imports (type-only imports included). */
function unitEdges(): { from: string; to: string; file: string }[] {
  return sourceFiles(SRC).flatMap((file) =>
    ts
      .preProcessFile(readFileSync(file, 'utf8'), true, true)
      .importedFiles.map((ref) => ref.fileName)
      .filter((spec) => spec.startsWith('.'))
      .map((spec) => ({ from: unitOf(file), to: unitOf(path.resolve(path.dirname(file), spec) + '.ts'), file: path.relative(SRC, file) }))
      .filter((edge) => edge.from !== edge.to),
  );
}

describe('results app structure', () => {
  const edges = unitEdges();

  it('knows every folder and root file', () => {
    const units = new Set(sourceFiles(SRC).map(unitOf));
    expect([...units].filter((unit) => !rank.has(unit))).toEqual([]);
    expect(edges.length).toBeGreaterThan(20);
  });

  it('imports point down the layers only, so folders never import each other both ways', () => {
    const upward = edges.filter((e) => (rank.get(e.to) ?? Infinity) >= (rank.get(e.from) ?? -1)).map((e) => `${e.file} -> ${e.to}`);
    expect(upward).toEqual([]);
  });

  it('the folder graph has no cycle', () => {
    const next = new Map<string, Set<string>>();
    for (const { from, to } of edges) next.set(from, (next.get(from) ?? new Set()).add(to));
    const state = new Map<string, 'open' | 'done'>();
    const cycles: string[] = [];
    const visit = (unit: string, trail: string[]): void => {
      if (state.get(unit) === 'done') return;
      if (state.get(unit) === 'open') {
        cycles.push([...trail.slice(trail.indexOf(unit)), unit].join(' -> '));
        return;
      }
      state.set(unit, 'open');
      for (const to of next.get(unit) ?? []) visit(to, [...trail, unit]);
      state.set(unit, 'done');
    };
    for (const unit of next.keys()) visit(unit, []);
    expect(cycles).toEqual([]);
  });
});
