import { createHash } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { type ModelMetadata, parseModelMetadata, readOnnxMetadataProps } from './onnx-metadata';

export interface ModelArtifact {
  path: string;
  bytes: Buffer;
  sha256: string;
  metadata: ModelMetadata;
}

/**
 * Resolves a model directory: either a directory holding model.onnx, or a directory of version
 * sub-directories (each with model.onnx), of which the highest version wins (numeric-aware order,
 * so 2026.11.30-10 sorts after 2026.11.30-9).
 */
/** Version directories under a model directory (each holding model.onnx), oldest first. */
export async function listModelVersions(modelDir: string): Promise<string[]> {
  let entries: string[];
  try {
    entries = (await readdir(modelDir, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name);
  } catch (error) {
    throw new Error(`model directory ${modelDir} cannot be read: ${(error as Error).message}`);
  }
  const versions: string[] = [];
  for (const name of entries) if (await exists(path.join(modelDir, name, 'model.onnx'))) versions.push(name);
  return versions.sort(compareModelVersions);
}

/**
 * The order of version directory names, the one that picks the highest: numeric-aware, so
 * 2026.11.30-10 sorts after 2026.11.30-9. Negative when `a` is older than `b`.
 */
export function compareModelVersions(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}

/**
 * Resolves a model directory: either a directory holding model.onnx, or a directory of version
 * sub-directories (each with model.onnx), of which `version` or else the highest is taken.
 */
export async function resolveModelFile(modelDir: string, version?: string, fileName = 'model.onnx'): Promise<string> {
  const direct = path.join(modelDir, fileName);
  if (!version && (await exists(direct))) return direct;
  const versions = await listModelVersions(modelDir);
  if (version) {
    if (!versions.includes(version))
      throw new Error(`model version ${version} not found in ${modelDir} (have: ${versions.join(', ') || 'none'})`);
    return checked(path.join(modelDir, version, fileName));
  }
  const latest = versions.at(-1);
  if (latest === undefined) throw new Error(`no model.onnx in ${modelDir} or its version directories`);
  return checked(path.join(modelDir, latest, fileName));
}

async function checked(file: string): Promise<string> {
  if (!(await exists(file))) throw new Error(`${file} does not exist`);
  return file;
}

/** Loads `fileName` (model.onnx, or a variant such as model.int8.onnx) of a version. */
export async function loadModelArtifact(
  modelDir: string,
  version?: string,
  fileName = 'model.onnx',
): Promise<ModelArtifact> {
  const file = await resolveModelFile(modelDir, version, fileName);
  const bytes = await readFile(file);
  const { props } = readOnnxMetadataProps(bytes);
  return {
    path: file,
    bytes,
    sha256: createHash('sha256').update(bytes).digest('hex'),
    metadata: parseModelMetadata(props),
  };
}

async function exists(file: string): Promise<boolean> {
  try {
    return (await stat(file)).isFile();
  } catch {
    return false;
  }
}
