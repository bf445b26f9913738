/**
 * The Helm chart as a cluster would receive it: `helm template` with the default, GPU and secure
 * values (and a few overrides), parsed back into objects and checked field by field — security
 * contexts, probes, resources, autoscaling triggers, selectors, disruption budgets, network
 * policies, secrets, the shared object store, ingest's DICOM and gRPC edges, and the rules and
 * dashboards shipped from deploy/. Every render starts from a shared object-store volume (the chart
 * refuses to render without a store) unless a test gives its own base. Schema validation of the
 * same output (kubeconform) is `bash scripts/k8s-tools.sh check`.
 */
import { REPO_ROOT } from '@thorax/testing';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse, parseAllDocuments } from 'yaml';

// The first run on a fresh machine builds helm from source (minutes).
jest.setTimeout(900_000);

const CHART = path.join(REPO_ROOT, 'helm', 'thorax');
const COMPONENTS = ['ingest', 'preprocess', 'inference', 'results'] as const;
type Component = (typeof COMPONENTS)[number];
const PORTS: Record<Component, number> = { ingest: 8081, preprocess: 8082, inference: 8083, results: 8080 };
const CONSUMES: Record<Component, string> = {
  ingest: 'thorax.studies.v1',
  preprocess: 'thorax.images.v1',
  inference: 'thorax.tensors.v1',
  results: 'thorax.findings.v1',
};

/* eslint-disable @typescript-eslint/no-explicit-any -- rendered manifests are free-form YAML */
type K8sObject = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec?: any;
  data?: Record<string, string>;
};

let helm = '';
const HELM_HOME = path.join(REPO_ROOT, '.cache', 'k8s-tools', 'helm-home');

/** What every render starts from unless a test says otherwise: the chart needs an object store. */
const SHARED_VOLUME = ['--set', 'objectStore.volume.enabled=true'];

function helmTemplate(
  release: string,
  args: string[] = [],
  base: string[] = SHARED_VOLUME,
): { ok: true; objects: K8sObject[] } | { ok: false; error: string } {
  const run = spawnSync(helm, ['template', release, CHART, '--namespace', 'thorax', ...base, ...args], {
    encoding: 'utf8',
    env: {
      ...process.env,
      HELM_CACHE_HOME: path.join(HELM_HOME, 'cache'),
      HELM_CONFIG_HOME: path.join(HELM_HOME, 'config'),
      HELM_DATA_HOME: path.join(HELM_HOME, 'data'),
    },
  });
  if (run.status !== 0) return { ok: false, error: run.stderr };
  // YAML 1.1, as the API server reads manifests: a file mode such as 0440 is octal there.
  const objects = parseAllDocuments(run.stdout, { version: '1.1' })
    .map((doc) => doc.toJS() as K8sObject | null)
    .filter((o): o is K8sObject => o !== null);
  return { ok: true, objects };
}

function render(release: string, args: string[] = [], base: string[] = SHARED_VOLUME): K8sObject[] {
  const result = helmTemplate(release, args, base);
  if (!result.ok) throw new Error(`helm template ${args.join(' ')} failed: ${result.error}`);
  return result.objects;
}

const values = (name: string): string[] => ['-f', path.join(CHART, name)];
const ofKind = (objects: K8sObject[], kind: string): K8sObject[] => objects.filter((o) => o.kind === kind);
function named(objects: K8sObject[], kind: string, name: string): K8sObject {
  const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
  if (!found) throw new Error(`no ${kind} ${name} in ${objects.map((o) => `${o.kind}/${o.metadata.name}`).join(', ')}`);
  return found;
}
const deployment = (objects: K8sObject[], c: Component): K8sObject => named(objects, 'Deployment', `thorax-${c}`);
const container = (d: K8sObject): any => d.spec.template.spec.containers[0];
const envOf = (d: K8sObject): Record<string, any> =>
  Object.fromEntries(
    (container(d).env as { name: string; value?: string; valueFrom?: unknown }[]).map((e) => [
      e.name,
      e.value ?? e.valueFrom,
    ]),
  );
const matches = (selector: Record<string, string>, labels: Record<string, string>): boolean =>
  Object.entries(selector).every(([k, v]) => labels[k] === v);

beforeAll(() => {
  helm = execFileSync('bash', [path.join(REPO_ROOT, 'scripts', 'k8s-tools.sh'), 'path', 'helm'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  }).trim();
});

