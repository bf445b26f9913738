import { Controller, Delete, Get, HttpCode, HttpException, Inject, Put, Req } from '@nestjs/common';
import { listModelVersions, loadModelArtifact } from '@thorax/model-runtime';
import { principalOf, RequireScope } from '@thorax/observability';
import type { Request } from 'express';
import { INFERENCE_CONFIG, type InferenceConfig } from '../config';
import type { ModelSlot } from '../model/model-slot';
import { ModelService } from '../model/model.service';
import { ModelControlService } from './model-control.service';
import { type ControlKey, isValidVersion, type ModelSelection } from './model-selection';

/** Error codes of the admin API, in `{ "error": { "code", "message" } }` bodies. */
export type AdminErrorCode = 'INVALID_ARGUMENT' | 'NOT_FOUND' | 'FAILED_PRECONDITION' | 'UNAVAILABLE';
const STATUS: Record<AdminErrorCode, number> = { INVALID_ARGUMENT: 400, NOT_FOUND: 404, FAILED_PRECONDITION: 422, UNAVAILABLE: 503 };

export class AdminApiError extends HttpException {
  constructor(code: AdminErrorCode, message: string) {
    super({ error: { code, message } }, STATUS[code]);
  }
}

export interface ServedSlot {
  role: ModelSlot['role'];
  name: string;
  version: string;
  directory: string;
  provider: string;
  workers: number;
}

export interface ModelsBody {
  modelDir: string;
  /** Version directories under MODEL_DIR, oldest first, with the roles that serve them here. */
  versions: { version: string; roles: ModelSlot['role'][] }[];
  /** What this replica serves now. */
  serving: { primary: ServedSlot | null; canary: (ServedSlot & { percent: number }) | null; shadow: ServedSlot | null };
  /** The selection this replica serves (primary null: the highest version, hot-swapped forward). */
  selection: ModelSelection;
  /** The control topic every replica follows: its name, state and the last failed change here. */
  control: { topic: string; state: string; lastError: string | null };
}

/**
 * Model admin API on inference's HTTP port (admin scope when API auth is on): list the versions
 * of MODEL_DIR, activate one, set a canary share or a shadow version. Changes go through the
 * control topic, so every replica applies them and a restart keeps them; the answer comes once
 * this replica has loaded and warmed up the change. A version that fails to load here is
 * withdrawn again (the previous setting is written back), and the old one keeps serving.
 */
@Controller('v1/models')
@RequireScope('admin')
export class ModelsAdminController {
  constructor(
    @Inject(INFERENCE_CONFIG) private readonly config: InferenceConfig,
    private readonly models: ModelService,
    private readonly control: ModelControlService,
  ) {}

  @Get()
  async list(): Promise<ModelsBody> {
    const versions = await listModelVersions(this.config.MODEL_DIR).catch((): string[] => []);
    const { primary, canary, shadow } = this.models.slots;
    const served = [primary, canary, shadow].filter((s): s is ModelSlot => s !== null);
    const selection = this.models.selection;
    return {
      modelDir: this.config.MODEL_DIR,
      versions: versions.map((version) => ({ version, roles: served.filter((s) => s.directory === version).map((s) => s.role) })),
      serving: {
        primary: primary ? describe(primary) : null,
        canary: canary ? { ...describe(canary), percent: selection.canary?.percent ?? 0 } : null,
        shadow: shadow ? describe(shadow) : null,
      },
      selection,
      control: { topic: this.control.topic, state: this.control.state.state, lastError: this.control.state.lastError },
    };
  }

  /** `{ "version": "…" }` pins the primary; `{ "version": null }` serves the highest version again. */
  @Put('active')
  @HttpCode(200)
  async activate(@Req() req: Request): Promise<ModelsBody> {
    const body = await readJsonBody(req);
    const version = versionField(body, true);
    if (version !== null) await this.checkVersion(version);
    return this.change('primary', { ...this.models.selection, primary: version }, req);
  }

