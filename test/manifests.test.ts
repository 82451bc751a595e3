/**
 * deploy/*.yaml checked with the real kubectl, offline (and the Dockerfile against package.json).
 *
 * `kubectl apply --dry-run=client` is not an offline command: even with --validate=false it asks
 * the API server's discovery endpoints which resource a kind maps to, and with validation on it
 * downloads the OpenAPI schema. There is no cluster on CI, so this file starts a loopback stand-in
 * that answers only those read-only requests (discovery, /openapi/v2, 404 for object GETs) and
 * points kubectl at it with a throwaway kubeconfig. Discovery lists the built-in kinds the
 * manifests use; the Build kind appears only once deploy/crd.yaml has been applied, exactly as on
 * a real cluster, and its schema is derived from that CRD, so kubectl's client-side validation of
 * deploy/sample-build.yaml runs against the CRD we ship. Any request other than GET fails the run:
 * a dry run must never write.
 *
 * What this cannot reach, it checks another way:
 * - The OpenAPI schemas of built-in kinds live in the API server, not in kubectl, so kubectl does
 *   not validate Pods or RoleBindings here. `kubectl set ... --local` decodes them into kubectl's
 *   compiled-in Go types instead; a field that comes back missing was unknown to Kubernetes.
 * - kubectl validates CRD-typed objects against the OpenAPI v2 form of the schema, which drops
 *   enums, formats and everything under x-kubernetes-preserve-unknown-fields. The API server
 *   enforces those, so the Build (and a status shaped like the runtime's writes) is also checked
 *   against the CRD's openAPIV3Schema in JS.
 */
import { after, before, test } from 'node:test';
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { DEFAULT_SERVICEACCOUNT_DIR } from '../lib/index.js';
import { BUILD_GROUP, BUILD_KIND, BUILD_PLURAL, BUILD_VERSION } from '../lib/types.js';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const DEPLOY = join(ROOT, 'deploy');
const KUBECTL = process.env.KUBECTL ?? 'kubectl';
/** kubectl answers in well under a second; this only bounds a hang (e.g. a request we never answer). */
const KUBECTL_TIMEOUT_MS = 20_000;

// ---------------------------------------------------------------------------------------------
// JSON shapes. kubectl's output is trusted to be JSON; these name only what the tests read.

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

interface KObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [key: string]: unknown;
}

interface PolicyRule {
  apiGroups?: string[];
  resources?: string[];
  verbs: string[];
  resourceNames?: string[];
  nonResourceURLs?: string[];
}

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { fieldRef?: { fieldPath: string } };
}

interface Container {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  env?: EnvVar[];
  securityContext?: {
    allowPrivilegeEscalation?: boolean;
    readOnlyRootFilesystem?: boolean;
    runAsNonRoot?: boolean;
    capabilities?: { drop?: string[]; add?: string[] };
  };
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
}

interface PodManifest extends KObject {
  spec: {
    serviceAccountName?: string;
    automountServiceAccountToken?: boolean;
    terminationGracePeriodSeconds?: number;
    restartPolicy?: string;
    securityContext?: { runAsNonRoot?: boolean; runAsUser?: number };
    containers: Container[];
  };
}

/** The subset of apiextensions.k8s.io/v1 JSONSchemaProps that a structural schema uses. */
interface JSONSchemaProps {
  type?: string;
  description?: string;
  format?: string;
  enum?: Json[];
  minLength?: number;
  required?: string[];
  properties?: Record<string, JSONSchemaProps>;
  additionalProperties?: JSONSchemaProps | boolean;
  items?: JSONSchemaProps;
  'x-kubernetes-preserve-unknown-fields'?: boolean;
  'x-kubernetes-list-type'?: string;
  'x-kubernetes-list-map-keys'?: string[];
  [key: string]: unknown;
}

interface CrdVersion {
  name: string;
  served: boolean;
  storage: boolean;
  subresources?: { status?: JsonObject; scale?: JsonObject };
  additionalPrinterColumns?: Array<{ name: string; type: string; jsonPath: string }>;
  schema?: { openAPIV3Schema?: JSONSchemaProps };
}

interface CrdManifest extends KObject {
  spec: {
    group: string;
    scope: 'Namespaced' | 'Cluster';
    names: {
      plural: string;
      singular?: string;
      kind: string;
      listKind?: string;
      shortNames?: string[];
      categories?: string[];
    };
    versions: CrdVersion[];
  };
}

// ---------------------------------------------------------------------------------------------
// The loopback stand-in for an API server's read-only surface.

interface APIResource {
  name: string;
  singularName: string;
  namespaced: boolean;
  kind: string;
  verbs: string[];
  shortNames?: string[];
  categories?: string[];
}

const OBJECT_VERBS = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'];
const STATUS_VERBS = ['get', 'patch', 'update'];

function resource(name: string, singularName: string, kind: string, namespaced: boolean, shortNames?: string[]): APIResource {
  return { name, singularName, kind, namespaced, verbs: OBJECT_VERBS, ...(shortNames ? { shortNames } : {}) };
}

/** Built-in kinds the manifests use, as a v1.32 API server lists them (trimmed to these). */
function builtinDiscovery(): Map<string, APIResource[]> {
  return new Map([
    [
      'v1',
      [
        resource('events', 'event', 'Event', true, ['ev']),
        resource('namespaces', 'namespace', 'Namespace', false, ['ns']),
        resource('pods', 'pod', 'Pod', true, ['po']),
        { ...resource('pods/status', '', 'Pod', true), verbs: STATUS_VERBS },
        resource('serviceaccounts', 'serviceaccount', 'ServiceAccount', true, ['sa']),
      ],
    ],
    [
      'rbac.authorization.k8s.io/v1',
      [
        resource('clusterrolebindings', 'clusterrolebinding', 'ClusterRoleBinding', false),
        resource('clusterroles', 'clusterrole', 'ClusterRole', false),
        resource('rolebindings', 'rolebinding', 'RoleBinding', true),
        resource('roles', 'role', 'Role', true),
      ],
    ],
    [
      'apiextensions.k8s.io/v1',
      [
        resource('customresourcedefinitions', 'customresourcedefinition', 'CustomResourceDefinition', false, ['crd', 'crds']),
        { ...resource('customresourcedefinitions/status', '', 'CustomResourceDefinition', false), verbs: STATUS_VERBS },
      ],
    ],
  ]);
}

class FakeDiscoveryServer {
  readonly groupVersions = builtinDiscovery();
  /** OpenAPI v2 definitions, by name; only CRD-derived ones (see the file comment). */
  readonly definitions = new Map<string, JSONSchemaProps>();
  /** Requests a client dry run must never make. */
  readonly writes: string[] = [];
  private server: Server | undefined;

  async start(): Promise<string> {
    const server = createServer((req, res) => this.handle(req, res));
    this.server = server;
    await new Promise<void>((done, fail) => {
      server.once('error', fail);
      server.listen(0, '127.0.0.1', done);
    });
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((done) => server.close(() => done()));
  }