describe('default values (with the shared object-store volume)', () => {
  let objects: K8sObject[];
  beforeAll(() => {
    objects = render('thorax');
  });

  it('renders one Deployment, Service and PodDisruptionBudget per service, and the topics Job', () => {
    expect(
      ofKind(objects, 'Deployment')
        .map((d) => d.metadata.name)
        .sort(),
    ).toEqual(COMPONENTS.map((c) => `thorax-${c}`).sort());
    expect(ofKind(objects, 'Service')).toHaveLength(4);
    expect(ofKind(objects, 'PodDisruptionBudget')).toHaveLength(4);
    expect(ofKind(objects, 'Job')).toHaveLength(1);
    // Optional CRDs stay off by default: the chart installs on a bare cluster.
    for (const kind of ['ScaledObject', 'TriggerAuthentication', 'ServiceMonitor', 'PrometheusRule']) {
      expect(ofKind(objects, kind)).toHaveLength(0);
    }
  });

  it.each(COMPONENTS)('%s runs non-root with a read-only root, no privileges and RuntimeDefault seccomp', (c) => {
    const pod = deployment(objects, c).spec.template.spec;
    expect(pod.securityContext).toMatchObject({
      runAsNonRoot: true,
      runAsUser: 10001,
      runAsGroup: 10001,
      fsGroup: 10001,
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(pod.automountServiceAccountToken).toBe(false);
    for (const ctr of [...pod.containers, ...(pod.initContainers ?? [])]) {
      expect(ctr.securityContext).toMatchObject({
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        runAsNonRoot: true,
        runAsUser: 10001,
        privileged: false,
        capabilities: { drop: ['ALL'] },
        seccompProfile: { type: 'RuntimeDefault' },
      });
    }
    // The only writable paths are volumes.
    const mounts = Object.fromEntries(
      container(deployment(objects, c)).volumeMounts.map((m: any) => [m.mountPath, m.name]),
    );
    expect(mounts['/tmp']).toBe('tmp');
    expect(mounts['/var/lib/thorax']).toBe('data');
  });

  it.each(COMPONENTS)('%s has requests and limits, its port and its probes', (c) => {
    const d = deployment(objects, c);
    const ctr = container(d);
    expect(ctr.args).toEqual([c]);
    expect(ctr.image).toBe('thorax:0.1.0');
    for (const key of ['requests', 'limits']) {
      expect(ctr.resources[key].cpu).toBeDefined();
      expect(ctr.resources[key].memory).toBeDefined();
    }
    expect(envOf(d)['HTTP_PORT']).toBe(String(PORTS[c]));
    expect(envOf(d)[`${c.toUpperCase()}_GROUP_ID`]).toBe(`thorax-${c}`);
    expect(ctr.ports[0]).toEqual({ name: 'http', containerPort: PORTS[c], protocol: 'TCP' });
    expect(ctr.startupProbe.httpGet).toEqual({ path: '/healthz', port: 'http', scheme: 'HTTP' });
    expect(ctr.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'http', scheme: 'HTTP' });
    expect(ctr.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'http', scheme: 'HTTP' });
    expect(d.spec.template.spec.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(60);
    expect(d.spec.template.metadata.annotations['checksum/config']).toMatch(/^[0-9a-f]{64}$/);
  });

  it('gives inference minutes to load and warm its model before liveness counts', () => {
    const probe = container(deployment(objects, 'inference')).startupProbe;
    expect(probe.periodSeconds * probe.failureThreshold).toBeGreaterThanOrEqual(240);
    expect(envOf(deployment(objects, 'inference'))).toMatchObject({
      MODEL_DIR: '/opt/thorax/models/thorax-tiny-cnn',
      INFERENCE_PROVIDERS: 'cpu',
    });
  });

  it('passes the gRPC port to results and publishes it', () => {
    const results = deployment(objects, 'results');
    expect(envOf(results)['GRPC_PORT']).toBe('50051');
    expect(container(results).ports).toContainEqual({ name: 'grpc', containerPort: 50051, protocol: 'TCP' });
    expect(named(objects, 'Service', 'thorax-results').spec.ports).toContainEqual(
      expect.objectContaining({ name: 'grpc', port: 50051, targetPort: 'grpc' }),
    );
  });

  it('keeps the embedded store of results on a PVC, one pod at a time', () => {
    const results = deployment(objects, 'results');
    expect(results.spec.replicas).toBe(1);
    expect(results.spec.strategy).toEqual({ type: 'Recreate' });
    expect(envOf(results)['RESULTS_DATA_DIR']).toBe('/var/lib/thorax/results');
    expect(envOf(results)['DATABASE_URL']).toBeUndefined();
    const volume = results.spec.template.spec.volumes.find((v: any) => v.name === 'results');
    expect(volume.persistentVolumeClaim.claimName).toBe('thorax-results');
    expect(named(objects, 'PersistentVolumeClaim', 'thorax-results').spec.resources.requests.storage).toBe('8Gi');
  });

  it('scales preprocess and inference on CPU without KEDA, and leaves their replica count to the HPA', () => {
    const hpas = ofKind(objects, 'HorizontalPodAutoscaler');
    expect(hpas.map((h) => h.spec.scaleTargetRef.name).sort()).toEqual(['thorax-inference', 'thorax-preprocess']);
    for (const hpa of hpas) {
      expect(hpa.spec.metrics[0].resource).toEqual({
        name: 'cpu',
        target: { type: 'Utilization', averageUtilization: 70 },
      });
      expect(hpa.spec.maxReplicas).toBe(6);
    }
    expect(deployment(objects, 'preprocess').spec.replicas).toBeUndefined();
    expect(deployment(objects, 'ingest').spec.replicas).toBe(2);
  });

  it('has a disruption budget per service selecting only that service', () => {
    for (const c of COMPONENTS) {
      const pdb = named(objects, 'PodDisruptionBudget', `thorax-${c}`);
      expect(pdb.spec.maxUnavailable).toBe(1);
      expect(pdb.spec.selector.matchLabels).toEqual(deployment(objects, c).spec.selector.matchLabels);
    }
  });

  it('denies by default: API ports from the namespace, metrics from monitoring, egress to DNS and Kafka only', () => {
    const policies = ofKind(objects, 'NetworkPolicy');
    expect(policies.map((p) => p.metadata.name).sort()).toEqual(
      [...COMPONENTS, 'topics'].map((c) => `thorax-${c}`).sort(),
    );
    const monitoring = { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } };
    for (const policy of policies) {
      expect(policy.spec.policyTypes).toEqual(['Ingress', 'Egress']);
      const egressPorts = policy.spec.egress.flatMap((rule: any) =>
        rule.ports.map((p: any) => `${p.port}/${p.protocol}`),
      );
      expect(egressPorts.sort()).toEqual(['53/TCP', '53/UDP', '9092/TCP']);
    }
    // Preprocess serves no API: only the scrape reaches it.
    expect(named(objects, 'NetworkPolicy', 'thorax-preprocess').spec.ingress).toEqual([
      { from: [monitoring], ports: [{ port: 'http', protocol: 'TCP' }] },
    ]);
    expect(named(objects, 'NetworkPolicy', 'thorax-results').spec.ingress[1]).toEqual({
      from: [{ podSelector: {} }],
      ports: [
        { port: 'http', protocol: 'TCP' },
        { port: 'grpc', protocol: 'TCP' },
      ],
    });
    expect(named(objects, 'NetworkPolicy', 'thorax-topics').spec.ingress ?? []).toEqual([]);
  });

  it('provisions topics with a hook Job: replication 3, min.insync 2, from the image topics.conf', () => {
    const job = named(objects, 'Job', 'thorax-topics');
    expect(job.metadata.annotations?.['helm.sh/hook']).toBe('pre-install,pre-upgrade');
    const ctr = job.spec.template.spec.containers[0];
    expect(ctr.args).toEqual(['topics']);
    const env = Object.fromEntries(ctr.env.map((e: any) => [e.name, e.value]));
    expect(env).toMatchObject({
      TOPICS_CONF: '/opt/thorax/deploy/kafka/topics.conf',
      KAFKA_TOPIC_REPLICATION_FACTOR: '3',
      KAFKA_TOPIC_MIN_INSYNC_REPLICAS: '2',
      KAFKA_BROKERS: 'kafka:9092',
    });
    expect(ctr.securityContext.readOnlyRootFilesystem).toBe(true);
    expect(job.spec.template.spec.securityContext.runAsNonRoot).toBe(true);
  });

  it('puts no token into any pod', () => {
    expect(named(objects, 'ServiceAccount', 'thorax')).toMatchObject({ automountServiceAccountToken: false });
    expect(ofKind(objects, 'Secret')).toHaveLength(0);
  });
});

describe('labels and selectors', () => {
  it('selects by instance, so two releases in one namespace never select each other', () => {
    const a = render('alpha');
    const b = render('beta');
    const selectorsOf = (objects: K8sObject[]): Record<string, string>[] => [
      ...ofKind(objects, 'Deployment').map((d) => d.spec.selector.matchLabels),
      ...ofKind(objects, 'Service').map((s) => s.spec.selector),
      ...ofKind(objects, 'PodDisruptionBudget').map((p) => p.spec.selector.matchLabels),
      ...ofKind(objects, 'NetworkPolicy').map((p) => p.spec.podSelector.matchLabels),
    ];
    const podsOf = (objects: K8sObject[]): Record<string, string>[] =>
      [...ofKind(objects, 'Deployment'), ...ofKind(objects, 'Job')].map((d) => d.spec.template.metadata.labels);
    for (const [own, other, release] of [
      [a, b, 'alpha'],
      [b, a, 'beta'],
    ] as const) {
      const selectors = selectorsOf(own);
      expect(selectors).toHaveLength(4 * 4 + 1);
      for (const selector of selectors) {
        expect(selector['app.kubernetes.io/instance']).toBe(release);
        expect(podsOf(own).some((labels) => matches(selector, labels))).toBe(true);
        expect(podsOf(other).some((labels) => matches(selector, labels))).toBe(false);
      }
    }
    // Within a release each selector picks one component.
    for (const c of COMPONENTS) {
      const selector = named(a, 'Deployment', `alpha-thorax-${c}`).spec.selector.matchLabels;
      expect(podsOf(a).filter((labels) => matches(selector, labels))).toHaveLength(1);
    }
  });

  it('labels every object the standard way', () => {
    for (const o of render('thorax')) {
      expect(o.metadata.labels).toMatchObject({
        'app.kubernetes.io/name': 'thorax',
        'app.kubernetes.io/instance': 'thorax',
        'app.kubernetes.io/version': '0.1.0',
        'app.kubernetes.io/managed-by': 'Helm',
        'helm.sh/chart': expect.stringMatching(/^thorax-\d+\.\d+\.\d+$/),
      });
    }
  });
});

