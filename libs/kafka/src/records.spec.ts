import { asBuffer, decodeHeaders, forwardedHeaders, recordId } from './records';

describe('records', () => {
  it('asBuffer wraps an encoder output without copying it', () => {
    const bytes = new Uint8Array([0, 1, 2, 3, 4, 5]).subarray(2, 5);
    const buffer = asBuffer(bytes);
    expect(Buffer.isBuffer(buffer)).toBe(true);
    expect([...buffer]).toEqual([2, 3, 4]);
    expect(buffer.buffer).toBe(bytes.buffer);
    bytes[0] = 9;
    expect(buffer[0]).toBe(9);
    const already = Buffer.from('x');
    expect(asBuffer(already)).toBe(already);
  });

  it('forwards trace context and receipt time only; extra headers win', () => {
    const headers = {
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      tracestate: 'pacs=1',
      'thorax-received-at': '2026-11-30T10:00:00.000Z',
      'thorax-patient-id': 'P1',
      'content-type': 'image/png',
    };
    expect(forwardedHeaders(headers, { 'thorax-received-at': 'later' })).toEqual({
      traceparent: headers.traceparent,
      tracestate: 'pacs=1',
      'thorax-received-at': 'later',
    });
  });

  it('decodes headers to lower-case strings (first value of a repeated header) and names unkeyed records by position', () => {
    expect(decodeHeaders({ TraceParent: Buffer.from('a'), multi: [Buffer.from('1'), '2'], gone: undefined })).toEqual({ traceparent: 'a', multi: '1' });
    expect(recordId({ topic: 't', partition: 2, offset: '7', key: null, timestamp: 0 })).toBe('unkeyed:t:2:7');
    expect(recordId({ topic: 't', partition: 2, offset: '7', key: 'img-1', timestamp: 0 })).toBe('img-1');
  });
});
