/**
 * What the conformance tests share: Builds created and read back with the harness's admin
 * identity, the audit log turned into `VERB resource CODE` lines per user, events, and `spot-run`
 * runs (through tsx or as the single-file bundle) in in-cluster mode against a Cluster.
 */
import { strict as assert } from 'node:assert';
import type { ChildProcess } from 'node:child_process';
import { test } from 'node:test';
import { bundleSpotRun, runCli, type CliResult } from '../support/cli.js';
import type { ApplyOptions, AuditEvent, Cluster, KubeObject, ServiceAccountFolder } from './harness.js';

export const GROUP_PATH = '/apis/spot.release.com/v1alpha1';
export const buildsPath = (ns: string) => `${GROUP_PATH}/namespaces/${ns}/builds`;
export const buildPath = (ns: string, name: string) => `${buildsPath(ns)}/${name}`;

/** The spec of deploy/sample-build.yaml's shape. */
export const SPEC = { image: { name: 'team/app', tag: '1.4.2', registry: { url: 'registry.example.com' } } };
export const IMAGE = 'registry.example.com/team/app:1.4.2@sha256:9b2f0c4e';

export interface StoredBuild extends KubeObject {
  spec?: Record<string, unknown>;
  status?: {
    phase?: string;
    stage?: string;
    conditions?: Array<{ type: string; status: string; reason?: string; message?: string; lastTransitionTime?: string }>;
    pod?: Record<string, unknown>;
    image?: Record<string, unknown>;
    [key: string]: unknown;
  };
}

export interface StoredEvent extends KubeObject {
  type: string;
  reason: string;
  message: string;
  count: number;
  involvedObject: Record<string, string>;
  source?: { component?: string };
  reportingComponent?: string;
  reportingInstance?: string;
  firstTimestamp?: string;
  lastTimestamp?: string;
}

/** Creates a Build as the operator would (main resource; status, when given, through /status). */
export async function createBuild(cluster: Cluster, ns: string, name: string, spec: unknown = SPEC, status?: unknown): Promise<StoredBuild> {
  const created = await cluster.http.expect<StoredBuild>({
    method: 'POST',
    path: buildsPath(ns),
    body: { apiVersion: 'spot.release.com/v1alpha1', kind: 'Build', metadata: { name, namespace: ns }, spec },
  });
  if (status === undefined) return created;
  return cluster.http.expect<StoredBuild>({ method: 'PUT', path: `${buildPath(ns, name)}/status`, body: { ...created, status } });
}

export function readBuild(cluster: Cluster, ns: string, name: string): Promise<StoredBuild> {
  return cluster.http.get<StoredBuild>(buildPath(ns, name));
}

/** The events of a namespace, oldest first. */
export async function eventsIn(cluster: Cluster, ns: string): Promise<StoredEvent[]> {
  const list = await cluster.http.get<{ items: StoredEvent[] }>(`/api/v1/namespaces/${ns}/events`);
  return list.items.sort((a, b) => String(a.metadata.creationTimestamp).localeCompare(String(b.metadata.creationTimestamp)) || a.metadata.name.localeCompare(b.metadata.name));
}

/**
 * The one audit event per request that says how it ended: ResponseComplete, or, for a request
 * refused by authentication (which never gets that far), its ResponseStarted event.
 */
export const finalAuditEvent = (e: AuditEvent) => e.stage === 'ResponseComplete' || (e.stage === 'ResponseStarted' && e.responseStatus?.code === 401);

/** `VERB resource[/subresource] CODE` of the audit events that `match`, in order. */
export function requestLines(events: AuditEvent[], match: (e: AuditEvent) => boolean): string[] {
  return events
    .filter((e) => finalAuditEvent(e) && match(e))
    .map((e) => `${e.verb} ${e.objectRef?.resource ?? e.requestURI}${e.objectRef?.subresource ? `/${e.objectRef.subresource}` : ''} ${e.responseStatus?.code}`);
}

export const byUser = (user: string) => (e: AuditEvent) => e.user?.username === user;
export const serviceAccountUser = (ns: string, name: string) => `system:serviceaccount:${ns}:${name}`;

/** The requests `sa` made, as `VERB resource CODE` lines. */
export async function requestsOf(cluster: Cluster, sa: ServiceAccountFolder, settle?: (lines: string[]) => boolean): Promise<string[]> {
  const match = byUser(serviceAccountUser(sa.namespace, sa.serviceAccount));
  const events = await cluster.audit(settle ? (all) => settle(requestLines(all, match)) : undefined);
  return requestLines(events, match);
}

export type Entry = 'tsx' | 'bundle';

export interface RunOptions {
  entry?: Entry;
  env?: Record<string, string>;
  onOutput?: (text: string, stream: 'stdout' | 'stderr') => void;
  onSpawn?: (child: ChildProcess) => void;
  timeoutMs?: number;
}

