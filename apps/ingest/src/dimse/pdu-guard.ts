/** P-DATA-TF: the only PDU that carries datasets; its length is bounded by our announced maximum. */
const P_DATA_TF = 0x04;
/** Any other PDU (association request, release, abort) is small; 1 MiB is far above real ones. */
const OTHER_PDU_MAX = 1024 * 1024;

/**
 * Watches the PDU headers of an incoming byte stream (PS3.8 9.3: type, reserved, 32-bit length)
 * and calls `violated` as soon as one declares more than it may: a P-DATA-TF longer than the
 * maximum PDU length this SCP announced, any other PDU longer than 1 MiB. The DICOM library
 * buffers a PDU whole before parsing it, so without this a peer could make it hold gigabytes.
 */
export function pduGuard(maxPduBytes: number, violated: (reason: string) => void): (chunk: Buffer) => void {
  let remaining = 0;
  let header = Buffer.alloc(0);
  let tripped = false;
  return (chunk: Buffer) => {
    let at = 0;
    while (at < chunk.length && !tripped) {
      if (remaining > 0) {
        const skip = Math.min(remaining, chunk.length - at);
        remaining -= skip;
        at += skip;
        continue;
      }
      const take = Math.min(6 - header.length, chunk.length - at);
      header = Buffer.concat([header, chunk.subarray(at, at + take)]);
      at += take;
      if (header.length < 6) return;
      const type = header[0] as number;
      const length = header.readUInt32BE(2);
      header = Buffer.alloc(0);
      const limit = type === P_DATA_TF ? maxPduBytes : OTHER_PDU_MAX;
      if (length > limit) {
        tripped = true;
        violated(`PDU type ${type} of ${length} bytes exceeds ${limit}`);
        return;
      }
      remaining = length;
    }
  };
}