  /** What the API server does when a CRD is established: serve its kind and publish its schema. */
  registerCrd(crd: CrdManifest): void {
    const { group, names, scope } = crd.spec;
    for (const version of crd.spec.versions.filter((v) => v.served)) {
      const gv = `${group}/${version.name}`;
      const resources = (this.groupVersions.get(gv) ?? []).filter((r) => r.kind !== names.kind);
      resources.push({
        name: names.plural,
        singularName: names.singular ?? names.kind.toLowerCase(),
        namespaced: scope === 'Namespaced',
        kind: names.kind,
        verbs: OBJECT_VERBS,
        ...(names.shortNames ? { shortNames: names.shortNames } : {}),
        ...(names.categories ? { categories: names.categories } : {}),
      });
      if (version.subresources?.status) {
        resources.push({ ...resource(`${names.plural}/status`, '', names.kind, scope === 'Namespaced'), verbs: STATUS_VERBS });
      }
      this.groupVersions.set(gv, resources);

      const schema = version.schema?.openAPIV3Schema;
      if (schema) {
        const definitionName = [...group.split('.').reverse(), version.name, names.kind].join('.');
        this.definitions.set(definitionName, {
          ...toOpenAPIV2(schema),
          'x-kubernetes-group-version-kind': [{ group, version: version.name, kind: names.kind }],
        });
      }
    }
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const json = (code: number, body: unknown): void => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    const status = (code: number, reason: string, message: string): void =>
      json(code, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code });

    if (req.method !== 'GET') {
      this.writes.push(`${req.method} ${req.url}`);
      status(405, 'MethodNotAllowed', 'this stand-in only answers reads: a dry run must not write');
      return;
    }

    const groups = [...this.groupVersions.keys()].filter((gv) => gv.includes('/'));
    const resourceList = (groupVersion: string): void =>
      json(200, { kind: 'APIResourceList', apiVersion: 'v1', groupVersion, resources: this.groupVersions.get(groupVersion) });

    if (path === '/version') {
      json(200, { major: '1', minor: '32', gitVersion: 'v1.32.0-offline-stand-in', platform: 'linux/amd64' });
    } else if (path === '/api') {
      json(200, {
        kind: 'APIVersions',
        versions: ['v1'],
        serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: req.headers.host ?? '127.0.0.1' }],
      });
    } else if (path === '/apis') {
      // Plain application/json makes kubectl fall back from aggregated to legacy discovery.
      json(200, {
        kind: 'APIGroupList',
        apiVersion: 'v1',
        groups: groups.map((groupVersion) => {
          const [name = '', version = ''] = groupVersion.split('/');
          const gv = { groupVersion, version };
          return { name, versions: [gv], preferredVersion: gv };
        }),
      });
    } else if (path === '/api/v1') {
      resourceList('v1');
    } else if (path.startsWith('/apis/') && this.groupVersions.has(path.slice('/apis/'.length))) {
      resourceList(path.slice('/apis/'.length));
    } else if (path === '/openapi/v2') {
      // client-go reads only the protobuf form. The media type carries no "@": kubectl parses it.
      res.writeHead(200, { 'content-type': 'application/com.github.proto-openapi.spec.v2.v1.0+protobuf' });
      res.end(encodeOpenAPIV2Document(this.definitions));
    } else {
      // /openapi/v3 included: without it kubectl checks /openapi/v2 for server-side field
      // validation, finds none, and validates client-side. Object GETs (apply asks whether the
      // object exists) get the API server's "not found", so apply takes its create path.
      status(404, 'NotFound', 'the server could not find the requested resource');
    }
  }
}

/**
 * The OpenAPI v2 form of a CRD schema, as the API server publishes it for kubectl: a node with
 * x-kubernetes-preserve-unknown-fields becomes an untyped "anything", because kubectl would
 * otherwise report the fields it is meant to keep as unknown; validation-only keywords go.
 */
function toOpenAPIV2(schema: JSONSchemaProps): JSONSchemaProps {
  if (schema['x-kubernetes-preserve-unknown-fields'] === true) return {};
  const out: JSONSchemaProps = {};
  if (schema.type) out.type = schema.type;
  if (schema.required) out.required = schema.required;
  if (schema.items) out.items = toOpenAPIV2(schema.items);
  if (schema.properties) {
    out.properties = Object.fromEntries(Object.entries(schema.properties).map(([k, v]) => [k, toOpenAPIV2(v)]));
  }
  if (typeof schema.additionalProperties === 'object') out.additionalProperties = toOpenAPIV2(schema.additionalProperties);
  return out;
}

// Protobuf encoding of the gnostic openapi_v2.Document (github.com/google/gnostic-models,
// openapiv2/OpenAPIv2.proto), limited to the fields toOpenAPIV2 produces. Field numbers below are
// from that file.

function varint(n: number): Buffer {
  const bytes: number[] = [];
  while (n > 0x7f) {
    bytes.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  bytes.push(n);
  return Buffer.from(bytes);
}
const lengthDelimited = (field: number, payload: Buffer): Buffer =>
  Buffer.concat([varint((field << 3) | 2), varint(payload.length), payload]);
const pbString = (field: number, value: string): Buffer => lengthDelimited(field, Buffer.from(value, 'utf8'));
const pbMessage = (field: number, parts: Buffer[]): Buffer => lengthDelimited(field, Buffer.concat(parts));

function encodeSchema(schema: JSONSchemaProps): Buffer[] {
  const parts: Buffer[] = [];
  for (const name of schema.required ?? []) parts.push(pbString(19, name));
  if (typeof schema.additionalProperties === 'object') {
    parts.push(pbMessage(21, [pbMessage(1, encodeSchema(schema.additionalProperties))]));
  }
  if (schema.type) parts.push(pbMessage(22, [pbString(1, schema.type)]));
  if (schema.items) parts.push(pbMessage(23, [pbMessage(1, encodeSchema(schema.items))]));
  if (schema.properties) {
    const named = Object.entries(schema.properties).map(([name, sub]) => pbMessage(1, [pbString(1, name), pbMessage(2, encodeSchema(sub))]));
    parts.push(pbMessage(25, named));
  }
  for (const [name, value] of Object.entries(schema)) {
    // Vendor extensions travel as NamedAny{name, Any{yaml}}; JSON is valid YAML.
    if (name.startsWith('x-')) parts.push(pbMessage(31, [pbString(1, name), pbMessage(2, [pbString(2, JSON.stringify(value))])]));
  }
  return parts;
}

function encodeOpenAPIV2Document(definitions: Map<string, JSONSchemaProps>): Buffer {
  const named = [...definitions].map(([name, schema]) => pbMessage(1, [pbString(1, name), pbMessage(2, encodeSchema(schema))]));
  return Buffer.concat([
    pbString(1, '2.0'),
    pbMessage(2, [pbString(1, 'Kubernetes'), pbString(2, 'v1.32.0')]),
    pbMessage(9, named),
  ]);
}

// ---------------------------------------------------------------------------------------------
// Running kubectl.

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

let workDir = '';
let kubeconfig = '';
let cacheDirs = 0;
const apiServer = new FakeDiscoveryServer();

/** Async on purpose: the stand-in answers kubectl from this same event loop. */
function kubectl(args: string[], input?: string): Promise<Run> {
  // A fresh discovery cache per call: kubectl caches discovery for hours, and the Build kind
  // appears only after the CRD has been applied.
  const cacheDir = join(workDir, `cache-${++cacheDirs}`);
  const child = spawn(KUBECTL, [`--cache-dir=${cacheDir}`, '--request-timeout=10s', ...args], {
    env: { ...process.env, KUBECONFIG: kubeconfig, HOME: workDir },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  return new Promise((done, fail) => {
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), KUBECTL_TIMEOUT_MS);
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      fail(
        error.code === 'ENOENT'
          ? new Error(`"${KUBECTL}" is not on PATH: the manifest tests need kubectl (CI machines have it; set KUBECTL to use another binary)`)
          : error,
      );
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      done({ code: code ?? (signal ? 128 : 1), stdout, stderr: signal ? `${stderr}\nkilled by ${signal}` : stderr });
    });
    child.stdin.end(input ?? '');
  });
}

function describeRun(args: string[], run: Run): string {
  return `kubectl ${args.join(' ')} exited ${run.code}\n${run.stderr.trim() || run.stdout.trim()}`;
}

