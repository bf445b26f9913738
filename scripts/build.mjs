// Compiles apps/*/src, libs/*/src and tools/*/src to dist/ with swc (decorator metadata on, @thorax/* imports
// rewritten to relative paths) and copies JSON assets beside the JavaScript. Type checking is a
// separate step (`tsc --noEmit`), so this stays fast.
import { transformFile } from '@swc/core';
import { copyFile, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.join(root, 'dist');
const swcrc = JSON.parse(await readFile(path.join(root, '.swcrc'), 'utf8'));
const { compilerOptions } = JSON.parse(await readFile(path.join(root, 'tsconfig.base.json'), 'utf8'));

async function* walk(dir) {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) yield* walk(full);
    else yield full;
  }
}

const sources = [];
for (const group of ['apps', 'libs', 'tools']) {
  for (const project of await readdir(path.join(root, group), { withFileTypes: true })) {
    if (!project.isDirectory()) continue;
    const src = path.join(root, group, project.name, 'src');
    try {
      for await (const file of walk(src)) sources.push(file);
    } catch (error) {
      if (error.code !== 'ENOENT') throw error;
    }
  }
}

await rm(out, { recursive: true, force: true });
let compiled = 0;
await Promise.all(
  sources.map(async (file) => {
    const rel = path.relative(root, file);
    const target = path.join(out, rel);
    await mkdir(path.dirname(target), { recursive: true });
    // JSON beside the code, and static files of web pages (apps/results/src/review/assets) as they are.
    if (file.endsWith('.json') || rel.split(path.sep).includes('assets')) return copyFile(file, target);
    if (!file.endsWith('.ts') || /\.(spec|integration-spec|e2e-spec)\.ts$/.test(file)) return;
    const result = await transformFile(file, {
      ...swcrc,
      swcrc: false,
      filename: file,
      sourceFileName: path.relative(path.dirname(target), file),
      jsc: { ...swcrc.jsc, baseUrl: root, paths: compilerOptions.paths },
    });
    const js = target.replace(/\.ts$/, '.js');
    await writeFile(js, `${result.code}\n//# sourceMappingURL=${path.basename(js)}.map\n`);
    if (result.map) await writeFile(`${js}.map`, result.map);
    compiled += 1;
  }),
);
console.log(`[build] compiled ${compiled} files into ${path.relative(root, out)}/`);
