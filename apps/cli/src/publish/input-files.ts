import { parseDicom } from 'dicom-parser';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { usageError } from '../exit-codes';

export type InputType = 'application/dicom' | 'image/png' | 'image/jpeg';

/** One file to publish: its record key and content type. */
export interface InputFile {
  path: string;
  id: string;
  contentType: InputType;
  /** Where the id came from. */
  idFrom: 'sop-instance-uid' | 'file-name';
  size: number;
}

const EXTENSIONS = new Set(['.dcm', '.dicom', '.png', '.jpg', '.jpeg']);
const PNG = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** DICOM Part 10 (or a bare dataset), PNG or JPEG from the leading bytes; null for anything else. */
export function sniffInputType(bytes: Buffer): InputType | null {
  if (bytes.length >= 8 && bytes.subarray(0, 8).equals(PNG)) return 'image/png';
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'image/jpeg';
  if (bytes.length >= 132 && bytes.toString('latin1', 128, 132) === 'DICM') return 'application/dicom';
  if (bytes.length >= 8 && bytes[1] === 0x00 && (bytes[0] === 0x02 || bytes[0] === 0x08) && bytes[3] === 0x00) return 'application/dicom';
  return null;
}

/** The SOP Instance UID (0008,0018) of a DICOM file, read from its header only; null when absent or unreadable. */
export function sopInstanceUid(bytes: Buffer): string | null {
  try {
    const dataSet = parseDicom(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), { untilTag: 'x00080018' });
    const uid = dataSet.string('x00080018')?.replace(/\0/g, '').trim();
    return uid && /^[0-9.]{1,64}$/.test(uid) ? uid : null;
  } catch {
    return null;
  }
}

/** The file name without its image extension: `chest-001.dcm` → `chest-001`. */
export function idFromFileName(file: string): string {
  const base = path.basename(file);
  const ext = path.extname(base).toLowerCase();
  return EXTENSIONS.has(ext) ? base.slice(0, -ext.length) : base;
}

/**
 * The files named on the command line, folders expanded (recursively, in name order, hidden
 * files skipped), each with its id (DICOM: the SOP Instance UID, else the file name) and type.
 * Files that are not DICOM, PNG or JPEG are skipped inside folders and refused when named.
 */
export async function collectInputs(paths: string[], options: { idFromFileName?: boolean } = {}): Promise<{ files: InputFile[]; skipped: string[] }> {
  const files: InputFile[] = [];
  const skipped: string[] = [];
  const add = async (file: string, named: boolean): Promise<void> => {
    const bytes = await readFile(file);
    const type = sniffInputType(bytes);
    if (!type) {
      if (named) throw usageError(`${file}: not a DICOM, PNG or JPEG file`);
      skipped.push(file);
      return;
    }
    const uid = type === 'application/dicom' && !options.idFromFileName ? sopInstanceUid(bytes) : null;
    files.push({ path: file, id: uid ?? idFromFileName(file), contentType: type, idFrom: uid ? 'sop-instance-uid' : 'file-name', size: bytes.length });
  };
  const walk = async (dir: string): Promise<void> => {
    const entries = (await readdir(dir, { withFileTypes: true })).filter((e) => !e.name.startsWith('.')).sort((a, b) => a.name.localeCompare(b.name));
    for (const entry of entries) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) await walk(full);
      else if (entry.isFile()) await add(full, false);
    }
  };
  for (const p of paths) {
    const info = await stat(p).catch(() => null);
    if (!info) throw usageError(`${p}: no such file or folder`);
    if (info.isDirectory()) await walk(p);
    else await add(p, true);
  }
  const seen = new Map<string, string>();
  for (const f of files) {
    const other = seen.get(f.id);
    if (other) throw usageError(`${other} and ${f.path} have the same id ${f.id} (use --id-from-file-name, or publish them separately)`);
    seen.set(f.id, f.path);
  }
  return { files, skipped };
}

/** `name=value` → [name, value]; names are lower-cased (Kafka headers of Thorax are). */
export function parseHeader(text: string): [string, string] {
  const at = text.indexOf('=');
  if (at <= 0) throw usageError(`--header ${JSON.stringify(text)}: expected name=value`);
  const name = text.slice(0, at).trim().toLowerCase();
  if (!/^[a-z0-9][a-z0-9._-]*$/.test(name)) throw usageError(`--header ${JSON.stringify(text)}: invalid header name`);
  return [name, text.slice(at + 1)];
}
