import { childTraceparent, ensureTraceparent, newTraceparent, parseTraceparent } from './trace-context';

const VALID = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

describe('W3C trace context', () => {
  it('parses a valid traceparent and rejects invalid ones', () => {
    expect(parseTraceparent(VALID)).toEqual({
      version: '00',
      traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
      parentId: '00f067aa0ba902b7',
      flags: '01',
    });
    for (const bad of [
      undefined,
      '',
      'garbage',
      VALID.toUpperCase(),
      '00-00000000000000000000000000000000-00f067aa0ba902b7-01',
      '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01',
      'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
      `${VALID}-extra`,
    ]) {
      expect(parseTraceparent(bad)).toBeNull();
    }
    expect(parseTraceparent(`01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future`)?.traceId).toBe(
      '4bf92f3577b34da6a3ce929d0e0e4736',
    );
  });

  it('keeps a PACS-supplied trace untouched', () => {
    const headers = { traceparent: VALID, tracestate: 'pacs=1', 'thorax-patient-id': 'P1' };
    expect(ensureTraceparent(headers)).toBe(headers);
  });

  it('starts a new trace when none (or an invalid one) was sent, dropping tracestate', () => {
    const started = ensureTraceparent({ 'content-type': 'image/png' });
    expect(started['content-type']).toBe('image/png');
    expect(parseTraceparent(started['traceparent'])).not.toBeNull();
    const replaced = ensureTraceparent({ traceparent: 'nope', tracestate: 'a=b' });
    expect(parseTraceparent(replaced['traceparent'])).not.toBeNull();
    expect(replaced).not.toHaveProperty('tracestate');
    expect(newTraceparent()).not.toBe(newTraceparent());
  });

  it('continues a trace with a new parent id', () => {
    const child = parseTraceparent(childTraceparent(VALID));
    expect(child?.traceId).toBe('4bf92f3577b34da6a3ce929d0e0e4736');
    expect(child?.parentId).not.toBe('00f067aa0ba902b7');
    expect(parseTraceparent(childTraceparent('bad'))).not.toBeNull();
  });
});
