import { serviceUrls } from '../config';
import type { CliContext } from '../context';
import { CliError, EXIT } from '../exit-codes';
import { renderTable } from '../format/table';
import { parsePrometheusText, ratesBetween, type Sample, type ServiceRates } from './prometheus-text';

export interface StatusOptions {
  /** Seconds between the two /metrics scrapes the rates come from. */
  interval: number;
  json?: boolean;
  /** Consumer groups whose id starts with this (default `thorax-`). */
  groupPrefix: string;
}

interface ServiceStatus {
  service: string;
  url: string;
  ready: boolean;
  /** Why not ready (failing checks), or the connection error. */
  detail: string;
  models: { model: string; version: string; provider: string }[];
  rates: ServiceRates | null;
}

/** Failing readiness checks from a terminus /readyz body. */
export function notReadyDetail(body: unknown): string {
  const details = (body as { details?: Record<string, { status?: string; message?: string }> } | null)?.details ?? {};
  const failing = Object.entries(details).filter(([, v]) => v.status !== 'up');
  return failing.map(([k, v]) => `${k}: ${v.message ?? v.status ?? 'down'}`).join('; ') || 'not ready';
}

async function scrape(ctx: CliContext, url: string): Promise<Sample[] | null> {
  try {
    const answer = await ctx.http('GET', `${url}/metrics`);
    return answer.status === 200 ? parsePrometheusText(answer.text) : null;
  } catch {
    return null;
  }
}

/** Readiness of every service, consumer lag per group and partition, the active model and provider, recent error rates. */
export async function statusCommand(ctx: CliContext, options: StatusOptions): Promise<number> {
  const urls = Object.entries(serviceUrls(ctx.config));
  const first = await Promise.all(urls.map(([, url]) => scrape(ctx, url)));
  const started = Date.now();
  const lagPromise = ctx
    .kafka()
    .consumerLag(options.groupPrefix)
    .then((rows) => ({ rows, error: null as string | null }))
    .catch((error: unknown) => ({ rows: [], error: (error as Error).message }));
  const statuses: ServiceStatus[] = await Promise.all(
    urls.map(async ([service, url]): Promise<ServiceStatus> => {
      try {
        const answer = await ctx.http('GET', `${url}/readyz`);
        const ready = answer.status === 200;
        return { service, url, ready, detail: ready ? 'ready' : notReadyDetail(answer.json), models: [], rates: null };
      } catch (error) {
        return { service, url, ready: false, detail: (error as Error).message, models: [], rates: null };
      }
    }),
  );
  const wait = options.interval * 1000 - (Date.now() - started);
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  const second = await Promise.all(urls.map(([, url]) => scrape(ctx, url)));
  const seconds = Math.max(0.001, (Date.now() - started) / 1000);
  statuses.forEach((s, i) => {
    const before = first[i];
    const after = second[i];
    if (after) {
      s.models = after.filter((x) => x.name === 'thorax_model_info' && x.value === 1).map((x) => ({ model: x.labels['model'] ?? '?', version: x.labels['version'] ?? '?', provider: x.labels['provider'] ?? '?' }));
    }
    if (before && after) s.rates = ratesBetween(before, after, seconds);
  });
  const lag = await lagPromise;
  if (options.json) {
    ctx.print(JSON.stringify({ services: statuses, lag: lag.rows.map((r) => ({ ...r, committed: r.committed?.toString() ?? null, high: r.high.toString(), lag: r.lag.toString() })), lagError: lag.error, intervalSeconds: seconds }, null, 2));
  } else {
    ctx.print(renderTable(['service', 'ready', 'url', 'detail'], statuses.map((s) => [s.service, s.ready ? 'yes' : 'NO', s.url, s.detail])));
    const models = statuses.flatMap((s) => s.models.map((m) => [s.service, m.model, m.version, m.provider]));
    ctx.print(`\nactive models\n${models.length > 0 ? renderTable(['service', 'model', 'version', 'provider'], models) : '(none reported)\n'}`);
    const rateRows = statuses.map((s) =>
      s.rates
        ? [s.service, s.rates.messagesPerSecond.toFixed(2), s.rates.deadLetteredPerSecond.toFixed(2), s.rates.retriedPerSecond.toFixed(2), Number.isNaN(s.rates.deadLetterShare) ? '-' : `${(s.rates.deadLetterShare * 100).toFixed(1)}%`, Object.entries(s.rates.errors).map(([k, v]) => `${k} ${v.toFixed(2)}/s`).join(', ') || '-']
        : [s.service, '-', '-', '-', '-', 'no metrics'],
    );
    ctx.print(`\nrates over the last ${seconds.toFixed(1)} s\n${renderTable(['service', 'records/s', 'dead-lettered/s', 'retried/s', 'dead-letter share', 'error events/s'], rateRows)}`);
    const lagRows = lag.rows.map((r) => [r.group, r.topic, r.partition, r.committed?.toString() ?? '-', r.high.toString(), r.lag.toString()]);
    ctx.print(
      `\nconsumer lag\n${lag.error ? `unavailable: ${lag.error}\n` : lagRows.length > 0 ? renderTable(['group', 'topic', 'partition', 'committed', 'end', 'lag'], lagRows, ['left', 'left', 'right', 'right', 'right', 'right']) : '(no consumer group has committed offsets)\n'}`,
    );
  }
  if (lag.error && statuses.every((s) => !s.ready)) throw new CliError(EXIT.FAILURE, `nothing reachable: ${lag.error}`);
  return statuses.every((s) => s.ready) && !lag.error ? EXIT.OK : EXIT.NOT_OK;
}
