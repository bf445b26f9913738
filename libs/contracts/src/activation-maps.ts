/**
 * `thorax.cam.v1`: the class activation maps of one image, every label of the model, as one
 * object of the object store (`review/<id>/<model version>/cam.bin`). Inference writes it before
 * the findings event that names it (`activationMaps`); results renders heatmaps from it on request.
 * The layout is documented in docs/contract.md ("Activation maps object") so that any consumer can
 * read it without Thorax code:
 *
 * | offset  | bytes   | content                                                                |
 * |---------|---------|------------------------------------------------------------------------|
 * | 0       | 4       | magic, ASCII `TXCM`                                                     |
 * | 4       | 2       | format version, uint16 little-endian: 1                                 |
 * | 6       | 2       | reserved, 0                                                             |
 * | 8       | 4       | header length H, uint32 little-endian                                   |
 * | 12      | H       | header: UTF-8 JSON object, padded with spaces so that 12 + H is a multiple of 4 |
 * | 12 + H  | 4·L·h·w | maps: float32 little-endian, label by label, each row by row, top first |
 *
 * The object is exactly 12 + H + 4·L·h·w bytes.
 */

export const ACTIVATION_MAPS_FORMAT = 'thorax.cam.v1';
/** Media type inference stores the object with. */
export const ACTIVATION_MAPS_CONTENT_TYPE = 'application/vnd.thorax.cam.v1';
/** Largest object a reader accepts (64 labels of 64×64 maps, plus the header). */
export const ACTIVATION_MAPS_MAX_BYTES = 1024 * 1024 + 64 * 1024;

const MAGIC = 'TXCM';
const VERSION = 1;
const PREAMBLE = 12;
const MAX_LABELS = 64;
const MAX_SIDE = 1024;
const MAX_CELLS = 64 * 64 * 64;

/** The pixels of an image a map covers. */
export interface MapRegion {
  top: number;
  left: number;
  height: number;
  width: number;
}

/** What the header of a `thorax.cam.v1` object says. */
export interface ActivationMapsHeader {
  /** The labels with a map, in the order of the maps (the model's label order). */
  labels: string[];
  /** Map rows and columns. */
  height: number;
  width: number;
  /** The wire image the maps belong to (8-bit grey, `width`×`height` pixels). */
  image: { width: number; height: number };
  /** The pixels of the wire image the maps cover. */
  region: MapRegion;
  /** `logit`: a label's mean map value plus its bias is the label's logit. */
  units: 'logit';
  /** Per label, in the order of `labels`. */
  bias: number[];
}

/** A decoded object: its header and the maps, label-major (labels × height × width). */
export interface ActivationMaps extends ActivationMapsHeader {
  maps: Float32Array;
}

export class ActivationMapsInvalidError extends Error {
  override readonly name = 'ActivationMapsInvalidError';
}

function fail(message: string): never {
  throw new ActivationMapsInvalidError(`not a valid ${ACTIVATION_MAPS_FORMAT} object: ${message}`);
}

const isInt = (v: unknown, min: number, max: number): v is number => Number.isInteger(v) && (v as number) >= min && (v as number) <= max;

/** Throws ActivationMapsInvalidError unless the header is consistent (and the maps fit it, when given). */
function check(header: ActivationMapsHeader, cells?: number): void {
  const { labels, height, width, image, region, units, bias } = header;
  if (!Array.isArray(labels) || labels.length < 1 || labels.length > MAX_LABELS) fail(`labels must be 1..${MAX_LABELS} names`);
  if (labels.some((l) => typeof l !== 'string' || l.length === 0) || new Set(labels).size !== labels.length) fail('labels must be distinct non-empty names');
  if (!isInt(height, 1, MAX_SIDE) || !isInt(width, 1, MAX_SIDE)) fail(`height and width must be integers in 1..${MAX_SIDE}`);
  if (labels.length * height * width > MAX_CELLS) fail(`more than ${MAX_CELLS} map cells`);
  if (!image || !isInt(image.width, 1, 65535) || !isInt(image.height, 1, 65535)) fail('image must have an integer width and height');
  if (!region || !isInt(region.top, 0, 65535) || !isInt(region.left, 0, 65535) || !isInt(region.height, 1, 65535) || !isInt(region.width, 1, 65535))
    fail('region must have integer top, left, height and width');
  if (region.top + region.height > image.height || region.left + region.width > image.width) fail('region lies outside the image');
  if (units !== 'logit') fail('units must be "logit"');
  if (!Array.isArray(bias) || bias.length !== labels.length || bias.some((b) => typeof b !== 'number' || !Number.isFinite(b)))
    fail('bias must hold one finite number per label');
  if (cells !== undefined && cells !== labels.length * height * width) fail(`${cells} map values for ${labels.length}×${height}×${width}`);
}