/** `spot-run --grace 3 ARGS --step ...` in in-cluster mode with the service-account folder `sa`. */
export async function spotRun(
  sa: ServiceAccountFolder,
  reference: string,
  steps: Array<[type: string, command: string]>,
  options: RunOptions & { args?: string[] } = {},
): Promise<CliResult> {
  const entry = options.entry === 'tsx' ? undefined : await bundleSpotRun();
  return runCli(['--grace', '3', ...(options.args ?? []), ...steps.flatMap(([type, command]) => ['--step', `${type}=${command}`])], {
    ...(entry ? { entry } : {}),
    timeoutMs: options.timeoutMs ?? 60_000,
    ...(options.onOutput ? { onOutput: options.onOutput } : {}),
    ...(options.onSpawn ? { onSpawn: options.onSpawn } : {}),
    env: { ...sa.env, BUILD_REFERENCE: reference, POD_NAME: `${reference.split('/')[1]}-pod`, ...options.env },
  });
}

/** Resolves when a marker has appeared in a child's output (the one the end-to-end tests use). */
export { outputWatch } from '../support/spot-run-e2e.js';

/** The condition table: [type, status, reason]. */
export function conditionRows(build: StoredBuild): Array<[string, string, string | null]> {
  return (build.status?.conditions ?? []).map((c) => [c.type, c.status, c.reason ?? null]);
}

/** Every expected failure of spot-run is one line `spot-run: ...`, never a stack trace. */
export function assertOneErrorLine(stderr: string, pattern: RegExp): string {
  const lines = stderr.split('\n').filter((l) => l.startsWith('spot-run: '));
  assert.equal(lines.length, 1, `exactly one "spot-run:" line on stderr:\n${stderr}`);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(stderr, /\n\s+at .+:\d+:\d+\)?\n/, `no stack trace:\n${stderr}`);
  return lines[0]!;
}

/** Events on `build`: each must point at it exactly (uid included) and come from spot-runtime. */
export function assertOurEvents(events: StoredEvent[], build: StoredBuild, instance: string): void {
  for (const e of events) {
    assert.equal(e.involvedObject.uid, build.metadata.uid, `event ${e.metadata.name} points at the Build's uid`);
    assert.equal(e.involvedObject.kind, 'Build');
    assert.equal(e.involvedObject.apiVersion, 'spot.release.com/v1alpha1');
    assert.equal(e.involvedObject.name, build.metadata.name);
    assert.equal(e.involvedObject.namespace, build.metadata.namespace);
    assert.equal(e.metadata.namespace, build.metadata.namespace, 'events live in the Build\'s namespace');
    assert.equal(e.reportingComponent, 'spot-runtime');
    assert.equal(e.reportingInstance, instance);
    assert.deepEqual(e.source, { component: 'spot-runtime' });
  }
}

export const BUILD_ROLE_TEMPLATE = 'deploy/build-role.template.yaml';

export interface BuildIdentityOptions {
  /** Default `spot-build-<build>`, as deploy/rbac.yaml names it. */
  serviceAccount?: string;
  /** Where the build pod runs: default the Build's namespace; `spot-system` in the operator's layout. */
  serviceAccountNamespace?: string;
  /** Last word on each rendered object (e.g. a Role with fewer rules). */
  transform?: ApplyOptions['transform'];
  /** Mint the folder's token bound to this Secret (in the service account's namespace). */
  boundSecret?: string;
}

/** The placeholders of deploy/build-role.template.yaml for `build`. */
export function buildRoleVars(build: StoredBuild, options: BuildIdentityOptions = {}): Record<string, string> {
  const namespace = build.metadata.namespace ?? 'default';
  return {
    BUILD_NAME: build.metadata.name,
    BUILD_NAMESPACE: namespace,
    BUILD_UID: build.metadata.uid ?? '',
    SERVICE_ACCOUNT: options.serviceAccount ?? `spot-build-${build.metadata.name}`,
    SERVICE_ACCOUNT_NAMESPACE: options.serviceAccountNamespace ?? namespace,
  };
}

/**
 * What the operator creates for each Build (deploy/build-role.template.yaml rendered for it: its
 * own ServiceAccount, a Role naming the Build, the binding), and the pod's service-account folder
 * with a fresh bound token. Resolves to the folder and the objects applied.
 */
export async function buildIdentity(cluster: Cluster, build: StoredBuild, options: BuildIdentityOptions = {}): Promise<{ sa: ServiceAccountFolder; objects: KubeObject[] }> {
  const vars = buildRoleVars(build, options);
  const objects = await cluster.applyDeploy([BUILD_ROLE_TEMPLATE], { vars, ...(options.transform ? { transform: options.transform } : {}) });
  const sa = await cluster.serviceAccountFolder(vars.SERVICE_ACCOUNT_NAMESPACE!, vars.SERVICE_ACCOUNT!, options.boundSecret ? { boundSecret: options.boundSecret } : {});
  return { sa, objects };
}

/** A rendered Role without its events rule (a cluster whose operator grants no Events). */
export const withoutEvents = (o: KubeObject): KubeObject =>
  o.kind === 'Role' ? { ...o, rules: (o.rules as Array<{ resources: string[] }>).filter((r) => !r.resources.includes('events')) } : o;

/**
 * `test()` whose failure also shows the end of the API server's and etcd's logs (they run with
 * their output in files). `cluster` is read when the test runs, after `before` started it.
 */
export function clusterTest(cluster: () => Cluster, name: string, fn: () => Promise<void>, options: { todo?: string; timeout?: number } = {}): void {
  test(name, options, async () => {
    try {
      await fn();
    } catch (err) {
      if (err instanceof Error) err.message += `\n${cluster().logs(25)}`;
      throw err;
    }
  });
}
