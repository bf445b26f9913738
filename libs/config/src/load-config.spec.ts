import { ConfigError, loadConfig, port, sharedEnv, z } from './load-config';

describe('loadConfig', () => {
  const schema = z.object({ ...sharedEnv, HTTP_PORT: port(8081) });

  it('applies defaults', () => {
    const config = loadConfig(schema, {});
    expect(config.KAFKA_BROKERS).toEqual(['127.0.0.1:9092']);
    expect(config.HTTP_PORT).toBe(8081);
    expect(config.TOPIC_FINDINGS).toBe('thorax.findings.v1');
  });

  it('parses lists and numbers', () => {
    const config = loadConfig(schema, { KAFKA_BROKERS: 'a:1, b:2', HTTP_PORT: '9000' });
    expect(config.KAFKA_BROKERS).toEqual(['a:1', 'b:2']);
    expect(config.HTTP_PORT).toBe(9000);
  });

  it('names the bad variable', () => {
    expect(() => loadConfig(schema, { HTTP_PORT: 'eighty' })).toThrow(ConfigError);
    expect(() => loadConfig(schema, { HTTP_PORT: 'eighty' })).toThrow(/HTTP_PORT/);
    expect(() => loadConfig(schema, { KAFKA_BROKERS: 'nohost' })).toThrow(/KAFKA_BROKERS/);
  });
});