/** Encodes maps (label-major, labels × height × width) with their header. */
export function encodeActivationMaps(value: ActivationMaps): Buffer {
  check(value, value.maps.length);
  const { labels, height, width, image, region, units, bias } = value;
  // Fixed key order: the same maps always give the same bytes.
  const json = JSON.stringify({
    format: ACTIVATION_MAPS_FORMAT,
    labels,
    height,
    width,
    image: { width: image.width, height: image.height },
    region: { top: region.top, left: region.left, height: region.height, width: region.width },
    units,
    bias,
  });
  const text = Buffer.from(json, 'utf8');
  const headerLength = text.length + ((4 - ((PREAMBLE + text.length) % 4)) % 4);
  const out = Buffer.alloc(PREAMBLE + headerLength + value.maps.length * 4, 0x20);
  out.write(MAGIC, 0, 'ascii');
  out.writeUInt16LE(VERSION, 4);
  out.writeUInt16LE(0, 6);
  out.writeUInt32LE(headerLength, 8);
  text.copy(out, PREAMBLE);
  let offset = PREAMBLE + headerLength;
  for (const v of value.maps) {
    if (!Number.isFinite(v)) fail(`map value ${(offset - PREAMBLE - headerLength) / 4} is ${v}`);
    out.writeFloatLE(v, offset);
    offset += 4;
  }
  return out;
}

/** Decodes and checks an object; throws ActivationMapsInvalidError on anything unexpected. */
export function decodeActivationMaps(bytes: Uint8Array): ActivationMaps {
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length > ACTIVATION_MAPS_MAX_BYTES) fail(`${buf.length} bytes, more than ${ACTIVATION_MAPS_MAX_BYTES}`);
  if (buf.length < PREAMBLE || buf.toString('ascii', 0, 4) !== MAGIC) fail('no TXCM magic');
  const version = buf.readUInt16LE(4);
  if (version !== VERSION) fail(`format version ${version} (this reader knows ${VERSION})`);
  const headerLength = buf.readUInt32LE(8);
  if ((PREAMBLE + headerLength) % 4 !== 0 || PREAMBLE + headerLength > buf.length) fail(`header length ${headerLength}`);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(buf.toString('utf8', PREAMBLE, PREAMBLE + headerLength)) as Record<string, unknown>;
  } catch (error) {
    fail(`header is not JSON (${(error as Error).message})`);
  }
  if (header === null || typeof header !== 'object' || header['format'] !== ACTIVATION_MAPS_FORMAT) fail(`header format must be ${ACTIVATION_MAPS_FORMAT}`);
  const parsed = header as unknown as ActivationMapsHeader;
  const body = buf.length - PREAMBLE - headerLength;
  if (body % 4 !== 0) fail(`${body} bytes of maps is not a whole number of float32 values`);
  check(parsed, body / 4);
  const maps = new Float32Array(body / 4);
  for (let i = 0, offset = PREAMBLE + headerLength; i < maps.length; i += 1, offset += 4) {
    const v = buf.readFloatLE(offset);
    if (!Number.isFinite(v)) fail(`map value ${i} is ${v}`);
    maps[i] = v;
  }
  return {
    labels: [...parsed.labels],
    height: parsed.height,
    width: parsed.width,
    image: { width: parsed.image.width, height: parsed.image.height },
    region: { top: parsed.region.top, left: parsed.region.left, height: parsed.region.height, width: parsed.region.width },
    units: 'logit',
    bias: [...parsed.bias],
    maps,
  };
}