describe('GPU profile (values-gpu.yaml)', () => {
  let objects: K8sObject[];
  beforeAll(() => {
    objects = render('thorax', values('values-gpu.yaml'));
  });

  it('gives inference one GPU, the CUDA provider first, and a GPU node', () => {
    const inference = deployment(objects, 'inference');
    expect(container(inference).resources.limits['nvidia.com/gpu']).toBe(1);
    expect(envOf(inference)['INFERENCE_PROVIDERS']).toBe('cuda,cpu');
    // The GPU variant (scripts/image.sh build-gpu) for inference only.
    expect(container(inference).image).toBe('thorax:gpu');
    expect(container(deployment(objects, 'preprocess')).image).not.toContain('gpu');
    expect(inference.spec.template.spec.nodeSelector).toEqual({ 'nvidia.com/gpu.present': 'true' });
    expect(inference.spec.template.spec.tolerations).toContainEqual({
      key: 'nvidia.com/gpu',
      operator: 'Exists',
      effect: 'NoSchedule',
    });
    for (const c of ['ingest', 'preprocess', 'results'] as const) {
      expect(container(deployment(objects, c)).resources.limits['nvidia.com/gpu']).toBeUndefined();
    }
    // No surge pod waiting for a GPU during a rollout.
    expect(inference.spec.strategy.rollingUpdate).toEqual({ maxSurge: 0, maxUnavailable: 1 });
  });

  it('scales preprocess and inference on their consumer lag with KEDA', () => {
    expect(ofKind(objects, 'HorizontalPodAutoscaler')).toHaveLength(0);
    const scaled = ofKind(objects, 'ScaledObject');
    expect(scaled.map((s) => s.metadata.name).sort()).toEqual(['thorax-inference', 'thorax-preprocess']);
    for (const c of ['preprocess', 'inference'] as const) {
      const so = named(objects, 'ScaledObject', `thorax-${c}`);
      expect(so.spec.scaleTargetRef).toEqual({ apiVersion: 'apps/v1', kind: 'Deployment', name: `thorax-${c}` });
      const kafka = so.spec.triggers.find((t: any) => t.type === 'kafka');
      expect(kafka.metadata).toMatchObject({
        bootstrapServers: 'kafka:9092',
        consumerGroup: `thorax-${c}`,
        topic: CONSUMES[c],
        allowIdleConsumers: 'false',
      });
      expect(Number(kafka.metadata.lagThreshold)).toBeGreaterThan(0);
      expect(kafka.metadata.tls).toBeUndefined();
      expect(kafka.authenticationRef).toBeUndefined();
      expect(so.spec.triggers.find((t: any) => t.type === 'cpu')).toBeDefined();
    }
    expect(named(objects, 'ScaledObject', 'thorax-inference').spec.maxReplicaCount).toBe(4);
    // The trigger reads the group the pods join, whatever its name.
    const renamed = render('thorax', [...values('values-gpu.yaml'), '--set', 'kafka.consumerGroupPrefix=radiology-a']);
    const trigger = named(renamed, 'ScaledObject', 'thorax-preprocess').spec.triggers[0];
    expect(trigger.metadata.consumerGroup).toBe('radiology-a-preprocess');
    expect(envOf(named(renamed, 'Deployment', 'thorax-preprocess'))['PREPROCESS_GROUP_ID']).toBe(
      'radiology-a-preprocess',
    );
  });
});

