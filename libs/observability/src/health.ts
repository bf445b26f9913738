export type CheckResult = { ok: true } | { ok: false; reason: string };
export type Check = () => CheckResult | Promise<CheckResult>;

export const healthy: CheckResult = { ok: true };
export const unhealthy = (reason: string): CheckResult => ({ ok: false, reason });

/**
 * Components register liveness checks (is the process able to make progress at all, e.g. the
 * Kafka consumer has not crashed) and readiness checks (connected, model loaded, warmed up).
 */
export class HealthRegistry {
  private readonly liveness = new Map<string, Check>();
  private readonly readiness = new Map<string, Check>();

  addLiveness(name: string, check: Check): void {
    this.liveness.set(name, check);
  }

  addReadiness(name: string, check: Check): void {
    this.readiness.set(name, check);
  }

  live(): Promise<HealthReport> {
    return evaluate(this.liveness);
  }

  ready(): Promise<HealthReport> {
    return evaluate(this.readiness);
  }
}

export interface HealthReport {
  status: 'ok' | 'error';
  checks: Record<string, CheckResult>;
}

async function evaluate(checks: Map<string, Check>): Promise<HealthReport> {
  const results: Record<string, CheckResult> = {};
  await Promise.all(
    [...checks].map(async ([name, check]) => {
      try {
        results[name] = await check();
      } catch (error) {
        results[name] = unhealthy((error as Error).message);
      }
    }),
  );
  const status = Object.values(results).every((r) => r.ok) ? 'ok' : 'error';
  return { status, checks: results };
}
