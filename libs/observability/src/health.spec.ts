import { HealthRegistry, healthy, unhealthy } from './health';

describe('HealthRegistry', () => {
  it('is ok only when every check of the probe passes', async () => {
    const health = new HealthRegistry();
    health.addLiveness('consumer', () => healthy);
    health.addReadiness('kafka-producer', () => healthy);
    health.addReadiness('model', () => unhealthy('model not loaded yet'));
    expect(await health.live()).toEqual({ status: 'ok', checks: { consumer: { ok: true } } });
    expect(await health.ready()).toEqual({
      status: 'error',
      checks: { 'kafka-producer': { ok: true }, model: { ok: false, reason: 'model not loaded yet' } },
    });
    expect(health.names('readiness')).toEqual(['kafka-producer', 'model']);
  });

  it('fails a check that throws or hangs instead of hanging the probe', async () => {
    const health = new HealthRegistry(50);
    health.addReadiness('throws', () => {
      throw new Error('store gone');
    });
    health.addReadiness('hangs', () => new Promise(() => undefined));
    health.addReadiness('slow-ok', async () => {
      await new Promise((r) => setTimeout(r, 10));
      return healthy;
    });
    const report = await health.ready();
    expect(report.status).toBe('error');
    expect(report.checks).toEqual({
      throws: { ok: false, reason: 'store gone' },
      hangs: { ok: false, reason: 'no answer within 50 ms' },
      'slow-ok': { ok: true },
    });
    expect(await health.run('readiness', 'missing')).toEqual({ ok: false, reason: 'no readiness check named missing' });
  });
});