function itemsOf(output: string): KObject[] {
  const parsed = JSON.parse(output) as KObject & { items?: KObject[] };
  return parsed.kind === 'List' ? (parsed.items ?? []) : [parsed];
}

async function dryRunApply(file: string): Promise<KObject[]> {
  const args = ['apply', '--dry-run=client', '--validate=strict', '-o', 'json', '-f', file];
  const run = await kubectl(args);
  assert.equal(run.code, 0, describeRun(args, run));
  return itemsOf(run.stdout);
}

/**
 * Decodes `object` into kubectl's compiled-in Go types through a `kubectl set ... --local` that
 * changes nothing, and returns the fields that did not survive: Go's decoder drops unknown fields
 * silently (and fails outright on a wrong type), so a missing field is a misspelled one.
 */
async function fieldsUnknownToKubernetes(
  object: KObject,
  setArgs: string[],
  undoSet: (output: Record<string, unknown>) => void = () => {},
): Promise<string[]> {
  const args = ['set', ...setArgs, '--local', '-f', '-', '-o', 'json'];
  const run = await kubectl(args, JSON.stringify(object));
  assert.equal(run.code, 0, describeRun(args, run));
  assert.ok(run.stdout.trim(), `${describeRun(args, run)}: printed nothing (a set that changes nothing prints nothing for some kinds)`);
  const output = JSON.parse(run.stdout) as Record<string, unknown>;
  undoSet(output);
  return missingLeaves(object, output, '');
}

function missingLeaves(expected: unknown, actual: unknown, path: string): string[] {
  if (Array.isArray(expected)) {
    if (!Array.isArray(actual) || actual.length !== expected.length) return [path];
    return expected.flatMap((item, i) => missingLeaves(item, actual[i], `${path}[${i}]`));
  }
  if (expected !== null && typeof expected === 'object') {
    if (actual === null || typeof actual !== 'object' || Array.isArray(actual)) return [path];
    const actualObject = actual as Record<string, unknown>;
    return Object.entries(expected).flatMap(([key, value]) => missingLeaves(value, actualObject[key], `${path}.${key}`));
  }
  return Object.is(expected, actual) ? [] : [path];
}

// ---------------------------------------------------------------------------------------------
// A JS rendering of what the API server enforces with a CRD's structural schema.

const SCHEMA_KEYS = new Set([
  'type', 'description', 'format', 'enum', 'minLength', 'required', 'properties', 'additionalProperties', 'items',
  'x-kubernetes-preserve-unknown-fields', 'x-kubernetes-list-type', 'x-kubernetes-list-map-keys',
]);
const SCHEMA_TYPES = new Set(['object', 'array', 'string', 'integer', 'number', 'boolean']);

/**
 * The structural-schema rules the API server rejects a CRD for, plus a closed list of keywords so
 * a misspelled one ("propeties") is caught instead of silently disabling a check.
 */
function structuralProblems(schema: JSONSchemaProps, path: string): string[] {
  const problems: string[] = [];
  for (const key of Object.keys(schema)) if (!SCHEMA_KEYS.has(key)) problems.push(`${path}: unexpected keyword "${key}"`);
  if (!schema.type || !SCHEMA_TYPES.has(schema.type)) problems.push(`${path}: type must be one of ${[...SCHEMA_TYPES].join(', ')}`);
  if (schema.properties && schema.additionalProperties !== undefined) problems.push(`${path}: properties and additionalProperties are exclusive`);
  if (schema['x-kubernetes-preserve-unknown-fields'] && schema.type !== 'object') problems.push(`${path}: preserve-unknown-fields on a non-object`);
  if ((schema.properties || schema.additionalProperties !== undefined) && schema.type !== 'object') problems.push(`${path}: properties on a non-object`);
  if (schema.items && schema.type !== 'array') problems.push(`${path}: items on a non-array`);
  if (schema.type === 'array' && !schema.items) problems.push(`${path}: array without items`);
  for (const name of schema.required ?? []) if (!schema.properties?.[name]) problems.push(`${path}: required "${name}" is not a property`);
  if (schema['x-kubernetes-list-type'] === 'map') {
    for (const key of schema['x-kubernetes-list-map-keys'] ?? []) {
      // The API server requires map keys to be required (or defaulted) so every entry has one.
      if (!schema.items?.required?.includes(key)) problems.push(`${path}: list-map key "${key}" must be required in items`);
    }
  }
  for (const value of schema.enum ?? []) if (typeOf(value) !== schema.type) problems.push(`${path}: enum value ${JSON.stringify(value)} is not a ${schema.type}`);
  for (const [name, sub] of Object.entries(schema.properties ?? {})) problems.push(...structuralProblems(sub, `${path}.properties.${name}`));
  if (typeof schema.additionalProperties === 'object') problems.push(...structuralProblems(schema.additionalProperties, `${path}.additionalProperties`));
  if (schema.items) problems.push(...structuralProblems(schema.items, `${path}.items`));
  return problems;
}

function typeOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'number';
  return typeof value;
}

/** RFC 3339 date-time, as the API server's "date-time" format accepts it. */
const DATE_TIME = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

/**
 * Errors the API server would answer a write of `value` with (kubectl apply asks for strict field
 * validation, so unknown fields outside preserve-unknown-fields count too).
 */
function schemaErrors(schema: JSONSchemaProps, value: unknown, path: string): string[] {
  const actualType = typeOf(value);
  const typeMatches = schema.type === 'number' ? actualType === 'number' || actualType === 'integer' : actualType === schema.type;
  if (schema.type && !typeMatches) return [`${path}: expected ${schema.type}, got ${actualType}`];
  const errors: string[] = [];
  if (schema.enum && !schema.enum.some((allowed) => allowed === value)) errors.push(`${path}: unsupported value ${JSON.stringify(value)}`);
  if (typeof value === 'string') {
    if (schema.minLength !== undefined && value.length < schema.minLength) errors.push(`${path}: shorter than ${schema.minLength}`);
    if (schema.format === 'date-time' && !DATE_TIME.test(value)) errors.push(`${path}: not an RFC 3339 date-time`);
  }
  if (actualType === 'object') {
    const object = value as Record<string, unknown>;
    for (const name of schema.required ?? []) if (!(name in object)) errors.push(`${path}.${name}: required`);
    for (const [key, item] of Object.entries(object)) {
      const declared = schema.properties?.[key];
      if (declared) errors.push(...schemaErrors(declared, item, `${path}.${key}`));
      else if (typeof schema.additionalProperties === 'object') errors.push(...schemaErrors(schema.additionalProperties, item, `${path}.${key}`));
      else if (!schema['x-kubernetes-preserve-unknown-fields'] && schema.properties) errors.push(`${path}.${key}: unknown field`);
    }
  }
  if (Array.isArray(value) && schema.items) {
    const items = schema.items;
    value.forEach((item, i) => errors.push(...schemaErrors(items, item, `${path}[${i}]`)));
    if (schema['x-kubernetes-list-type'] === 'map') {
      const keys = schema['x-kubernetes-list-map-keys'] ?? [];
      const seen = new Set<string>();
      for (const [i, item] of value.entries()) {
        const key = JSON.stringify(keys.map((k) => (item as Record<string, unknown> | null)?.[k]));
        if (seen.has(key)) errors.push(`${path}[${i}]: duplicate entry for key ${key}`);
        seen.add(key);
      }
    }
  }
  return errors;
}

// ---------------------------------------------------------------------------------------------
// Fixtures.

const yamlFiles = readdirSync(DEPLOY, { withFileTypes: true })
  .filter((entry) => entry.isFile() && /\.ya?ml$/.test(entry.name))
  .map((entry) => entry.name)
  .sort();
