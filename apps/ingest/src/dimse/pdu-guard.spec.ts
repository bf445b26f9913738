import { pduGuard } from './pdu-guard';

function pdu(type: number, length: number, body = length): Buffer {
  const head = Buffer.alloc(6);
  head[0] = type;
  head.writeUInt32BE(length, 2);
  return Buffer.concat([head, Buffer.alloc(body)]);
}

function feed(bytes: Buffer, size: number, max = 1000): string[] {
  const reasons: string[] = [];
  const guard = pduGuard(max, (reason) => reasons.push(reason));
  for (let i = 0; i < bytes.length; i += size) guard(bytes.subarray(i, i + size));
  return reasons;
}

describe('pduGuard', () => {
  const fine = Buffer.concat([pdu(1, 300), pdu(4, 1000), pdu(4, 10), pdu(5, 4)]);

  it.each([1, 5, 6, 7, 999, 4096])('lets PDUs within the limits through in %i-byte chunks', (size) => {
    expect(feed(fine, size)).toEqual([]);
  });

  it.each([1, 7, 4096])('stops at the header of a P-DATA-TF above the announced maximum (%i-byte chunks)', (size) => {
    expect(feed(Buffer.concat([fine, pdu(4, 1001, 0)]), size)).toEqual(['PDU type 4 of 1001 bytes exceeds 1000']);
  });

  it('stops an association request claiming gigabytes, once', () => {
    expect(feed(pdu(1, 0xffffffff, 10), 3)).toEqual(['PDU type 1 of 4294967295 bytes exceeds 1048576']);
  });
});
