import { ConfigError, loadConfig } from '@thorax/config';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { topicsConfigSchema } from './config';

describe('topics config', () => {
  it('defaults to the repository topics.conf, file replication, a 3-minute wait', () => {
    const config = loadConfig(topicsConfigSchema, {});
    expect(config.TOPICS_CONF).toBe(path.resolve(__dirname, '..', '..', '..', 'deploy', 'kafka', 'topics.conf'));
    expect(existsSync(config.TOPICS_CONF)).toBe(true);
    expect(config.KAFKA_TOPIC_REPLICATION_FACTOR).toBeUndefined();
    expect(config.KAFKA_TOPIC_MIN_INSYNC_REPLICAS).toBeUndefined();
    expect(config.TOPICS_WAIT_TIMEOUT_MS).toBe(180_000);
    expect(config.TOPICS_DRY_RUN).toBe(false);
  });

  it('takes replication overrides and names a bad one', () => {
    const config = loadConfig(topicsConfigSchema, { KAFKA_TOPIC_REPLICATION_FACTOR: '1', KAFKA_TOPIC_MIN_INSYNC_REPLICAS: '1', TOPICS_DRY_RUN: 'true' });
    expect([config.KAFKA_TOPIC_REPLICATION_FACTOR, config.KAFKA_TOPIC_MIN_INSYNC_REPLICAS, config.TOPICS_DRY_RUN]).toEqual([1, 1, true]);
    expect(() => loadConfig(topicsConfigSchema, { KAFKA_TOPIC_REPLICATION_FACTOR: '0' })).toThrow(ConfigError);
    expect(() => loadConfig(topicsConfigSchema, { KAFKA_TOPIC_REPLICATION_FACTOR: 'three' })).toThrow(/KAFKA_TOPIC_REPLICATION_FACTOR/);
    expect(() => loadConfig(topicsConfigSchema, { TOPICS_WAIT_TIMEOUT_MS: '-5' })).toThrow(/TOPICS_WAIT_TIMEOUT_MS/);
  });
});