/** Templates hold ${PLACEHOLDERS}: applied only once rendered (renderTemplate). */
const templateFiles = yamlFiles.filter((name) => name.endsWith('.template.yaml'));
const manifestFiles = yamlFiles.filter((name) => !templateFiles.includes(name));
/** Files that define CRDs; applied (and registered) before anything that may use their kinds. */
const crdFiles = manifestFiles.filter((name) => /^kind:\s*CustomResourceDefinition\s*$/m.test(readFileSync(join(DEPLOY, name), 'utf8')));
/**
 * The CRD each file of Builds is written for. Both CRDs are named builds.spot.release.com, so a
 * cluster (and the stand-in) serves one of them at a time: each sample is checked against its own.
 */
const CRD_OF_BUILDS: Record<string, string> = { 'sample-build.yaml': 'crd.yaml', 'spot-sample-build.yaml': 'spot-crd.yaml' };

const applied = new Map<string, Promise<KObject[]>>();

/** deploy/NAME through `kubectl apply --dry-run=client`, once per run, CRDs first. */
function applyDeployFile(name: string): Promise<KObject[]> {
  let result = applied.get(name);
  if (!result) {
    result = (async () => {
      if (!crdFiles.includes(name)) await Promise.all(crdFiles.map(applyDeployFile));
      if (CRD_OF_BUILDS[name]) await serveCrdOf(name);
      return dryRunApply(join(DEPLOY, name));
    })();
    applied.set(name, result);
  }
  return result;
}

/** Makes the stand-in serve the Build kind as defined by the CRD `buildsFile` is written for. */
async function serveCrdOf(buildsFile: string): Promise<void> {
  const crdFile = CRD_OF_BUILDS[buildsFile];
  assert.ok(crdFile, `CRD_OF_BUILDS names no CRD for deploy/${buildsFile}`);
  apiServer.registerCrd(await onlyObject<CrdManifest>(crdFile, 'CustomResourceDefinition'));
}

/** The placeholders deploy/build-role.template.yaml documents; the operator fills in each. */
const TEMPLATE_PLACEHOLDERS = ['BUILD_NAME', 'BUILD_NAMESPACE', 'BUILD_UID', 'SERVICE_ACCOUNT', 'SERVICE_ACCOUNT_NAMESPACE'];

/** deploy/NAME with every ${PLACEHOLDER} replaced, as the operator would; fails on one left over. */
function renderTemplate(name: string, values: Record<string, string>): string {
  const rendered = readFileSync(join(DEPLOY, name), 'utf8').replace(/\$\{([A-Z_]+)\}/g, (whole, key: string) => values[key] ?? whole);
  const left = [...new Set([...rendered.matchAll(/\$\{([A-Z_]+)\}/g)].map((m) => m[1]))];
  assert.deepEqual(left, [], `deploy/${name}: no value for ${left.join(', ')}`);
  return rendered;
}

/** The per-Build template rendered for deploy/spot-sample-build.yaml in the operator's layout, through kubectl. */
async function renderedBuildRole(): Promise<KObject[]> {
  const [build] = await applyDeployFile('spot-sample-build.yaml');
  assert.ok(build);
  const file = join(workDir, 'build-role.rendered.yaml');
  writeFileSync(
    file,
    renderTemplate('build-role.template.yaml', {
      BUILD_NAME: build.metadata.name,
      BUILD_NAMESPACE: build.metadata.namespace ?? '',
      BUILD_UID: '5d0b2c4e-8f1a-4c3b-9e2d-7a6f1b0c9d8e',
      SERVICE_ACCOUNT: `spot-build-${build.metadata.name}`,
      SERVICE_ACCOUNT_NAMESPACE: 'spot-system',
    }),
  );
  return dryRunApply(file);
}

async function onlyObject<T extends KObject>(file: string, kind: string): Promise<T> {
  const matches = (await applyDeployFile(file)).filter((o) => o.kind === kind);
  assert.equal(matches.length, 1, `deploy/${file} should hold exactly one ${kind}`);
  return matches[0] as T;
}

async function buildCrd(): Promise<{ crd: CrdManifest; version: CrdVersion; schema: JSONSchemaProps }> {
  const crd = await onlyObject<CrdManifest>('crd.yaml', 'CustomResourceDefinition');
  const version = crd.spec.versions.find((v) => v.name === BUILD_VERSION);
  assert.ok(version, `the CRD serves ${BUILD_VERSION}`);
  const schema = version.schema?.openAPIV3Schema;
  assert.ok(schema, 'the CRD has an openAPIV3Schema');
  return { crd, version, schema };
}

function stepsOf(args: string[]): Array<{ type: string; command: string }> {
  const values: string[] = [];
  args.forEach((arg, i) => {
    if (arg === '--step') values.push(args[i + 1] ?? '');
    else if (arg.startsWith('--step=')) values.push(arg.slice('--step='.length));
  });
  return values.map((value) => {
    const eq = value.indexOf('=');
    return { type: eq < 0 ? value : value.slice(0, eq), command: eq < 0 ? '' : value.slice(eq + 1) };
  });
}

// ---------------------------------------------------------------------------------------------

before(async () => {
  workDir = mkdtempSync(join(tmpdir(), 'spot-manifests-'));
  const server = await apiServer.start();
  kubeconfig = join(workDir, 'kubeconfig');
  // JSON is YAML: kubectl reads it as a kubeconfig. No credentials; the stand-in wants none.
  writeFileSync(
    kubeconfig,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'offline', cluster: { server } }],
      users: [{ name: 'offline', user: {} }],
      contexts: [{ name: 'offline', context: { cluster: 'offline', user: 'offline', namespace: 'default' } }],
      'current-context': 'offline',
    }),
  );
  const version = await kubectl(['version', '--client', '-o', 'json']);
  assert.equal(version.code, 0, `kubectl cannot run: ${version.stderr}`);
});

