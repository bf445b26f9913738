export type CheckResult = { ok: true } | { ok: false; reason: string };
export type Check = () => CheckResult | Promise<CheckResult>;

export const healthy: CheckResult = { ok: true };
export const unhealthy = (reason: string): CheckResult => ({ ok: false, reason });

/** A check that has not answered within this time counts as failing. */
export const DEFAULT_CHECK_TIMEOUT_MS = 2000;

export type Probe = 'liveness' | 'readiness';

/**
 * Components register liveness checks (is the process able to make progress at all, e.g. the
 * Kafka consumer has not crashed) and readiness checks (connected, model loaded, warmed up).
 * `/healthz` and `/readyz` (through @nestjs/terminus) and the `thorax_ready` /
 * `thorax_health_check_up` gauges evaluate them; a check that throws or hangs past its timeout
 * fails instead of failing the probe as a whole.
 */
export class HealthRegistry {
  private readonly checks: Record<Probe, Map<string, Check>> = { liveness: new Map(), readiness: new Map() };

  constructor(private readonly timeoutMs = DEFAULT_CHECK_TIMEOUT_MS) {}

  addLiveness(name: string, check: Check): void {
    this.checks.liveness.set(name, check);
  }

  addReadiness(name: string, check: Check): void {
    this.checks.readiness.set(name, check);
  }

  /** Names of the registered checks of one probe, in registration order. */
  names(probe: Probe): string[] {
    return [...this.checks[probe].keys()];
  }

  /** Runs one registered check with the timeout; an unknown name fails. */
  run(probe: Probe, name: string): Promise<CheckResult> {
    const check = this.checks[probe].get(name);
    return check ? runCheck(check, this.timeoutMs) : Promise.resolve(unhealthy(`no ${probe} check named ${name}`));
  }

  live(): Promise<HealthReport> {
    return this.evaluate('liveness');
  }

  ready(): Promise<HealthReport> {
    return this.evaluate('readiness');
  }

  private async evaluate(probe: Probe): Promise<HealthReport> {
    const results: Record<string, CheckResult> = {};
    await Promise.all(
      this.names(probe).map(async (name) => {
        results[name] = await this.run(probe, name);
      }),
    );
    const status = Object.values(results).every((r) => r.ok) ? 'ok' : 'error';
    return { status, checks: results };
  }
}

export interface HealthReport {
  status: 'ok' | 'error';
  checks: Record<string, CheckResult>;
}

async function runCheck(check: Check, timeoutMs: number): Promise<CheckResult> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<CheckResult>((resolve) => {
    timer = setTimeout(() => resolve(unhealthy(`no answer within ${timeoutMs} ms`)), timeoutMs);
    timer.unref();
  });
  try {
    return await Promise.race([Promise.resolve().then(check), timeout]);
  } catch (error) {
    return unhealthy(error instanceof Error ? error.message : String(error));
  } finally {
    clearTimeout(timer);
  }
}
