import { ImageAccepted, PreprocessedImage, StudyRef } from '@thorax/contracts';
import { parseDicom } from 'dicom-parser';
import { createHash } from 'node:crypto';
import { sniffInputType } from '../publish/input-files';

/** DICOM header fields `dlq show` prints: acquisition and identity of the image, no patient identifiers, no pixels. */
const DICOM_TAGS: [string, string][] = [
  ['x00020010', 'TransferSyntaxUID'],
  ['x00080016', 'SOPClassUID'],
  ['x00080018', 'SOPInstanceUID'],
  ['x0020000d', 'StudyInstanceUID'],
  ['x00080060', 'Modality'],
  ['x00185101', 'ViewPosition'],
  ['x00180015', 'BodyPartExamined'],
  ['x00280004', 'PhotometricInterpretation'],
];

/**
 * A dead letter's value for people: what it is and its metadata, never its pixel bytes (raw
 * files, protobuf image and tensor records) and never DICOM patient identifiers.
 */
export function describeValue(topic: string, value: Buffer | null, omitted: number | null): string[] {
  if (!value || value.length === 0) {
    return [omitted !== null ? `value      none: the DLQ kept the headers only (the original was ${omitted} bytes); not replayable` : 'value      empty'];
  }
  const lines = [`value      ${value.length} bytes, sha256 ${createHash('sha256').update(value).digest('hex')}`];
  const kind = /\.images\.|images\.v\d/.test(topic) ? 'image' : /tensors\.v\d/.test(topic) ? 'tensor' : /findings\.v\d/.test(topic) ? 'findings' : 'raw';
  try {
    if (kind === 'image') {
      const m = ImageAccepted.decode(value);
      lines.push(`           thorax.v1.ImageAccepted (pixel data not shown: ${m.data?.length ?? 0} bytes${m.uri ? `, claim check ${m.uri}` : ''})`);
      lines.push(indentJson({ id: m.id, contentType: m.contentType, study: m.study ? StudyRef.toJSON(m.study) : null, priority: m.priority, receivedAt: m.receivedAt?.toISOString() ?? null, sizeBytes: m.sizeBytes, sha256: m.sha256 }));
      return lines;
    }
    if (kind === 'tensor') {
      const m = PreprocessedImage.decode(value);
      lines.push(`           thorax.v1.PreprocessedImage (pixel data not shown: ${m.pixels.length} bytes)`);
      lines.push(indentJson({ id: m.id, study: m.study ? StudyRef.toJSON(m.study) : null, width: m.width, height: m.height, pixelFormat: m.pixelFormat, preprocessing: m.preprocessing }));
      return lines;
    }
    if (kind === 'findings') {
      lines.push(indentJson(JSON.parse(value.toString('utf8'))));
      return lines;
    }
  } catch (error) {
    lines.push(`           does not decode as a ${kind} record: ${(error as Error).message}`);
    return lines;
  }
  const type = sniffInputType(value);
  lines.push(`           ${type ?? 'not DICOM, PNG or JPEG'} (file bytes not shown)`);
  if (type === 'application/dicom') {
    try {
      const ds = parseDicom(new Uint8Array(value.buffer, value.byteOffset, value.byteLength), { untilTag: 'x7fe00010' });
      const tags: Record<string, string | number | null> = {};
      for (const [tag, name] of DICOM_TAGS) tags[name] = ds.string(tag)?.trim() ?? null;
      tags['BitsStored'] = ds.uint16('x00280101') ?? null;
      tags['Rows'] = ds.uint16('x00280010') ?? null;
      tags['Columns'] = ds.uint16('x00280011') ?? null;
      lines.push(indentJson(tags));
    } catch (error) {
      lines.push(`           DICOM header does not parse: ${(error as Error).message}`);
    }
  }
  return lines;
}

function indentJson(value: unknown): string {
  return JSON.stringify(value, null, 2)
    .split('\n')
    .map((l) => `           ${l}`)
    .join('\n');
}