after(async () => {
  await apiServer.stop();
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

test('deploy/ holds both CRDs with a sample each, the identities, the builder pods and the per-Build template', () => {
  for (const name of [
    'crd.yaml',
    'sample-build.yaml',
    'rbac.yaml',
    'build-pod.yaml',
    'spot-crd.yaml',
    'spot-sample-build.yaml',
    'operator-layout.yaml',
    'operator-build-pod.yaml',
    'build-role.template.yaml',
  ]) {
    assert.ok(yamlFiles.includes(name), `deploy/${name} is missing`);
  }
  assert.deepEqual(crdFiles, ['crd.yaml', 'spot-crd.yaml']);
  assert.deepEqual(templateFiles, ['build-role.template.yaml']);
  const withBuilds = manifestFiles.filter((name) => /^kind:\s*Build\s*$/m.test(readFileSync(join(DEPLOY, name), 'utf8')));
  assert.deepEqual(withBuilds, Object.keys(CRD_OF_BUILDS).sort(), 'every file of Builds says which CRD it is written for (CRD_OF_BUILDS)');
});

for (const name of manifestFiles) {
  test(`kubectl apply --dry-run=client accepts deploy/${name}`, async () => {
    const objects = await applyDeployFile(name);
    assert.ok(objects.length > 0, `deploy/${name} holds no objects`);
  });
}

test('kubectl apply --dry-run=client accepts deploy/build-role.template.yaml, rendered for deploy/spot-sample-build.yaml', async () => {
  const objects = await renderedBuildRole();
  assert.deepEqual(objects.map((o) => o.kind), ['ServiceAccount', 'Role', 'RoleBinding']);
  // Every placeholder used is documented in the header, and every documented one is used.
  const text = readFileSync(join(DEPLOY, 'build-role.template.yaml'), 'utf8');
  const body = text.split('\n').filter((line) => !line.trimStart().startsWith('#')).join('\n');
  const header = text.split('\n').filter((line) => line.startsWith('#')).join('\n');
  const used = [...new Set([...body.matchAll(/\$\{([A-Z_]+)\}/g)].map((m) => m[1]))].sort();
  assert.deepEqual(used, [...TEMPLATE_PLACEHOLDERS].sort());
  for (const name of TEMPLATE_PLACEHOLDERS) assert.match(header, new RegExp(`^#\\s+\\$\\{${name}\\}\\s`, 'm'), `the header explains \${${name}}`);
});

test('the offline harness rejects what a cluster would reject', async (t) => {
  const sample = readFileSync(join(DEPLOY, 'sample-build.yaml'), 'utf8');
  const attempt = async (manifest: string): Promise<Run> => {
    await serveCrdOf('sample-build.yaml');
    const file = join(workDir, `negative-${++cacheDirs}.yaml`);
    writeFileSync(file, manifest);
    return kubectl(['apply', '--dry-run=client', '--validate=strict', '-o', 'json', '-f', file]);
  };

  await t.test('a field the Build schema does not have', async () => {
    const run = await attempt(`${sample}\nspecification: {}\n`);
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, /unknown field "specification"/);
  });
  await t.test('a kind the cluster does not serve', async () => {
    const run = await attempt(sample.replace(/^kind: Build$/m, 'kind: Biuld'));
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, /no matches for kind "Biuld"/);
  });
  await t.test('a misspelled Pod field, through the typed round trip', async () => {
    const pod = await onlyObject<PodManifest>('build-pod.yaml', 'Pod');
    const misspelled = structuredClone(pod);
    const container = misspelled.spec.containers[0];
    assert.ok(container);
    (container.securityContext as Record<string, unknown>).readOnlyRootFileSystem = true;
    assert.deepEqual(await fieldsUnknownToKubernetes(misspelled, ['serviceaccount', pod.spec.serviceAccountName ?? '']), [
      '.spec.containers[0].securityContext.readOnlyRootFileSystem',
    ]);
  });
});

test('every Pod and RoleBinding field is known to Kubernetes (typed round trip)', async () => {
  for (const file of ['build-pod.yaml', 'operator-build-pod.yaml']) {
    const pod = await onlyObject<PodManifest>(file, 'Pod');
    assert.ok(pod.spec.serviceAccountName, `deploy/${file}: the pod names its service account`);
    assert.deepEqual(await fieldsUnknownToKubernetes(pod, ['serviceaccount', pod.spec.serviceAccountName]), [], `deploy/${file}`);
  }

  // `set subject` prints nothing when the subject is already bound, so bind a probe and drop it.
  const probe = 'typed-round-trip-probe';
  const dropProbe = (output: Record<string, unknown>): void => {
    const subjects = output.subjects as Array<{ name?: string }>;
    assert.equal(subjects.at(-1)?.name, probe);
    subjects.pop();
  };
  const bindings = [
    await onlyObject<KObject>('rbac.yaml', 'RoleBinding'),
    await onlyObject<KObject>('operator-layout.yaml', 'RoleBinding'),
    ...(await renderedBuildRole()).filter((o) => o.kind === 'RoleBinding'),
  ];
  for (const binding of bindings) {
    assert.deepEqual(await fieldsUnknownToKubernetes(binding, ['subject', `--serviceaccount=default:${probe}`], dropProbe), [], binding.metadata.name);
  }
});

test('the CRD defines the Build kind lib/types.ts speaks, with a status subresource', async () => {
  const { crd, version } = await buildCrd();
  assert.equal(crd.metadata.name, `${BUILD_PLURAL}.${BUILD_GROUP}`);
  assert.equal(crd.spec.group, BUILD_GROUP);
  assert.equal(crd.spec.scope, 'Namespaced');
  assert.equal(crd.spec.names.kind, BUILD_KIND);
  assert.equal(crd.spec.names.plural, BUILD_PLURAL);
  assert.equal(crd.spec.names.singular, 'build');
  assert.deepEqual(crd.spec.versions.map((v) => [v.name, v.served, v.storage]), [[BUILD_VERSION, true, true]]);
  // Without it a PUT to builds/NAME/status is a 404 and the runtime cannot report at all.
  assert.deepEqual(version.subresources?.status, {});
  assert.deepEqual(
    version.additionalPrinterColumns?.map((c) => [c.name, c.type, c.jsonPath]),
    [
      ['Phase', 'string', '.status.phase'],
      ['Image', 'string', '.status.image.url'],
      ['Age', 'date', '.metadata.creationTimestamp'],
    ],
  );
});

test('the CRD schema is structural and says what the runtime writes', async () => {
  const { schema } = await buildCrd();
  assert.deepEqual(structuralProblems(schema, 'openAPIV3Schema'), []);

  const spec = schema.properties?.spec;
  const status = schema.properties?.status;
  assert.ok(spec && status);
  assert.equal(spec['x-kubernetes-preserve-unknown-fields'], true, 'the operator may add spec fields');
  const image = spec.properties?.image;
  assert.deepEqual(Object.keys(image?.properties ?? {}).sort(), ['name', 'registry', 'tag']);
  assert.equal(image?.properties?.registry?.properties?.url?.type, 'string');

  assert.deepEqual(status.properties?.phase?.enum, ['', 'Running', 'Done', 'Errored']);
  const conditions = status.properties?.conditions;
  assert.equal(conditions?.type, 'array');
  assert.equal(conditions['x-kubernetes-list-type'], 'map');
  assert.deepEqual(conditions['x-kubernetes-list-map-keys'], ['type']);
  const condition = conditions.items;
  assert.deepEqual(condition?.required?.slice().sort(), ['status', 'type']);
  assert.deepEqual(Object.keys(condition?.properties ?? {}).sort(), ['lastTransitionTime', 'message', 'reason', 'status', 'type']);
  assert.deepEqual(condition?.properties?.status?.enum, ['', 'In Progress', 'Success', 'Error']);
  assert.equal(condition?.properties?.lastTransitionTime?.format, 'date-time');
  assert.deepEqual(Object.keys(status.properties?.pod?.properties ?? {}).sort(), ['name', 'namespace']);
  assert.deepEqual(status.properties?.image?.properties?.metadata?.additionalProperties, { type: 'string' });
});