  /** `{ "version": "…", "percent": 0-100 }`. */
  @Put('canary')
  @HttpCode(200)
  async setCanary(@Req() req: Request): Promise<ModelsBody> {
    const body = await readJsonBody(req);
    const version = versionField(body, false) as string;
    const percent = (body as { percent?: unknown }).percent;
    if (typeof percent !== 'number' || !Number.isFinite(percent) || percent < 0 || percent > 100) {
      throw new AdminApiError('INVALID_ARGUMENT', 'percent must be a number from 0 to 100');
    }
    await this.checkVersion(version);
    return this.change('canary', { ...this.models.selection, canary: { version, percent } }, req);
  }

  @Delete('canary')
  @HttpCode(200)
  async clearCanary(@Req() req: Request): Promise<ModelsBody> {
    return this.change('canary', { ...this.models.selection, canary: null }, req);
  }

  /** `{ "version": "…" }`. */
  @Put('shadow')
  @HttpCode(200)
  async setShadow(@Req() req: Request): Promise<ModelsBody> {
    const version = versionField(await readJsonBody(req), false) as string;
    await this.checkVersion(version);
    return this.change('shadow', { ...this.models.selection, shadow: version }, req);
  }

  @Delete('shadow')
  @HttpCode(200)
  async clearShadow(@Req() req: Request): Promise<ModelsBody> {
    return this.change('shadow', { ...this.models.selection, shadow: null }, req);
  }

  /** The version exists under MODEL_DIR and its file's metadata parses (before any replica tries it). */
  private async checkVersion(version: string): Promise<void> {
    const versions = await listModelVersions(this.config.MODEL_DIR).catch((): string[] => []);
    if (!versions.includes(version)) {
      throw new AdminApiError('NOT_FOUND', `model version ${version} not found in MODEL_DIR (have: ${versions.join(', ') || 'none'})`);
    }
    try {
      await loadModelArtifact(this.config.MODEL_DIR, version, this.config.INFERENCE_MODEL_FILE);
    } catch (error) {
      throw new AdminApiError('FAILED_PRECONDITION', `model version ${version} is not servable: ${(error as Error).message}`);
    }
  }

  private async change(key: ControlKey, next: ModelSelection, req: Request): Promise<ModelsBody> {
    if (!this.control.available) {
      const { topic, state } = this.control.state;
      throw new AdminApiError('UNAVAILABLE', `model control topic ${topic} is ${state}: changes could not reach every replica or survive a restart`);
    }
    const previous = this.models.selection;
    const by = principalOf(req)?.subject ?? null;
    let result;
    try {
      result = await this.control.change(key, next, by);
    } catch (error) {
      throw new AdminApiError('UNAVAILABLE', `the change was not confirmed: ${(error as Error).message}`);
    }
    if (!result.outcome.ok) {
      // Withdraw it, so no replica keeps trying and a restart does not load it.
      await this.control.change(key, previous, by).catch(() => undefined);
      throw new AdminApiError('FAILED_PRECONDITION', `the change failed to load and was withdrawn; the versions served before keep serving: ${result.outcome.error}`);
    }
    return this.list();
  }
}

function describe(slot: ModelSlot): ServedSlot {
  return { role: slot.role, name: slot.name, version: slot.version, directory: slot.directory, provider: slot.pool.provider, workers: slot.pool.size };
}

function versionField(body: unknown, nullable: boolean): string | null {
  const version = (body as { version?: unknown } | null)?.version;
  if (nullable && version === null) return null;
  if (!isValidVersion(version)) throw new AdminApiError('INVALID_ARGUMENT', `version must be a version directory name${nullable ? ' or null' : ''}`);
  return version;
}

/** Largest admin request body, bytes. */
const MAX_BODY_BYTES = 4096;

/** The request's JSON body (the services run without a global body parser). */
export async function readJsonBody(req: Request): Promise<unknown> {
  const type = String(req.headers['content-type'] ?? '');
  if (!/^application\/json\b/i.test(type)) throw new AdminApiError('INVALID_ARGUMENT', 'send a JSON body (content-type: application/json)');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new AdminApiError('INVALID_ARGUMENT', `body larger than ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch {
    throw new AdminApiError('INVALID_ARGUMENT', 'the body is not valid JSON');
  }
}
