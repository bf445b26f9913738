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
export async function resolveModelFile(modelDir: string): Promise<string> {
  const direct = path.join(modelDir, 'model.onnx');
  if (await exists(direct)) return direct;
  let entries: string[];
  try {
    entries = (await readdir(modelDir, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name);
  } catch (error) {
    throw new Error(`model directory ${modelDir} cannot be read: ${(error as Error).message}`);
  }
  const versions: string[] = [];
  for (const name of entries) if (await exists(path.join(modelDir, name, 'model.onnx'))) versions.push(name);
  if (versions.length === 0) throw new Error(`no model.onnx in ${modelDir} or its version directories`);
  const [latest] = versions.sort((a, b) => b.localeCompare(a, 'en', { numeric: true }));
  return path.join(modelDir, latest ?? '', 'model.onnx');
}

export async function loadModelArtifact(modelDir: string): Promise<ModelArtifact> {
  const file = await resolveModelFile(modelDir);
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