test('the API server would take the sample Build and the status the runtime writes', async () => {
  const { schema } = await buildCrd();
  const [sample] = await applyDeployFile('sample-build.yaml');
  assert.ok(sample);
  assert.equal(sample.apiVersion, `${BUILD_GROUP}/${BUILD_VERSION}`);
  assert.equal(sample.kind, BUILD_KIND);
  assert.deepEqual(schemaErrors(schema, sample, 'Build'), []);

  const reported = {
    ...sample,
    status: {
      phase: 'Done',
      conditions: [
        { type: 'Fetching Source', status: 'Success', lastTransitionTime: '2025-11-26T00:00:01Z', reason: 'Succeeded', message: '' },
        { type: 'Building Image', status: 'Success', lastTransitionTime: '2025-11-26T00:00:02Z', reason: 'Succeeded' },
        { type: 'Pushing Image', status: 'Error', lastTransitionTime: '2025-11-26T00:00:03Z', reason: 'Terminated', message: 'exit 143' },
        { type: 'Scanning Image', status: '' },
      ],
      pod: { namespace: 'default', name: 'sample-build-builder' },
      image: { url: 'registry.example.com/team/app:1.0.0', metadata: { digest: 'sha256:0123' } },
      operatorNote: 'fields the runtime does not know survive',
    },
  };
  assert.deepEqual(schemaErrors(schema, reported, 'Build'), []);

  const rejected: Array<[string, (status: typeof reported.status) => void, RegExp]> = [
    ['an unknown phase', (s) => void (s.phase = 'Failed'), /status\.phase: unsupported value "Failed"/],
    ['an unknown condition status', (s) => void (s.conditions[0]!.status = 'Failed'), /conditions\[0\]\.status: unsupported value/],
    ['a condition without status', (s) => void delete (s.conditions[3] as { status?: string }).status, /conditions\[3\]\.status: required/],
    ['two conditions of one type', (s) => void (s.conditions[1]!.type = 'Fetching Source'), /duplicate entry/],
    ['a non-RFC 3339 time', (s) => void (s.conditions[0]!.lastTransitionTime = '26/11/2025'), /not an RFC 3339 date-time/],
    ['a non-string image metadata value', (s) => void ((s.image.metadata as Record<string, unknown>).size = 42), /metadata\.size: expected string/],
  ];
  for (const [what, mutate, expected] of rejected) {
    const broken = structuredClone(reported);
    mutate(broken.status);
    assert.match(schemaErrors(schema, broken, 'Build').join('\n'), expected, what);
  }
});

// ---------------------------------------------------------------------------------------------
// Identity: what each layout lets a build pod (and so any step, which can read its token) do.

/** What the runtime does on the API server, as RBAC grants `group/resource:verb`; nothing else. */
const RUNTIME_GRANTS = [
  '/events:create',
  '/events:patch',
  `${BUILD_GROUP}/${BUILD_PLURAL}/status:get`,
  `${BUILD_GROUP}/${BUILD_PLURAL}/status:patch`,
  `${BUILD_GROUP}/${BUILD_PLURAL}/status:update`,
  `${BUILD_GROUP}/${BUILD_PLURAL}:get`,
];
/** Verbs no build pod needs: reading beyond its Build, deleting, or widening its own rights. */
const NEVER_GRANTED = ['list', 'watch', 'delete', 'deletecollection', 'escalate', 'bind', 'impersonate'];

/** Each rule as `group/resource:verb`, plus `@name,...` when narrowed by resourceNames. */
function grantsOf(rules: PolicyRule[], where: string): string[] {
  return rules
    .flatMap((rule) => {
      assert.equal(rule.nonResourceURLs, undefined, `${where}: no non-resource URLs`);
      for (const values of [rule.apiGroups, rule.resources, rule.verbs, rule.resourceNames]) {
        assert.ok(!(values ?? []).some((v) => v.includes('*')), `${where}: no wildcards in ${JSON.stringify(rule)}`);
      }
      const names = rule.resourceNames?.length ? `@${[...rule.resourceNames].sort().join(',')}` : '';
      return (rule.apiGroups ?? []).flatMap((group) =>
        (rule.resources ?? []).flatMap((res) => rule.verbs.map((verb) => `${group}/${res}:${verb}${names}`)),
      );
    })
    .sort();
}

/** A pod scoped to Build `name`: that Build by name; Events by kind only (create has no name to match). */
function scopedTo(name: string): string[] {
  return RUNTIME_GRANTS.map((grant) => (grant.startsWith('/events:') ? grant : `${grant}@${name}`)).sort();
}

function assertNoBroadVerbs(grants: string[], where: string): void {
  for (const grant of grants) {
    const [, verb = ''] = /:(\w+)/.exec(grant) ?? [];
    assert.ok(!NEVER_GRANTED.includes(verb), `${where} grants ${grant}`);
  }
}

type RoleObject = KObject & { rules: PolicyRule[] };
type BindingObject = KObject & { roleRef: JsonObject; subjects: JsonObject[] };

test('deploy/rbac.yaml scopes the sample pod to sample-build: its own ServiceAccount, a Role naming the Build', async () => {
  const [sample] = await applyDeployFile('sample-build.yaml');
  assert.ok(sample);
  const role = await onlyObject<RoleObject>('rbac.yaml', 'Role');
  const grants = grantsOf(role.rules, 'deploy/rbac.yaml');
  assert.deepEqual(grants, scopedTo(sample.metadata.name));
  assertNoBroadVerbs(grants, 'deploy/rbac.yaml');

  const account = await onlyObject<KObject>('rbac.yaml', 'ServiceAccount');
  const binding = await onlyObject<BindingObject>('rbac.yaml', 'RoleBinding');
  assert.deepEqual(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: role.metadata.name });
  assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: account.metadata.name, namespace: account.metadata.namespace ?? null }]);
  for (const object of [role, binding, account]) assert.equal(object.metadata.namespace, sample.metadata.namespace, `${object.kind} in the Build's namespace`);
});

test('deploy/build-role.template.yaml gives each Build its own ServiceAccount and a Role naming only that Build', async () => {
  const [build] = await applyDeployFile('spot-sample-build.yaml');
  assert.ok(build);
  const objects = await renderedBuildRole();
  const byKind = (kind: string) => objects.find((o) => o.kind === kind);
  const account = byKind('ServiceAccount')!;
  const role = byKind('Role') as RoleObject;
  const binding = byKind('RoleBinding') as BindingObject;

  const grants = grantsOf(role.rules, 'the rendered template');
  assert.deepEqual(grants, scopedTo(build.metadata.name));
  assertNoBroadVerbs(grants, 'the rendered template');
  // deploy/rbac.yaml is the same rule, for the sample Build of the same name.
  assert.deepEqual(role.rules, (await onlyObject<RoleObject>('rbac.yaml', 'Role')).rules);

  // Role and binding beside the Build (so they grant there); the ServiceAccount beside the pod.
  assert.equal(role.metadata.namespace, build.metadata.namespace);
  assert.equal(binding.metadata.namespace, build.metadata.namespace);
  assert.equal(account.metadata.namespace, 'spot-system');
  assert.deepEqual(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: role.metadata.name });
  assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: account.metadata.name, namespace: 'spot-system' }]);
  // Gone with the Build; the ServiceAccount cannot point across namespaces, so the operator deletes it.
  for (const object of [role, binding]) {
    assert.deepEqual((object.metadata as { ownerReferences?: unknown }).ownerReferences, [
      { apiVersion: build.apiVersion, kind: build.kind, name: build.metadata.name, uid: '5d0b2c4e-8f1a-4c3b-9e2d-7a6f1b0c9d8e' },
    ]);
  }
  assert.equal((account.metadata as { ownerReferences?: unknown }).ownerReferences, undefined);
});

test("deploy/operator-layout.yaml: the builder ServiceAccount in spot-system, a ClusterRole with the runtime's verbs, bound per workspace", async () => {
  const [build] = await applyDeployFile('spot-sample-build.yaml');
  assert.ok(build);
  const account = await onlyObject<KObject>('operator-layout.yaml', 'ServiceAccount');
  const role = await onlyObject<RoleObject>('operator-layout.yaml', 'ClusterRole');
  const binding = await onlyObject<BindingObject>('operator-layout.yaml', 'RoleBinding');
  assert.equal(account.metadata.namespace, 'spot-system');
  const grants = grantsOf(role.rules, 'the ClusterRole');
  assert.deepEqual(grants, [...RUNTIME_GRANTS].sort(), 'exactly the verbs the runtime uses, for any Build of a bound namespace');
  assertNoBroadVerbs(grants, 'the ClusterRole');
  // A RoleBinding grants the ClusterRole in its namespace only: the workspace's, where the Builds and their Events are.
  assert.equal(binding.metadata.namespace, build.metadata.namespace);
  assert.deepEqual(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role.metadata.name });
  assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: account.metadata.name, namespace: 'spot-system' }]);

  // The cluster-wide alternative is documented, never applied.
  for (const file of manifestFiles) {
    const kinds = (await applyDeployFile(file)).map((o) => o.kind);
    assert.ok(!kinds.includes('ClusterRoleBinding'), `deploy/${file} binds cluster-wide`);
  }
});

