import type { CliContext } from '../context';
import { errorMessageOf, refuseOnAuth } from '../context';
import { CliError, EXIT, usageError } from '../exit-codes';
import { renderTable } from '../format/table';

/** The inference admin API's answer (apps/inference/src/admin/models.admin-controller.ts). */
export interface ModelsBody {
  modelDir: string;
  versions: { version: string; roles: string[] }[];
  serving: {
    primary: ServedSlot | null;
    canary: (ServedSlot & { percent: number }) | null;
    shadow: ServedSlot | null;
  };
  selection: { primary: string | null; canary: { version: string; percent: number } | null; shadow: string | null };
  control: { topic: string; state: string; lastError: string | null };
}

interface ServedSlot {
  role: string;
  name: string;
  version: string;
  directory: string;
  provider: string;
  workers: number;
}

export function formatModels(body: ModelsBody): string {
  const s = body.serving;
  const rows = body.versions.map((v) => {
    const roles = v.roles.map((r) => (r === 'canary' && s.canary ? `canary ${s.canary.percent}%` : r));
    return [v.version, roles.join(', ') || '-'];
  });
  const served = [s.primary, s.canary, s.shadow]
    .filter((x): x is ServedSlot => x !== null)
    .map((x) => [x.role, x.name, x.version, x.directory, x.provider, String(x.workers)]);
  const pin = body.selection.primary ? `pinned to ${body.selection.primary}` : 'the highest version, hot-swapped forward';
  return (
    `model directory ${body.modelDir}\n\n` +
    renderTable(['version', 'serving as'], rows) +
    '\n' +
    renderTable(['role', 'model', 'version', 'directory', 'provider', 'workers'], served) +
    `\nprimary: ${pin}\ncontrol topic ${body.control.topic}: ${body.control.state}${body.control.lastError ? ` (last error: ${body.control.lastError})` : ''}\n`
  );
}

/** Longest wait for a model change to be applied, ms (inference gives up after INFERENCE_CONTROL_TIMEOUT_MS, 120 s by default). */
const CHANGE_TIMEOUT_MS = 180_000;

async function call(ctx: CliContext, method: string, path: string, body?: unknown): Promise<ModelsBody> {
  const url = `${ctx.config.THORAX_INFERENCE_URL}/v1/models${path}`;
  // A change answers once this replica has loaded and warmed up the version: allow for that.
  const answer = await ctx.http(method, url, body, method === 'GET' ? undefined : Math.max(ctx.config.THORAX_HTTP_TIMEOUT_MS, CHANGE_TIMEOUT_MS));
  refuseOnAuth(answer, `${method} ${url}`);
  if (answer.status === 400 || answer.status === 404) throw new CliError(EXIT.USAGE, errorMessageOf(answer));
  if (answer.status !== 200) throw new CliError(EXIT.FAILURE, `${method} ${url}: ${errorMessageOf(answer)}`);
  return answer.json as ModelsBody;
}

function show(ctx: CliContext, body: ModelsBody, json: boolean | undefined): number {
  ctx.print(json ? JSON.stringify(body, null, 2) : formatModels(body));
  return EXIT.OK;
}

export async function modelsListCommand(ctx: CliContext, options: { json?: boolean }): Promise<number> {
  return show(ctx, await call(ctx, 'GET', ''), options.json);
}

export async function modelsActivateCommand(ctx: CliContext, version: string | undefined, options: { latest?: boolean; json?: boolean }): Promise<number> {
  if (!version && !options.latest) throw usageError('give a version, or --latest to serve the highest version again');
  if (version && options.latest) throw usageError('give a version or --latest, not both');
  return show(ctx, await call(ctx, 'PUT', '/active', { version: version ?? null }), options.json);
}

export async function modelsCanaryCommand(ctx: CliContext, version: string | undefined, options: { percent?: number; clear?: boolean; json?: boolean }): Promise<number> {
  if (options.clear) {
    if (version) throw usageError('--clear takes no version');
    return show(ctx, await call(ctx, 'DELETE', '/canary'), options.json);
  }
  if (!version || options.percent === undefined) throw usageError('give a version and --percent <0-100>, or --clear');
  return show(ctx, await call(ctx, 'PUT', '/canary', { version, percent: options.percent }), options.json);
}

export async function modelsShadowCommand(ctx: CliContext, version: string | undefined, options: { clear?: boolean; json?: boolean }): Promise<number> {
  if (options.clear) {
    if (version) throw usageError('--clear takes no version');
    return show(ctx, await call(ctx, 'DELETE', '/shadow'), options.json);
  }
  if (!version) throw usageError('give a version, or --clear');
  return show(ctx, await call(ctx, 'PUT', '/shadow', { version }), options.json);
}
