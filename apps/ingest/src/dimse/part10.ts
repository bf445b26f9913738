/** The Implementation Class UID of Thorax in the File Meta it writes and in its A-ASSOCIATE-AC. */
export const IMPLEMENTATION_CLASS_UID = '2.25.196403284977532513412196712046262337118';
/** Implementation Version Name (SH, at most 16 characters). */
export const IMPLEMENTATION_VERSION = 'THORAX_1';

export interface FileMetaFields {
  sopClassUid: string;
  sopInstanceUid: string;
  transferSyntaxUid: string;
  /** The calling AE title of the association the instance came over. */
  sourceAeTitle: string;
}

function element(group: number, elem: number, vr: string, value: Buffer): Buffer {
  const longForm = vr === 'OB';
  const head = Buffer.alloc(longForm ? 12 : 8);
  head.writeUInt16LE(group, 0);
  head.writeUInt16LE(elem, 2);
  head.write(vr, 4, 'latin1');
  if (longForm) head.writeUInt32LE(value.length, 8);
  else head.writeUInt16LE(value.length, 6);
  return Buffer.concat([head, value]);
}

/** A string value padded to even length: UIDs with NUL, text with a space (PS3.5 6.2). */
function text(value: string, pad: '\0' | ' '): Buffer {
  return Buffer.from(value.length % 2 === 0 ? value : value + pad, 'latin1');
}

/**
 * The 128-byte preamble, `DICM` and the File Meta Information group (PS3.10 7.1) for a dataset
 * received over the network, so that what goes on the studies topic is an ordinary Part 10 file.
 */
export function part10Header(fields: FileMetaFields): Buffer {
  const group = Buffer.concat([
    element(0x0002, 0x0001, 'OB', Buffer.from([0x00, 0x01])),
    element(0x0002, 0x0002, 'UI', text(fields.sopClassUid, '\0')),
    element(0x0002, 0x0003, 'UI', text(fields.sopInstanceUid, '\0')),
    element(0x0002, 0x0010, 'UI', text(fields.transferSyntaxUid, '\0')),
    element(0x0002, 0x0012, 'UI', text(IMPLEMENTATION_CLASS_UID, '\0')),
    element(0x0002, 0x0013, 'SH', text(IMPLEMENTATION_VERSION, ' ')),
    element(0x0002, 0x0016, 'AE', text(fields.sourceAeTitle, ' ')),
  ]);
  const length = Buffer.alloc(4);
  length.writeUInt32LE(group.length, 0);
  const preamble = Buffer.alloc(132);
  preamble.write('DICM', 128, 'latin1');
  return Buffer.concat([preamble, element(0x0002, 0x0000, 'UL', length), group]);
}