// ---------------------------------------------------------------------------------------------
// The builder pods.

type Volume = { name: string; projected?: { defaultMode?: number; sources: Array<Record<string, JsonObject>> } };
type Mount = { name: string; mountPath: string; readOnly?: boolean };
type FullPod = PodManifest & {
  spec: PodManifest['spec'] & { volumes?: Volume[]; securityContext?: { runAsUser?: number; fsGroup?: number; runAsNonRoot?: boolean } };
};

/**
 * The credentials are mounted explicitly, where in-cluster clients (and the runtime) look: a token
 * with an audience and a lifetime, the cluster CA and the namespace, readable by the pod's user only.
 */
function assertExplicitCredentials(pod: FullPod, where: string): void {
  assert.equal(pod.spec.automountServiceAccountToken, false, `${where}: no implicit token`);
  const container = pod.spec.containers[0]!;
  const mounts = ((container as { volumeMounts?: Mount[] }).volumeMounts ?? []).filter((m) => m.mountPath === DEFAULT_SERVICEACCOUNT_DIR);
  assert.equal(mounts.length, 1, `${where}: one volume at ${DEFAULT_SERVICEACCOUNT_DIR}`);
  assert.equal(mounts[0]!.readOnly, true);
  const volume = pod.spec.volumes?.find((v) => v.name === mounts[0]!.name);
  assert.ok(volume?.projected, `${where}: the credentials are a projected volume`);
  assert.equal(volume.projected.defaultMode, 0o400, `${where}: defaultMode 0400`);
  const [token, ca, namespace, ...rest] = volume.projected.sources;
  assert.deepEqual(rest, []);
  assert.equal(token?.serviceAccountToken?.path, 'token');
  assert.match(String(token?.serviceAccountToken?.audience ?? ''), /^https:\/\/\S+$/, `${where}: the token names the API server's audience`);
  const lifetime = Number(token?.serviceAccountToken?.expirationSeconds);
  // The API server refuses less than 10 minutes; more than the pod's deadline is a token outliving its use.
  assert.ok(lifetime >= 600 && lifetime <= 3600, `${where}: expirationSeconds ${lifetime} within 600..3600`);
  assert.deepEqual(ca, { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } });
  assert.deepEqual(namespace, { downwardAPI: { items: [{ path: 'namespace', fieldRef: { fieldPath: 'metadata.namespace' } }] } });
  // The kubelet writes ca.crt and namespace as root: with mode 0400, only fsGroup (0440, group
  // fsGroup) lets a non-root user read them.
  assert.equal(pod.spec.securityContext?.fsGroup, pod.spec.securityContext?.runAsUser, `${where}: fsGroup is the pod's user, or it cannot read ca.crt`);
}