describe('secure profile (values-secure.yaml)', () => {
  let objects: K8sObject[];
  beforeAll(() => {
    objects = render('thorax', values('values-secure.yaml'), []);
  });

  it('configures Kafka TLS, SCRAM-SHA-512, token auth and server TLS through the ConfigMap', () => {
    expect(named(objects, 'ConfigMap', 'thorax').data).toMatchObject({
      KAFKA_CLIENT: 'librdkafka',
      KAFKA_TLS: 'true',
      KAFKA_TLS_CA_FILE: '/etc/thorax/kafka-tls/ca.crt',
      KAFKA_SASL_MECHANISM: 'scram-sha-512',
      KAFKA_SASL_USERNAME: 'thorax',
      KAFKA_SASL_PASSWORD_FILE: '/etc/thorax/kafka-sasl/password',
      AUTH_JWKS_URL: 'https://login.example.org/realms/hospital/protocol/openid-connect/certs',
      AUTH_ISSUER: 'https://login.example.org/realms/hospital',
      AUTH_AUDIENCE: 'thorax',
      AUTH_READ_SCOPE: 'thorax.read',
      AUTH_ADMIN_SCOPE: 'thorax.admin',
      TLS_CERT_FILE: '/etc/thorax/server-tls/tls.crt',
      TLS_KEY_FILE: '/etc/thorax/server-tls/tls.key',
    });
    // Secrets stay in the Secrets they came in; nothing secret is rendered.
    expect(ofKind(objects, 'Secret')).toHaveLength(0);
    expect(JSON.stringify(objects)).not.toMatch(/KAFKA_SASL_PASSWORD"/);
  });

  it.each(COMPONENTS)('%s mounts the Kafka and server certificates and the SASL password as read-only files', (c) => {
    const d = deployment(objects, c);
    const volumes = Object.fromEntries(d.spec.template.spec.volumes.map((v: any) => [v.name, v]));
    expect(volumes['kafka-tls'].secret).toMatchObject({
      secretName: 'thorax-kafka-ca',
      items: [{ key: 'ca.crt', path: 'ca.crt' }],
    });
    expect(volumes['kafka-sasl'].secret).toMatchObject({
      secretName: 'thorax-kafka-sasl',
      items: [{ key: 'password', path: 'password' }],
    });
    expect(volumes['server-tls'].secret.secretName).toBe('thorax-server-tls');
    const mounts = Object.fromEntries(container(d).volumeMounts.map((m: any) => [m.name, m]));
    expect(mounts['kafka-tls']).toEqual({ name: 'kafka-tls', mountPath: '/etc/thorax/kafka-tls', readOnly: true });
    expect(mounts['kafka-sasl']).toEqual({ name: 'kafka-sasl', mountPath: '/etc/thorax/kafka-sasl', readOnly: true });
    expect(mounts['server-tls']).toEqual({ name: 'server-tls', mountPath: '/etc/thorax/server-tls', readOnly: true });
    // Probes follow the server onto HTTPS.
    expect(container(d).readinessProbe.httpGet.scheme).toBe('HTTPS');
    expect(container(d).startupProbe.httpGet.scheme).toBe('HTTPS');
  });

  it('runs results on PostgreSQL from a Secret, scaled out', () => {
    const results = deployment(objects, 'results');
    expect(results.spec.replicas).toBe(2);
    expect(results.spec.strategy.type).toBe('RollingUpdate');
    expect(envOf(results)['DATABASE_URL']).toEqual({ secretKeyRef: { name: 'thorax-database', key: 'DATABASE_URL' } });
    expect(envOf(results)['RESULTS_DATA_DIR']).toBeUndefined();
    expect(ofKind(objects, 'PersistentVolumeClaim')).toHaveLength(0);
    const egress = named(objects, 'NetworkPolicy', 'thorax-results').spec.egress.flatMap((r: any) =>
      r.ports.map((p: any) => p.port),
    );
    expect(egress).toEqual(expect.arrayContaining([53, 9093, 5432, 443]));
  });

  it('hands KEDA the same TLS and SCRAM credentials', () => {
    const kafka = named(objects, 'ScaledObject', 'thorax-inference').spec.triggers[0];
    expect(kafka.metadata).toMatchObject({ tls: 'enable', sasl: 'scram_sha512', consumerGroup: 'thorax-inference' });
    expect(kafka.authenticationRef).toEqual({ name: 'thorax-kafka' });
    const auth = named(objects, 'TriggerAuthentication', 'thorax-kafka');
    expect(auth.spec.secretTargetRef).toEqual([
      { parameter: 'password', name: 'thorax-kafka-sasl', key: 'password' },
      { parameter: 'ca', name: 'thorax-kafka-ca', key: 'ca.crt' },
    ]);
    expect(auth.spec.configMapTargetRef).toEqual([
      { parameter: 'username', name: 'thorax', key: 'KAFKA_SASL_USERNAME' },
    ]);
  });

  it('mounts the Kafka credentials in the topics Job too', () => {
    const job = named(objects, 'Job', 'thorax-topics');
    const env = Object.fromEntries(job.spec.template.spec.containers[0].env.map((e: any) => [e.name, e.value]));
    expect(env).toMatchObject({
      KAFKA_TLS: 'true',
      KAFKA_SASL_MECHANISM: 'scram-sha-512',
      KAFKA_SASL_PASSWORD_FILE: '/etc/thorax/kafka-sasl/password',
    });
    const secrets = job.spec.template.spec.volumes.filter((v: any) => v.secret).map((v: any) => v.secret.secretName);
    expect(secrets.sort()).toEqual(['thorax-kafka-ca', 'thorax-kafka-sasl']);
  });

  it('ships the repository rules and dashboards unchanged', () => {
    const ruleDir = path.join(REPO_ROOT, 'deploy', 'prometheus', 'rules');
    const groups = readdirSync(ruleDir)
      .filter((f) => f.endsWith('.yml'))
      .sort()
      .flatMap((f) => (parse(readFileSync(path.join(ruleDir, f), 'utf8')) as { groups: unknown[] }).groups);
    expect(groups.length).toBeGreaterThan(0);
    expect(named(objects, 'PrometheusRule', 'thorax').spec.groups).toEqual(groups);

    const dashDir = path.join(REPO_ROOT, 'deploy', 'grafana', 'dashboards');
    const dashboards = named(objects, 'ConfigMap', 'thorax-dashboards');
    expect(dashboards.metadata.labels?.['grafana_dashboard']).toBe('1');
    const files = readdirSync(dashDir)
      .filter((f) => f.endsWith('.json'))
      .sort();
    expect(Object.keys(dashboards.data ?? {}).sort()).toEqual(files);
    for (const f of files) {
      expect(JSON.parse(dashboards.data?.[f] ?? '')).toEqual(JSON.parse(readFileSync(path.join(dashDir, f), 'utf8')));
    }

    const monitor = named(objects, 'ServiceMonitor', 'thorax');
    expect(monitor.spec.endpoints[0]).toMatchObject({
      port: 'http',
      path: '/metrics',
      honorLabels: true,
      scheme: 'https',
    });
    expect(monitor.spec.selector.matchLabels).toEqual({
      'app.kubernetes.io/name': 'thorax',
      'app.kubernetes.io/instance': 'thorax',
    });
  });
});

describe('guards', () => {
  it('refuses more than one results replica on the embedded store', () => {
    const result = helmTemplate('thorax', ['--set', 'services.results.replicas=2']);
    expect(result.ok).toBe(false);
    expect(!result.ok && result.error).toMatch(/services\.results\.replicas > 1 needs PostgreSQL/);
    expect(
      helmTemplate('thorax', ['--set', 'services.results.replicas=2', '--set', 'database.existingSecret=pg']).ok,
    ).toBe(true);
  });

  it.each([
    ['a misspelt key', ['--set', 'services.inferense.replicas=2'], /'\/services': additional properties 'inferense'/],
    [
      'an unknown SASL mechanism',
      ['--set', 'kafka.sasl.mechanism=scram'],
      /\/kafka\/sasl\/mechanism': value must be one of/,
    ],
    ['a port out of range', ['--set', 'services.ingest.httpPort=70000'], /\/services\/ingest\/httpPort': maximum/],
    [
      'TLS without its Secret',
      ['--set', 'kafka.tls.enabled=true'],
      /kafka\.tls\.enabled needs kafka\.tls\.existingSecret/,
    ],
    [
      'SASL without a password',
      ['--set', 'kafka.sasl.mechanism=scram-sha-512', '--set', 'kafka.sasl.username=u'],
      /needs kafka\.sasl\.password or kafka\.sasl\.existingSecret/,
    ],
    ['auth without keys', ['--set', 'auth.enabled=true'], /auth\.enabled needs auth\.jwksUrl/],
    [
      'a TLS server name on librdkafka',
      ['--set', 'kafka.tls.enabled=true', '--set', 'kafka.tls.existingSecret=ca', '--set', 'kafka.tls.serverName=kafka.internal'],
      /kafka\.tls\.serverName needs kafka\.client=kafkajs/,
    ],
    ['an unknown Kafka client', ['--set', 'kafka.client=rdkafka'], /'\/kafka\/client': value must be one of/],
  ])('rejects %s', (_what, args, message) => {
    const result = helmTemplate('thorax', args);
    expect(result.ok).toBe(false);
    expect(!result.ok && result.error).toMatch(message);
  });

  it('rolls the pods when the configuration changes', () => {
    const checksum = (args: string[]): string =>
      deployment(render('thorax', args), 'preprocess').spec.template.metadata.annotations['checksum/config'];
    expect(checksum([])).toBe(checksum([]));
    expect(checksum(['--set', 'logLevel=debug'])).not.toBe(checksum([]));
  });

  it('leaves topics to Strimzi when provisioning is off, and supports a plain Job for GitOps', () => {
    expect(ofKind(render('thorax', ['--set', 'topics.provision=false']), 'Job')).toHaveLength(0);
    const job = named(render('thorax', ['--set', 'topics.hook=false']), 'Job', 'thorax-topics');
    expect(job.metadata.annotations).toBeUndefined();
    expect(job.spec.ttlSecondsAfterFinished).toBe(3600);
  });

  it('keeps secrets given as values in a Secret, never in the ConfigMap', () => {
    const url = 'postgres://thorax:db-secret@pg:5432/thorax';
    const objects = render('thorax', [
      '--set',
      `database.url=${url}`,
      '--set',
      'kafka.sasl.mechanism=scram-sha-512',
      '--set',
      'kafka.sasl.username=thorax',
      '--set',
      'kafka.sasl.password=sasl-secret',
    ]);
    const secret = named(objects, 'Secret', 'thorax');
    const decoded = Object.fromEntries(
      Object.entries(secret.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]),
    );
    expect(decoded).toEqual({ DATABASE_URL: url, password: 'sasl-secret' });
    const plain = JSON.stringify(objects.filter((o) => o.kind !== 'Secret'));
    expect(plain).not.toContain('db-secret');
    expect(plain).not.toContain('sasl-secret');
    expect(envOf(deployment(objects, 'results'))['DATABASE_URL']).toEqual({
      secretKeyRef: { name: 'thorax', key: 'DATABASE_URL' },
    });
    // The pre-install hook runs before the release's Secret exists: it gets its own hook Secret.
    const hookSecret = named(objects, 'Secret', 'thorax-topics');
    expect(hookSecret.metadata.annotations?.['helm.sh/hook']).toBe('pre-install,pre-upgrade');
    expect(Number(hookSecret.metadata.annotations?.['helm.sh/hook-weight'])).toBeLessThan(0);
    const job = named(objects, 'Job', 'thorax-topics');
    const sasl = job.spec.template.spec.volumes.find((v: any) => v.name === 'kafka-sasl');
    expect(sasl.secret.secretName).toBe('thorax-topics');
  });

  it('mounts an inline JWK Set from a ConfigMap', () => {
    const jwks = '{"keys":[{"kty":"EC","crv":"P-256","x":"x","y":"y","kid":"k1"}]}';
    const dir = mkdtempSync(path.join(tmpdir(), 'thorax-jwks-'));
    writeFileSync(path.join(dir, 'jwks.json'), jwks);
    let objects: K8sObject[];
    try {
      objects = render('thorax', [
        '--set',
        'auth.enabled=true',
        '--set-file',
        `auth.jwks=${path.join(dir, 'jwks.json')}`,
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect(named(objects, 'ConfigMap', 'thorax-jwks').data).toEqual({ 'jwks.json': jwks });
    expect(named(objects, 'ConfigMap', 'thorax').data?.['AUTH_JWKS_FILE']).toBe('/etc/thorax/auth/jwks.json');
    const results = deployment(objects, 'results');
    expect(container(results).volumeMounts).toContainEqual({
      name: 'jwks',
      mountPath: '/etc/thorax/auth',
      readOnly: true,
    });
  });

  it('loads the model from a claim or an init container into the model directory', () => {
    const fromClaim = deployment(
      render('thorax', [
        '--set',
        'model.source=volume',
        '--set',
        'model.volume.existingClaim=models',
        '--set',
        'model.name=chexnet',
      ]),
      'inference',
    );
    expect(envOf(fromClaim)['MODEL_DIR']).toBe('/var/lib/thorax/models/chexnet');
    expect(fromClaim.spec.template.spec.volumes).toContainEqual({
      name: 'models',
      persistentVolumeClaim: { claimName: 'models', readOnly: true },
    });
    const fromInit = deployment(
      render('thorax', [
        '--set',
        'model.source=initContainer',
        '--set-json',
        'model.initContainer.command=["sh","-c","cp -r /models/x /var/lib/thorax/models/"]',
      ]),
      'inference',
    );
    const init = fromInit.spec.template.spec.initContainers[0];
    expect(init.volumeMounts).toContainEqual({ name: 'models', mountPath: '/var/lib/thorax/models' });
    expect(init.securityContext.readOnlyRootFilesystem).toBe(true);
    expect(container(fromInit).volumeMounts).toContainEqual({
      name: 'models',
      mountPath: '/var/lib/thorax/models',
      readOnly: true,
    });
  });
});

const volumeMount = (d: K8sObject, name: string): any => container(d).volumeMounts.find((m: any) => m.name === name);
const volumeOf = (d: K8sObject, name: string): any => d.spec.template.spec.volumes.find((v: any) => v.name === name);
const ingressOf = (objects: K8sObject[], c: Component): any[] =>
  named(objects, 'NetworkPolicy', `thorax-${c}`).spec.ingress;
const egressPortsOf = (objects: K8sObject[], c: Component | 'topics'): string[] =>
  named(objects, 'NetworkPolicy', `thorax-${c}`)
    .spec.egress.flatMap((rule: any) => rule.ports.map((p: any) => `${p.port}/${p.protocol}`))
    .sort();
const S3 = ['--set', 'objectStore.s3.enabled=true', '--set', 'objectStore.s3.bucket=thorax-objects'];

describe('object store', () => {
  it('mounts one created ReadWriteMany claim at /var/lib/thorax/objects in all four services, kept on uninstall', () => {
    const objects = render('thorax');
    expect(named(objects, 'ConfigMap', 'thorax').data).toMatchObject({
      OBJECT_STORE_URL: 'file:///var/lib/thorax/objects',
      OBJECT_STORE_RETENTION_HOURS: '72',
    });
    const claims = new Set<string>();
    for (const c of COMPONENTS) {
      const d = deployment(objects, c);
      // The URL comes from the release ConfigMap every service reads.
      expect(container(d).envFrom).toContainEqual({ configMapRef: { name: 'thorax' } });
      expect(volumeMount(d, 'objects')).toEqual({ name: 'objects', mountPath: '/var/lib/thorax/objects' });
      claims.add(volumeOf(d, 'objects').persistentVolumeClaim.claimName);
      // Writable: the services put objects there.
      expect(volumeOf(d, 'objects').persistentVolumeClaim.readOnly).toBeUndefined();
    }
    expect([...claims]).toEqual(['thorax-objects']);
    const pvc = named(objects, 'PersistentVolumeClaim', 'thorax-objects');
    expect(pvc.spec.accessModes).toEqual(['ReadWriteMany']);
    expect(pvc.spec.resources.requests.storage).toBe('100Gi');
    expect(pvc.metadata.annotations?.['helm.sh/resource-policy']).toBe('keep');
    // The topics Job touches no object.
    const job = named(objects, 'Job', 'thorax-topics');
    expect(JSON.stringify(job.spec.template.spec.volumes)).not.toContain('objects');
  });

  it('uses an existing claim (on a sub-path) and a storage class as given', () => {
    const existing = render('thorax', [
      '--set',
      'objectStore.volume.existingClaim=radiology-nfs',
      '--set',
      'objectStore.volume.subPath=thorax/objects',
    ]);
    expect(ofKind(existing, 'PersistentVolumeClaim').map((p) => p.metadata.name)).toEqual(['thorax-results']);
    for (const c of COMPONENTS) {
      const d = deployment(existing, c);
      expect(volumeOf(d, 'objects').persistentVolumeClaim).toEqual({ claimName: 'radiology-nfs' });
      expect(volumeMount(d, 'objects')).toEqual({
        name: 'objects',
        mountPath: '/var/lib/thorax/objects',
        subPath: 'thorax/objects',
      });
    }
    const created = render('thorax', [
      '--set',
      'objectStore.volume.storageClass=efs-sc',
      '--set',
      'objectStore.volume.size=2Ti',
    ]);
    expect(named(created, 'PersistentVolumeClaim', 'thorax-objects').spec).toMatchObject({
      storageClassName: 'efs-sc',
      resources: { requests: { storage: '2Ti' } },
    });
  });

  it('points all four services at one S3 bucket with keys from an existing Secret, the secret key as a file', () => {
    const objects = render(
      'thorax',
      [
        '--set',
        'objectStore.s3.prefix=/radiology/thorax/',
        '--set',
        'objectStore.s3.endpoint=http://minio.storage.svc:9000',
        '--set',
        'objectStore.s3.region=eu-central-1',
        '--set',
        'objectStore.s3.forcePathStyle=true',
        '--set',
        'objectStore.s3.existingSecret=thorax-s3',
        '--set',
        'objectStore.retentionHours=24',
      ],
      S3,
    );
    const config = named(objects, 'ConfigMap', 'thorax').data ?? {};
    expect(config).toMatchObject({
      OBJECT_STORE_URL: 's3://thorax-objects/radiology/thorax',
      OBJECT_STORE_S3_ENDPOINT: 'http://minio.storage.svc:9000',
      OBJECT_STORE_S3_REGION: 'eu-central-1',
      OBJECT_STORE_S3_FORCE_PATH_STYLE: 'true',
      OBJECT_STORE_S3_SECRET_ACCESS_KEY_FILE: '/etc/thorax/object-store/secret-access-key',
      OBJECT_STORE_RETENTION_HOURS: '24',
    });
    // The secret key itself is never a plain variable.
    expect(config['OBJECT_STORE_S3_SECRET_ACCESS_KEY']).toBeUndefined();
    expect(ofKind(objects, 'PersistentVolumeClaim').map((p) => p.metadata.name)).toEqual(['thorax-results']);
    for (const c of COMPONENTS) {
      const d = deployment(objects, c);
      expect(envOf(d)['OBJECT_STORE_S3_ACCESS_KEY_ID']).toEqual({
        secretKeyRef: { name: 'thorax-s3', key: 'AWS_ACCESS_KEY_ID' },
      });
      expect(volumeOf(d, 'object-store').secret).toEqual({
        secretName: 'thorax-s3',
        defaultMode: 0o440,
        items: [{ key: 'AWS_SECRET_ACCESS_KEY', path: 'secret-access-key' }],
      });
      expect(volumeMount(d, 'object-store')).toEqual({
        name: 'object-store',
        mountPath: '/etc/thorax/object-store',
        readOnly: true,
      });
      expect(volumeOf(d, 'objects')).toBeUndefined();
      // Egress to the endpoint's port, besides DNS and Kafka.
      expect(egressPortsOf(objects, c)).toEqual(['53/TCP', '53/UDP', '9000/TCP', '9092/TCP']);
    }
    expect(egressPortsOf(objects, 'topics')).toEqual(['53/TCP', '53/UDP', '9092/TCP']);
  });

  it('leaves credentials to the AWS default chain without a Secret, and reaches AWS on 443', () => {
    const objects = render('thorax', ['--set', 'networkPolicy.objectStoreTo[0].ipBlock.cidr=52.219.0.0/16'], S3);
    expect(named(objects, 'ConfigMap', 'thorax').data).toMatchObject({
      OBJECT_STORE_URL: 's3://thorax-objects',
      OBJECT_STORE_S3_REGION: 'us-east-1',
      OBJECT_STORE_S3_FORCE_PATH_STYLE: 'false',
    });
    const data = named(objects, 'ConfigMap', 'thorax').data ?? {};
    expect(data['OBJECT_STORE_S3_ENDPOINT']).toBeUndefined();
    expect(data['OBJECT_STORE_S3_SECRET_ACCESS_KEY_FILE']).toBeUndefined();
    const ingest = deployment(objects, 'ingest');
    expect(envOf(ingest)['OBJECT_STORE_S3_ACCESS_KEY_ID']).toBeUndefined();
    expect(volumeOf(ingest, 'object-store')).toBeUndefined();
    const rule = named(objects, 'NetworkPolicy', 'thorax-results').spec.egress.find((r: any) =>
      r.ports.some((p: any) => p.port === 443),
    );
    expect(rule).toEqual({ ports: [{ port: 443, protocol: 'TCP' }], to: [{ ipBlock: { cidr: '52.219.0.0/16' } }] });
    // An https endpoint without a port is reached on 443.
    const rgw = render('thorax', ['--set', 'objectStore.s3.endpoint=https://rgw.example.org'], S3);
    expect(egressPortsOf(rgw, 'preprocess')).toContain('443/TCP');
  });

  it("uses the secure profile's bucket on the hospital store", () => {
    const objects = render('thorax', values('values-secure.yaml'), []);
    expect(named(objects, 'ConfigMap', 'thorax').data).toMatchObject({
      OBJECT_STORE_URL: 's3://thorax/production',
      OBJECT_STORE_S3_ENDPOINT: 'https://s3.example.org',
      OBJECT_STORE_S3_FORCE_PATH_STYLE: 'true',
    });
    expect(envOf(deployment(objects, 'inference'))['OBJECT_STORE_S3_ACCESS_KEY_ID']).toEqual({
      secretKeyRef: { name: 'thorax-object-store', key: 'AWS_ACCESS_KEY_ID' },
    });
    expect(named(objects, 'NetworkPolicy', 'thorax-inference').spec.egress).toContainEqual({
      ports: [{ port: 443, protocol: 'TCP' }],
      to: [{ ipBlock: { cidr: '10.50.0.0/24' } }],
    });
  });

  it('refuses more than one pod without a store, naming the choices and the pods that share it', () => {
    const none = helmTemplate('thorax', [], []);
    expect(none.ok).toBe(false);
    // 2 ingest + up to 6 preprocess and 6 inference (autoscaled) + 1 results.
    expect(!none.ok && none.error).toMatch(
      /objectStore: up to 15 pods share claim-checked inputs and review images .* set objectStore\.s3\.enabled=true with objectStore\.s3\.bucket, or objectStore\.volume\.enabled=true/,
    );
    // Two services of one replica each still share objects.
    const two = helmTemplate(
      'thorax',
      [
        '--set',
        'services.ingest.enabled=false',
        '--set',
        'services.preprocess.enabled=false',
        '--set',
        'services.inference.autoscaling.enabled=false',
      ],
      [],
    );
    expect(!two.ok && two.error).toMatch(/objectStore: up to 2 pods share/);
  });

  it('lets a single pod keep its objects on its own volume', () => {
    const single = render(
      'thorax',
      [
        '--set',
        'services.ingest.enabled=false',
        '--set',
        'services.preprocess.enabled=false',
        '--set',
        'services.inference.enabled=false',
      ],
      [],
    );
    expect(named(single, 'ConfigMap', 'thorax').data?.['OBJECT_STORE_URL']).toBe('file:///var/lib/thorax/objects');
    const results = deployment(single, 'results');
    expect(volumeOf(results, 'objects')).toBeUndefined();
    expect(volumeMount(results, 'data').mountPath).toBe('/var/lib/thorax');
  });

  it.each([
    [
      'both stores',
      [...S3, ...SHARED_VOLUME],
      /objectStore: choose one store, objectStore\.s3 or objectStore\.volume, not both/,
    ],
    [
      'S3 without a bucket',
      ['--set', 'objectStore.s3.enabled=true'],
      /objectStore\.s3\.enabled needs objectStore\.s3\.bucket/,
    ],
    [
      'a bucket name S3 refuses',
      ['--set', 'objectStore.s3.enabled=true', '--set', 'objectStore.s3.bucket=Thorax_Objects'],
      /\/objectStore\/s3\/bucket': 'Thorax_Objects' does not match pattern/,
    ],
    [
      'an endpoint that is not a URL',
      [...S3, '--set', 'objectStore.s3.endpoint=minio:9000'],
      /\/objectStore\/s3\/endpoint': 'minio:9000' does not match pattern/,
    ],
    [
      'a created claim that only one node can mount',
      [...SHARED_VOLUME, '--set-json', 'objectStore.volume.accessModes=["ReadWriteOnce"]'],
      /objectStore\.volume\.accessModes must include ReadWriteMany: up to 15 pods/,
    ],
    [
      'a misspelt store key',
      ['--set', 'objectStore.volume.existingClam=x'],
      /'\/objectStore\/volume': additional properties 'existingClam'/,
    ],
  ])('rejects %s', (_what, args, message) => {
    const result = helmTemplate('thorax', args, []);
    expect(result.ok).toBe(false);
    expect(!result.ok && result.error).toMatch(message);
  });
});

describe("ingest's edges: gRPC, DIMSE, STOW-RS", () => {
  it('publishes gRPC 50052 and DIMSE 11112 on the ingest pods and Service, with the AE title and allow-list', () => {
    const objects = render('thorax', [
      '--set',
      'services.ingest.dimse.aeTitle=THORAX_AI',
      '--set-json',
      'services.ingest.dimse.allowedCallingAeTitles=["ORTHANC","CR_ROOM_2"]',
    ]);
    const ingest = deployment(objects, 'ingest');
    expect(container(ingest).ports).toEqual([
      { name: 'http', containerPort: 8081, protocol: 'TCP' },
      { name: 'grpc', containerPort: 50052, protocol: 'TCP' },
      { name: 'dimse', containerPort: 11112, protocol: 'TCP' },
    ]);
    expect(envOf(ingest)).toMatchObject({
      GRPC_PORT: '50052',
      INGEST_STOW_ENABLED: 'true',
      INGEST_DIMSE_ENABLED: 'true',
      INGEST_DIMSE_PORT: '11112',
      INGEST_DIMSE_AE_TITLE: 'THORAX_AI',
      INGEST_DIMSE_ALLOWED_CALLING_AE_TITLES: 'ORTHANC,CR_ROOM_2',
      INGEST_DIMSE_MAX_ASSOCIATIONS: '16',
    });
    expect(named(objects, 'Service', 'thorax-ingest').spec.ports).toEqual([
      { name: 'http', port: 8081, targetPort: 'http', protocol: 'TCP' },
      { name: 'grpc', port: 50052, targetPort: 'grpc', protocol: 'TCP', appProtocol: 'grpc' },
      { name: 'dimse', port: 11112, targetPort: 'dimse', protocol: 'TCP' },
    ]);
    // Only ingest listens for DICOM.
    for (const c of ['preprocess', 'inference', 'results'] as const) {
      expect(envOf(deployment(objects, c))['INGEST_DIMSE_PORT']).toBeUndefined();
    }
    // In-cluster callers reach every ingest port; nobody outside without dicomCidrs.
    expect(ingressOf(objects, 'ingest')[1]).toEqual({
      from: [{ podSelector: {} }],
      ports: [
        { port: 'http', protocol: 'TCP' },
        { port: 'grpc', protocol: 'TCP' },
        { port: 'dimse', protocol: 'TCP' },
      ],
    });
    expect(ingressOf(objects, 'ingest')).toHaveLength(2);
    expect(ofKind(objects, 'Service')).toHaveLength(4);
  });

  it('switches the SCP and STOW-RS off', () => {
    const objects = render('thorax', [
      '--set',
      'services.ingest.dimse.enabled=false',
      '--set',
      'services.ingest.stow.enabled=false',
      '--set-json',
      'networkPolicy.dicomCidrs=["10.40.0.0/16"]',
    ]);
    const ingest = deployment(objects, 'ingest');
    expect(envOf(ingest)).toMatchObject({ INGEST_DIMSE_ENABLED: 'false', INGEST_STOW_ENABLED: 'false' });
    expect(envOf(ingest)['INGEST_DIMSE_PORT']).toBeUndefined();
    expect(container(ingest).ports.map((p: any) => p.name)).toEqual(['http', 'grpc']);
    expect(named(objects, 'Service', 'thorax-ingest').spec.ports.map((p: any) => p.name)).toEqual(['http', 'grpc']);
    // Nothing left for outside senders: no rule (an empty port list would open every port).
    expect(JSON.stringify(ingressOf(objects, 'ingest'))).not.toContain('ipBlock');
  });

  it('admits DICOM senders by CIDR to DIMSE and STOW-RS, through a LoadBalancer limited to the same ranges', () => {
    const objects = render('thorax', [
      '--set-json',
      'networkPolicy.dicomCidrs=["10.40.0.0/16","192.168.7.12/32"]',
      '--set',
      'services.ingest.dimse.externalService.enabled=true',
      '--set',
      'services.ingest.dimse.externalService.port=104',
      '--set',
      'services.ingest.dimse.externalService.annotations.service\\.beta\\.kubernetes\\.io/aws-load-balancer-scheme=internal',
    ]);
    expect(ingressOf(objects, 'ingest')).toContainEqual({
      from: [{ ipBlock: { cidr: '10.40.0.0/16' } }, { ipBlock: { cidr: '192.168.7.12/32' } }],
      ports: [
        { port: 'dimse', protocol: 'TCP' },
        { port: 'http', protocol: 'TCP' },
      ],
    });
    const external = named(objects, 'Service', 'thorax-ingest-dimse');
    expect(external.metadata.annotations).toEqual({
      'service.beta.kubernetes.io/aws-load-balancer-scheme': 'internal',
    });
    expect(external.spec).toEqual({
      type: 'LoadBalancer',
      externalTrafficPolicy: 'Local',
      loadBalancerSourceRanges: ['10.40.0.0/16', '192.168.7.12/32'],
      selector: deployment(objects, 'ingest').spec.selector.matchLabels,
      ports: [{ name: 'dimse', port: 104, targetPort: 'dimse', protocol: 'TCP' }],
    });
    // The CIDRs reach nothing else.
    for (const c of ['preprocess', 'inference', 'results'] as const) {
      expect(JSON.stringify(ingressOf(objects, c))).not.toContain('ipBlock');
    }
    const nodePort = named(
      render('thorax', [
        '--set-json',
        'networkPolicy.dicomCidrs=["10.40.0.0/16"]',
        '--set',
        'services.ingest.dimse.externalService.enabled=true',
        '--set',
        'services.ingest.dimse.externalService.type=NodePort',
        '--set',
        'services.ingest.dimse.externalService.nodePort=30104',
      ]),
      'Service',
      'thorax-ingest-dimse',
    );
    expect(nodePort.spec.type).toBe('NodePort');
    expect(nodePort.spec.loadBalancerSourceRanges).toBeUndefined();
    expect(nodePort.spec.ports[0]).toMatchObject({ port: 11112, nodePort: 30104 });
  });

  it.each([
    [
      'an external DIMSE Service nobody outside may reach',
      ['--set', 'services.ingest.dimse.externalService.enabled=true'],
      /services\.ingest\.dimse\.externalService needs networkPolicy\.dicomCidrs/,
    ],
    [
      'an AE title longer than 16 characters',
      ['--set', 'services.ingest.dimse.aeTitle=THORAX_INFERENCE_1'],
      /\/services\/ingest\/dimse\/aeTitle': 'THORAX_INFERENCE_1' does not match pattern/,
    ],
    [
      'a calling AE title with a backslash',
      ['--set-json', 'services.ingest.dimse.allowedCallingAeTitles=["PACS\\\\1"]'],
      /\/services\/ingest\/dimse\/allowedCallingAeTitles\/0'/,
    ],
    [
      'a CIDR that is not one',
      ['--set-json', 'networkPolicy.dicomCidrs=["10.40.0.0"]'],
      /\/networkPolicy\/dicomCidrs\/0'/,
    ],
    [
      'a node port outside the range',
      ['--set', 'services.ingest.dimse.externalService.nodePort=104'],
      /\/services\/ingest\/dimse\/externalService\/nodePort'/,
    ],
  ])('rejects %s', (_what, args, message) => {
    const result = helmTemplate('thorax', args);
    expect(result.ok).toBe(false);
    expect(!result.ok && result.error).toMatch(message);
  });
});

describe('NetworkPolicy: admin API and metrics', () => {
  it("admits the scrapers and labelled admin pods to inference's HTTP port (the model admin API), nobody else", () => {
    const objects = render('thorax');
    expect(ingressOf(objects, 'inference')).toEqual([
      {
        from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }],
        ports: [{ port: 'http', protocol: 'TCP' }],
      },
      {
        from: [{ podSelector: { matchLabels: { 'thorax.io/admin': 'true' } } }],
        ports: [{ port: 'http', protocol: 'TCP' }],
      },
    ]);
  });

  it('drops a rule whose peer list is empty instead of opening the port to every source', () => {
    const objects = render('thorax', [
      '--set-json',
      'networkPolicy.metricsFrom=[]',
      '--set-json',
      'networkPolicy.adminFrom=[]',
    ]);
    // Kubernetes reads an empty `from` as "any source": no such rule may be rendered.
    for (const c of COMPONENTS) {
      for (const rule of ingressOf(objects, c) ?? []) expect(rule.from?.length ?? 0).toBeGreaterThan(0);
    }
    expect(ingressOf(objects, 'preprocess') ?? []).toEqual([]);
    expect(ingressOf(objects, 'inference') ?? []).toEqual([]);
    // The API peers stay.
    expect(ingressOf(objects, 'results')).toHaveLength(1);
  });

  it('takes admin peers from a labelled namespace', () => {
    const peer = { namespaceSelector: { matchLabels: { 'thorax.io/admin': 'true' } } };
    const objects = render('thorax', ['--set-json', `networkPolicy.adminFrom=[${JSON.stringify(peer)}]`]);
    expect(ingressOf(objects, 'inference')[1]).toEqual({ from: [peer], ports: [{ port: 'http', protocol: 'TCP' }] });
    // Admin peers do not reach the other services.
    for (const c of ['ingest', 'preprocess', 'results'] as const) {
      expect(JSON.stringify(ingressOf(objects, c))).not.toContain('thorax.io/admin');
    }
  });
});

describe("the services' own configuration schemas", () => {
  /**
   * Each Deployment's environment as its container gets it (the release ConfigMap, then its own
   * variables; Secret references and mounted files stand in as a readable file), parsed by the
   * built service's config schema, as it does at start-up: a variable the chart names wrongly, or
   * a value the service refuses, fails here rather than in a crash-looping pod.
   */
  it.each([
    ['the secure profile', [...values('values-secure.yaml')], [] as string[]],
    [
      'a shared volume, DICOM senders and an allow-list',
      [
        '--set-json',
        'services.ingest.dimse.allowedCallingAeTitles=["ORTHANC","CR_ROOM_2"]',
        '--set',
        'services.ingest.dimse.aeTitle=THORAX_AI',
        '--set',
        'services.ingest.stow.enabled=false',
      ],
      SHARED_VOLUME,
    ],
    [
      'S3 with static keys',
      ['--set', 'objectStore.s3.endpoint=http://minio:9000', '--set', 'objectStore.s3.existingSecret=s3', ...S3],
      [] as string[],
    ],
  ])('accept what the chart renders: %s', (_what, args, base) => {
    const objects = render('thorax', args, base);
    const config = named(objects, 'ConfigMap', 'thorax').data ?? {};
    const dir = mkdtempSync(path.join(tmpdir(), 'thorax-chart-env-'));
    try {
      const file = path.join(dir, 'mounted');
      writeFileSync(file, 'mounted-secret\n');
      const envs = Object.fromEntries(
        COMPONENTS.map((c) => {
          const env: Record<string, string> = { ...config };
          for (const e of container(deployment(objects, c)).env as { name: string; value?: string }[]) {
            env[e.name] =
              e.value ?? (e.name === 'DATABASE_URL' ? 'postgres://thorax:x@pg:5432/thorax' : 'from-a-secret');
          }
          // Mounted Secrets: any readable file does.
          for (const key of Object.keys(env))
            if (key.endsWith('_FILE') && env[key].startsWith('/etc/thorax/')) env[key] = file;
          return [c, env];
        }),
      );
      const check = `
        const { loadConfig } = require(${JSON.stringify(path.join(REPO_ROOT, 'dist/libs/config/src/index.js'))});
        const envs = JSON.parse(process.argv[1]);
        const out = {};
        for (const [c, env] of Object.entries(envs)) {
          const mod = require(${JSON.stringify(path.join(REPO_ROOT, 'dist/apps'))} + '/' + c + '/src/config.js');
          const schema = Object.entries(mod).find(([k]) => k.endsWith('ConfigSchema'))[1];
          try { out[c] = loadConfig(schema, env); } catch (e) { out[c] = { error: e.message }; }
        }
        process.stdout.write(JSON.stringify(out));`;
      const run = spawnSync(process.execPath, ['-e', check, JSON.stringify(envs)], { encoding: 'utf8' });
      expect(run.stderr).toBe('');
      const parsed = JSON.parse(run.stdout) as Record<Component, Record<string, unknown>>;
      for (const c of COMPONENTS) {
        expect(parsed[c].error).toBeUndefined();
        expect(parsed[c]['OBJECT_STORE_URL']).toBe(config['OBJECT_STORE_URL']);
      }
      const ingest = parsed.ingest;
      expect(ingest['GRPC_PORT']).toBe(50052);
      expect(ingest['INGEST_DIMSE_PORT']).toBe(11112);
      if (args.includes('services.ingest.dimse.aeTitle=THORAX_AI')) {
        expect(ingest['INGEST_DIMSE_AE_TITLE']).toBe('THORAX_AI');
        expect(ingest['INGEST_DIMSE_ALLOWED_CALLING_AE_TITLES']).toEqual(['ORTHANC', 'CR_ROOM_2']);
        expect(ingest['INGEST_STOW_ENABLED']).toBe(false);
      } else {
        // "*": any calling AE title.
        expect(ingest['INGEST_DIMSE_ALLOWED_CALLING_AE_TITLES']).toBeNull();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
