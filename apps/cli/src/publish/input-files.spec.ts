import { REPO_ROOT } from '@thorax/testing';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { CliError } from '../exit-codes';
import { collectInputs, idFromFileName, parseHeader, sniffInputType, sopInstanceUid } from './input-files';

const FIXTURES = path.join(REPO_ROOT, 'test', 'fixtures', 'imaging');

describe('input files', () => {
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'thorax-cli-'));
    await mkdir(path.join(dir, 'sub'));
    await copyFile(path.join(FIXTURES, 'valid', 'grey8.png'), path.join(dir, 'b-chest.png'));
    await copyFile(path.join(FIXTURES, 'valid', 'grey.jpg'), path.join(dir, 'sub', 'a-chest.jpeg'));
    await copyFile(path.join(FIXTURES, 'valid', 'mono2-8bit.dcm'), path.join(dir, 'c.dcm'));
    await writeFile(path.join(dir, 'notes.txt'), 'not an image');
    await writeFile(path.join(dir, '.hidden.png'), 'hidden');
  });

  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('sniffs DICOM, PNG and JPEG and nothing else', async () => {
    expect(sniffInputType(await readFile(path.join(dir, 'c.dcm')))).toBe('application/dicom');
    expect(sniffInputType(await readFile(path.join(dir, 'b-chest.png')))).toBe('image/png');
    expect(sniffInputType(await readFile(path.join(dir, 'sub', 'a-chest.jpeg')))).toBe('image/jpeg');
    expect(sniffInputType(await readFile(path.join(FIXTURES, 'hostile', 'image.gif')))).toBeNull();
  });

  it('keys DICOM by its SOP Instance UID, the rest by file name', async () => {
    const uid = sopInstanceUid(await readFile(path.join(dir, 'c.dcm')));
    expect(uid).toMatch(/^1\.2\.826\.0\.1\.3680043\.8\.498\.[0-9.]+$/);
    const { files, skipped } = await collectInputs([dir]);
    expect(files.map((f) => [path.relative(dir, f.path), f.id, f.contentType, f.idFrom])).toEqual([
      ['b-chest.png', 'b-chest', 'image/png', 'file-name'],
      ['c.dcm', uid, 'application/dicom', 'sop-instance-uid'],
      ['sub/a-chest.jpeg', 'a-chest', 'image/jpeg', 'file-name'],
    ]);
    expect(skipped).toEqual([path.join(dir, 'notes.txt')]);
    const byName = await collectInputs([path.join(dir, 'c.dcm')], { idFromFileName: true });
    expect(byName.files.map((f) => f.id)).toEqual(['c']);
  });

  it('refuses a named non-image, a missing path and two files with one id', async () => {
    await expect(collectInputs([path.join(dir, 'notes.txt')])).rejects.toThrow(/not a DICOM, PNG or JPEG/);
    await expect(collectInputs([path.join(dir, 'nope')])).rejects.toThrow(CliError);
    await copyFile(path.join(dir, 'b-chest.png'), path.join(dir, 'sub', 'b-chest.png'));
    await expect(collectInputs([dir])).rejects.toThrow(/same id b-chest/);
    await rm(path.join(dir, 'sub', 'b-chest.png'));
  });

  it('strips image extensions only', () => {
    expect([idFromFileName('/x/a.b.DCM'), idFromFileName('scan.jpeg'), idFromFileName('raw.bin')]).toEqual(['a.b', 'scan', 'raw.bin']);
  });

  it('parses name=value headers, lower-casing names', () => {
    expect(parseHeader('Thorax-Accession=ACC=1')).toEqual(['thorax-accession', 'ACC=1']);
    expect(() => parseHeader('novalue')).toThrow(CliError);
    expect(() => parseHeader('bad name=x')).toThrow(CliError);
  });
});