test('the builder pod runs spot-run for the sample Build as the runtime expects', async () => {
  const pod = await onlyObject<FullPod>('build-pod.yaml', 'Pod');
  const [sample] = await applyDeployFile('sample-build.yaml');
  const account = await onlyObject<KObject>('rbac.yaml', 'ServiceAccount');
  assert.ok(sample);

  assert.equal(pod.metadata.namespace, sample.metadata.namespace, 'the Role only covers its own namespace');
  assert.equal(pod.spec.serviceAccountName, account.metadata.name);
  assertExplicitCredentials(pod, 'deploy/build-pod.yaml');
  assert.equal(pod.spec.restartPolicy, 'Never');
  // spot-run takes up to 10 s after SIGTERM to record the interrupted step.
  assert.ok((pod.spec.terminationGracePeriodSeconds ?? 30) > 10);
  assert.equal(pod.spec.terminationGracePeriodSeconds, 30);
  assert.equal(pod.spec.securityContext?.runAsNonRoot, true);

  assert.equal(pod.spec.containers.length, 1);
  const [container] = pod.spec.containers;
  assert.ok(container);
  assert.equal(container.command, undefined, "args go to the image's spot-run entrypoint");
  assert.equal((container as { terminationMessagePolicy?: string }).terminationMessagePolicy, 'FallbackToLogsOnError');
  assert.equal(container.securityContext?.allowPrivilegeEscalation, false);
  assert.equal(container.securityContext?.readOnlyRootFilesystem, true);
  assert.deepEqual(container.securityContext?.capabilities?.drop, ['ALL']);
  assert.equal(container.securityContext?.capabilities?.add, undefined);
  for (const kind of ['requests', 'limits'] as const) {
    assert.ok(container.resources?.[kind]?.cpu && container.resources[kind].memory, `resources.${kind} sets cpu and memory`);
  }

  // The steps need a shell: the image is the Dockerfile's runtime on the same distroless line's
  // :debug-nonroot base (busybox), built as the file's header says.
  assert.equal(container.image, 'registry.example.com/spot-runtime:0.1.0-debug');
  const runtimeBase = /^ARG RUNTIME_IMAGE=(\S+):nonroot$/m.exec(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'))?.[1];
  assert.ok(runtimeBase, 'the Dockerfile declares ARG RUNTIME_IMAGE=<distroless>:nonroot');
  assert.match(
    readFileSync(join(DEPLOY, 'build-pod.yaml'), 'utf8'),
    new RegExp(`--build-arg RUNTIME_IMAGE=${runtimeBase.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:debug-nonroot[\\s\\\\#]+-t ${container.image}`),
  );

  const env = new Map((container.env ?? []).map((e) => [e.name, e]));
  assert.equal(env.get('BUILD_REFERENCE')?.value, `${sample.metadata.namespace}/${sample.metadata.name}`);
  assert.deepEqual(env.get('POD_NAME')?.valueFrom, { fieldRef: { fieldPath: 'metadata.name' } });
  assert.deepEqual(env.get('POD_NAMESPACE')?.valueFrom, { fieldRef: { fieldPath: 'metadata.namespace' } });
  // Registry credentials come from a Secret and are masked in everything spot-run writes.
  const registryAuth = env.get('REGISTRY_AUTH') as { value?: string; valueFrom?: { secretKeyRef?: { name?: string; key?: string } } } | undefined;
  assert.equal(registryAuth?.value, undefined, 'no credentials in the manifest');
  assert.ok(registryAuth?.valueFrom?.secretKeyRef?.name && registryAuth.valueFrom.secretKeyRef.key, 'REGISTRY_AUTH from a Secret');
  assert.ok((env.get('SPOT_MASK_ENV')?.value ?? '').split(',').includes('REGISTRY_AUTH'), 'SPOT_MASK_ENV names REGISTRY_AUTH');

  const args = container.args ?? [];
  // spot-run's flags (scripts/spot-run.ts --help); a misspelt one would be a usage error (exit 2).
  const knownFlags = new Set([
    '--build', '--step', '--tasks', '--server', '--token-file', '--ca-file', '--log-format', '--log-level',
    '--grace', '--api-timeout', '--api-deadline', '--help', '--version',
  ]);
  for (const arg of args.filter((a) => a.startsWith('--'))) assert.ok(knownFlags.has(arg.split('=')[0] ?? arg), `spot-run has no flag ${arg}`);
  // The kubelet expands $(NAME) in args before the shell sees them.
  for (const arg of args) assert.doesNotMatch(arg, /\$\(/, `"${arg}" would be expanded by the kubelet`);

  const steps = stepsOf(args);
  assert.deepEqual(steps.map((s) => s.type), ['Fetching Source', 'Building Image', 'Pushing Image']);
  for (const step of steps) assert.ok(step.command.trim(), `step "${step.type}" has a command`);
  assert.match(steps[2]?.command ?? '', /"?\$SPOT_RESULTS_DIR"?\/image-url/);
});

/** `object` without what kubectl apply adds (the last-applied annotation). */
function asWritten<T extends KObject>(object: T): T {
  const copy = structuredClone(object);
  delete (copy.metadata as { annotations?: unknown }).annotations;
  return copy;
}

test("the operator layout's pod is deploy/build-pod.yaml in spot-system, reporting on workspace-a/sample-build", async () => {
  const pod = asWritten(await onlyObject<FullPod>('build-pod.yaml', 'Pod'));
  const operatorPod = asWritten(await onlyObject<FullPod>('operator-build-pod.yaml', 'Pod'));
  const [build] = await applyDeployFile('spot-sample-build.yaml');
  const account = await onlyObject<KObject>('operator-layout.yaml', 'ServiceAccount');
  assert.ok(build);

  assert.equal(operatorPod.metadata.namespace, account.metadata.namespace);
  assert.equal(operatorPod.spec.serviceAccountName, account.metadata.name);
  const reference = operatorPod.spec.containers[0]?.env?.find((e) => e.name === 'BUILD_REFERENCE');
  assert.equal(reference?.value, `${build.metadata.namespace}/${build.metadata.name}`);
  assertExplicitCredentials(operatorPod, 'deploy/operator-build-pod.yaml');

  const expected = structuredClone(pod);
  expected.metadata.namespace = operatorPod.metadata.namespace;
  expected.spec.serviceAccountName = operatorPod.spec.serviceAccountName;
  expected.spec.containers[0]!.env!.find((e) => e.name === 'BUILD_REFERENCE')!.value = reference.value;
  assert.deepEqual(operatorPod, expected, 'only the namespace, the ServiceAccount and BUILD_REFERENCE differ');
});

/**
 * Leaves of `shown` that `full` does not hold with the same value. Lists whose entries all have a
 * name (containers, env, volumes, mounts) match by name, so an excerpt may leave entries out;
 * other lists must match whole.
 */
function notIn(shown: unknown, full: unknown, path: string): string[] {
  if (Array.isArray(shown)) {
    if (!Array.isArray(full)) return [path];
    const named = shown.every((item) => item && typeof item === 'object' && typeof (item as { name?: unknown }).name === 'string');
    if (!named) return missingLeaves(shown, full, path);
    return shown.flatMap((item: { name: string }) => {
      const match = full.find((candidate: { name?: string } | null) => candidate?.name === item.name);
      return match ? notIn(item, match, `${path}[${item.name}]`) : [`${path}[${item.name}]`];
    });
  }
  if (shown !== null && typeof shown === 'object') {
    if (full === null || typeof full !== 'object') return [path];
    return Object.entries(shown).flatMap(([key, value]) => notIn(value, (full as Record<string, unknown>)[key], `${path}.${key}`));
  }
  return Object.is(shown, full) ? [] : [path];
}

test('the README\'s "In a pod" example is deploy/build-pod.yaml, shortened', async () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const section = /^## In a pod\n([\s\S]*?)^## /m.exec(readme)?.[1] ?? '';
  const yaml = /^```yaml\n([\s\S]*?)^```/m.exec(section)?.[1];
  assert.ok(yaml, 'the "In a pod" section has a yaml block');
  const file = join(workDir, 'readme-pod.yaml');
  writeFileSync(file, yaml);
  const [shown] = await dryRunApply(file);
  assert.ok(shown);
  const pod = await onlyObject<FullPod>('build-pod.yaml', 'Pod');
  assert.deepEqual(notIn(asWritten(shown), asWritten(pod), ''), []);
  // What the example is there to show.
  assertExplicitCredentials(shown as FullPod, 'the README example');
  const container = (shown as FullPod).spec.containers[0];
  assert.equal(container?.image, pod.spec.containers[0]?.image);
  assert.deepEqual(container?.args, pod.spec.containers[0]?.args);
  assert.ok(container?.env?.some((e) => e.name === 'SPOT_MASK_ENV'), 'the example masks REGISTRY_AUTH');
});

/** Whether docker would leave `path` out of the build context (last matching pattern wins). */
function dockerIgnores(patterns: string[], path: string): boolean {
  const toRegExp = (pattern: string): RegExp => {
    const body = pattern
      .replace(/\/+$/, '')
      .split(/(\*\*\/|\*|\?)/)
      .map((part) => (part === '**/' ? '(?:.*/)?' : part === '*' ? '[^/]*' : part === '?' ? '[^/]' : part.replace(/[.+^${}()|[\]\\]/g, '\\$&')))
      .join('');
    return new RegExp(`^${body}$`);
  };
  const segments = path.split('/');
  const prefixes = segments.map((_, i) => segments.slice(0, i + 1).join('/'));
  let ignored = false;
  for (const line of patterns) {
    const negated = line.startsWith('!');
    const re = toRegExp(negated ? line.slice(1) : line);
    // A pattern that matches a parent directory covers everything under it.
    if (prefixes.some((prefix) => re.test(prefix))) ignored = !negated;
  }
  return ignored;
}

test('the Dockerfile runs the bin package.json declares, from sources the context holds', () => {
  const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string>; files: string[] };
  const ignore = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith('#'));

  const stages = dockerfile.split(/^FROM\s+/m).slice(1).map((stage) => ({
    name: /^\S+\s+AS\s+(\S+)/i.exec(stage)?.[1] ?? '',
    entrypoint: /^ENTRYPOINT\s+(\[.*\])\s*$/m.exec(stage)?.[1],
    user: /^USER\s+(\S+)/m.exec(stage)?.[1],
    copies: [...stage.matchAll(/^COPY\s+(?!--from)(.+)$/gm)].map((m) => (m[1] ?? '').trim().split(/\s+/).slice(0, -1)),
  }));
  const runtime = stages.at(-1);
  assert.equal(runtime?.name, 'runtime', 'the runtime stage is last, so it is the default target');
  assert.deepEqual(JSON.parse(runtime.entrypoint ?? 'null'), ['/nodejs/bin/node', `/app/${pkg.bin['spot-run']}`]);
  const bundle = stages.find((stage) => stage.name === 'bundle');
  assert.deepEqual(JSON.parse(bundle?.entrypoint ?? 'null'), ['/nodejs/bin/node', '/app/spot-run.mjs']);
  for (const stage of [runtime, bundle]) assert.equal(stage?.user, 'nonroot', `stage ${stage?.name} runs as nonroot`);

  const sources = stages.flatMap((stage) => stage.copies.flat());
  for (const required of ['package.json', 'package-lock.json', 'tsconfig.build.json', 'lib/', 'scripts/']) assert.ok(sources.includes(required), `COPY ${required}`);
  for (const source of [...sources, 'lib/types.ts', 'scripts/build.ts', 'scripts/spot-run.ts']) {
    assert.equal(dockerIgnores(ignore, source.replace(/\/$/, '')), false, `.dockerignore leaves ${source} out of the build context`);
  }
  for (const excluded of ['node_modules', 'dist/spot-run.mjs', '.git', 'test/manifests.test.ts', 'lib/x.test.ts']) {
    assert.equal(dockerIgnores(ignore, excluded), true, `.dockerignore should keep ${excluded} out of the build context`);
  }
});

// Last on purpose: node:test runs a file's top-level tests in order.
test('kubectl sent the stand-in API server no writes', () => {
  assert.deepEqual(apiServer.writes, []);
});
