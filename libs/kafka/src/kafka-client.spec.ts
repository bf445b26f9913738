import pino from 'pino';
import { kafkaConfig, RepeatFilter, tlsOptions } from './kafka-client';

const log = pino({ level: 'silent' });

describe('kafkaConfig', () => {
  it('is plaintext without SASL by default', () => {
    const config = kafkaConfig({ brokers: ['b:9092'], clientId: 'thorax-ingest' }, log);
    expect(config.brokers).toEqual(['b:9092']);
    expect(config.clientId).toBe('thorax-ingest');
    expect(config.ssl).toBeUndefined();
    expect(config.sasl).toBeUndefined();
    expect(typeof config.socketFactory).toBe('function');
  });

  it('verifies brokers against the CA, presents the client pair and checks the server name', () => {
    const ca = Buffer.from('ca'), cert = Buffer.from('cert'), key = Buffer.from('key');
    const config = kafkaConfig(
      {
        brokers: ['kafka-0:9093'],
        clientId: 'c',
        tls: { ca, cert, key, servername: 'kafka.internal' },
        sasl: { mechanism: 'scram-sha-512', username: 'thorax', password: 'pw' },
      },
      log,
    );
    expect(config.ssl).toEqual({ rejectUnauthorized: true, ca, cert, key, servername: 'kafka.internal' });
    expect(config.sasl).toEqual({ mechanism: 'scram-sha-512', username: 'thorax', password: 'pw' });
  });

  it('uses the system CAs when no CA file is given, and never turns verification off', () => {
    expect(tlsOptions({ brokers: [], clientId: 'c', tls: {} })).toEqual({ rejectUnauthorized: true });
    expect(tlsOptions({ brokers: [], clientId: 'c', tls: null })).toBeNull();
  });

  it('maps each SASL mechanism', () => {
    for (const mechanism of ['plain', 'scram-sha-256', 'scram-sha-512'] as const) {
      const config = kafkaConfig({ brokers: ['b:1'], clientId: 'c', sasl: { mechanism, username: 'u', password: 'p' } }, log);
      expect(config.sasl).toEqual({ mechanism, username: 'u', password: 'p' });
    }
  });
});

describe('RepeatFilter', () => {
  it('lets a line through once per window and counts what it held back', () => {
    let t = 0;
    const filter = new RepeatFilter(60_000, () => t);
    expect(filter.admit('a')).toBe(0);
    t = 1000;
    expect(filter.admit('a')).toBeNull();
    expect(filter.admit('a')).toBeNull();
    expect(filter.admit('b')).toBe(0);
    t = 60_000;
    expect(filter.admit('a')).toBe(2);
    expect(filter.admit('a')).toBeNull();
  });
});
