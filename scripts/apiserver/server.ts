/**
 * A local stand-in for the slice of the Kubernetes API that spot-runtime and a person with kubectl
 * use: a custom resource loaded from a CRD manifest (Builds: main resource and `/status`) and
 * core/v1 Events, over real HTTPS with a throwaway CA, bearer tokens from a service-account
 * folder, RBAC-style permissions, discovery, Table output, watch streams and fault injection.
 *
 * This module is the HTTP side: TLS, the service-account folder and kubeconfig, authentication,
 * content negotiation, watch streaming, the request log, faults and outages. What kube-apiserver
 * answers (Status bodies, validation, resourceVersion, patches, tables, discovery) is decided in
 * registry.ts and its neighbours, after shared/reference/kubernetes-api.md. Tests import this
 * module, and `npm run apiserver` runs it by hand.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { stringify as toYaml } from 'yaml';

import type { Build, BuildSpec, BuildStatus, CoreEvent, ObjectMeta, Status } from '../../lib/types.js';
import { createCertificateAuthority, sharedServerCertificates, type ServerPems } from './certs.js';
import { discoveryDocument } from './discovery.js';
import { deepCopy, type JsonObject } from './json-patch.js';
import {
  allows,
  forbidden,
  MAX_BODY_BYTES,
  Registry,
  ROUTE_NOT_FOUND,
  UNAUTHORIZED,
  type KubeObject,
  type PermissionRule,
  type Route,
  type Watch,
  type WatchEvent,
} from './registry.js';
import { parseCrd, type CustomResourceDefinition } from './schema.js';
import { details, fail, failure, StatusError } from './status.js';
import { negotiate, tableOptions, toTable, type Representation, type TableOptions } from './table.js';

export type { PermissionRule, ResourceName, Verb } from './registry.js';

// =============================================================================================
// Public API

export interface Identity {
  /** The user name kube-apiserver reports, e.g. `system:serviceaccount:default:spot-builder`. */
  user: string;
  /** Omitted means BUILD_POD_RULES. */
  rules?: readonly PermissionRule[];
}

/** Exactly the Role in deploy/rbac.yaml: what a build pod gets in a real cluster. */
export const DEPLOY_ROLE_RULES: readonly PermissionRule[] = [
  { verbs: ['get'], resources: ['builds'] },
  { verbs: ['get', 'update', 'patch'], resources: ['builds/status'] },
  { verbs: ['create', 'patch'], resources: ['events'] },
];

/** The CRD manifests in deploy/ by short name: `--crd conditions` (the default) or `--crd spot`. */
export const CRD_FILES = {
  conditions: fileURLToPath(new URL('../../deploy/crd.yaml', import.meta.url)),
  spot: fileURLToPath(new URL('../../deploy/spot-crd.yaml', import.meta.url)),
} as const;

/** The default identity's rules: a build pod's needs, plus create/list/watch on builds and get/list/watch on events so tests and the script can seed and look. */
export const BUILD_POD_RULES: readonly PermissionRule[] = [
  { verbs: ['get', 'list', 'watch', 'create'], resources: ['builds'] },
  { verbs: ['get', 'update', 'patch'], resources: ['builds/status'] },
  { verbs: ['create', 'patch', 'get', 'list', 'watch'], resources: ['events'] },
];

/** Which requests a fault applies to. Every field narrows; none set means every request. */
export interface FaultMatch {
  method?: string;
  /** Exact path (no query), or a RegExp tested against it. */
  path?: string | RegExp;
  /** `n` counts, from 1, the requests that matched `method` and `path` while this rule was active. */
  when?: (request: { method: string; path: string; n: number }) => boolean;
  /** How many requests the rule affects (default 1; Infinity allowed). */
  times?: number;
}

export type FaultAction =
  /** Wait, then go on: later rules may still apply, and the request is handled normally. */
  | { latency: number }
  /**
   * `text`: kube-apiserver's max-inflight/priority-and-fairness answer (text/plain, Retry-After
   * always, default 1). `json`: a TooManyRequests Status; Retry-After only when retryAfterSeconds is set.
   */
  | { status: 429; form: 'text' | 'json'; retryAfterSeconds?: number }
  | { status: 500 | 503; retryAfterSeconds?: number }
  /**
   * Close the connection without an answer. `true`/'before-body': before reading the request.
   * 'after-write': the request is fully handled (a write is stored) and only the answer is lost.
   */
  | { reset: true | 'before-body' | 'after-write' }
  /** Never answer; the socket is released by suspend() or stop(). */
  | { hang: true }
  /**
   * Before the request is handled, the server itself rewrites the addressed Build's status (as
   * the operator would between a client's read and its write), bumping resourceVersion. Then go on.
   */
  | { concurrentWrite: (status: BuildStatus) => void }
  /**
   * Before the request is handled, the addressed Build is deleted and created again under the
   * same name (a new uid, the same spec and labels, `status` or none), as an operator or a person
   * re-applying it would while a build runs. Then go on.
   */
  | { replaceBuild: true; status?: BuildStatus }
  /**
   * Read this request's body under a lower size limit than kube-apiserver's 3 MiB
   * (--max-request-bytes): a body over it is answered 413 RequestEntityTooLarge. Then go on.
   */
  | { maxRequestBytes: number }
  | { html: true; status?: number }
  | { body: string | Buffer; status?: number; contentType?: string };

export type FaultRule = FaultMatch & FaultAction;

export interface FaultHandle {
  /** How many requests this rule has affected so far. */
  readonly hits: number;
  remove(): void;
}

export interface RequestLogEntry {
  method: string;
  /** Without the query. */
  path: string;
  /** The raw query string without `?`, '' when none. */
  query: string;
  contentType: string | undefined;
  /** The HTTP status sent; 0 when a fault (reset, hang) or an outage left the request unanswered. */
  status: number;
  /** Size of the request body. */
  bytes: number;
  /** The authenticated user, when the token was valid. */
  identity?: string;
  /** The faults applied, e.g. `latency`, `429-text`, `reset`, `latency+500`. */
  fault?: string;
}

/** A stored core/v1 Event: whatever the client sent, plus the fields the server sets. */
export type StoredEvent = Omit<Partial<CoreEvent>, 'metadata'> & { metadata: ObjectMeta; [key: string]: unknown };

export interface ServiceAccountEnv {
  KUBERNETES_SERVICE_HOST: string;
  KUBERNETES_SERVICE_PORT: string;
  SPOT_SERVICEACCOUNT_DIR: string;
}

export interface ApiServerOptions {
  /** Loopback address to listen on (default 127.0.0.1). The certificate covers both. */
  host?: '127.0.0.1' | '::1';
  /** Default 0: a random free port. */
  port?: number;
  /** Working directory (service-account folder, the other CA). Default: a new temp dir, removed by stop(). A given dir is never removed. */
  dir?: string;
  /** Leave the temp dir in place on stop(), for debugging. */
  keepDir?: boolean;
  /** Written to the service-account folder's `namespace` file (default 'default'). */
  namespace?: string;
  /** Service account of the default token (default 'spot-builder', as in deploy/rbac.yaml). */
  serviceAccount?: string;
  /** Called once per logged request, e.g. to print it. */
  onRequest?: (entry: RequestLogEntry) => void;
  /** The CRD manifest that defines the custom resource: a path, or a name of CRD_FILES (default 'conditions'). */
  crd?: string;
}

export interface NewBuild {
  /** Default: the service account's namespace. */
  namespace?: string;
  name: string;
  spec?: BuildSpec;
  status?: BuildStatus;
  labels?: Record<string, string>;
}

export interface ApiServer {
  /** e.g. `https://127.0.0.1:41234` or `https://[::1]:41234`. */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly dir: string;
  /** Holds `token`, `ca.crt` and `namespace`, like /var/run/secrets/kubernetes.io/serviceaccount. */
  readonly serviceAccountDir: string;
  readonly namespace: string;
  /** PEM of the CA that signed the server certificate (also in `ca.crt`). */
  readonly caPem: string;
  /** The token currently in the service-account folder. */
  readonly token: string;
  /**
   * A kubeconfig for kubectl: this server, its CA and an admin token (user `kubernetes-admin`,
   * every verb everywhere, like a kind cluster's). Removed with the temp dir.
   */
  readonly kubeconfigPath: string;
  /** The custom resource's CRD as loaded. */
  readonly crd: CustomResourceDefinition;
  /** Every logged request, oldest first. */
  readonly requests: readonly RequestLogEntry[];

  /** The variables kubelet would set (host unbracketed), plus the folder the runtime reads. */
  env(): ServiceAccountEnv;
  /** The PEM of a second CA that signed nothing here, made on first use. */
  otherCaPem(): Promise<string>;
  /** Writes a new token atomically; the old one is refused from then on. Returns the new token. */
  rotateToken(): Promise<string>;
  addIdentity(token: string, identity: Identity): void;
  /** Replaces the rules of the identity with this token, or of every identity with this user name. */
  setPermissions(tokenOrUser: string, rules: readonly PermissionRule[]): void;

  /** Adds a fault rule; rules are tried in the order they were added. */
  inject(rule: FaultRule): FaultHandle;
  clearFaults(): void;

  /** An outage: stop listening and drop every connection (clients get ECONNREFUSED). */
  suspend(): Promise<void>;
  /** Listen again on the same port. */
  resume(): Promise<void>;
  /** Close everything; remove the temp dir unless keepDir or a caller-given dir. */
  stop(): Promise<void>;
  clearLog(): void;

  /** Direct store access, bypassing HTTP, auth and faults (status is validated like the API does). */
  createBuild(build: NewBuild): Build;
  getBuild(namespace: string, name: string): Build | undefined;
  setBuildStatus(namespace: string, name: string, status: BuildStatus | undefined): Build;
  /** Deletes the Build and creates it again under the same name: a new uid, the same spec and labels, `status` or none. */
  replaceBuild(namespace: string, name: string, status?: BuildStatus): Build;
  deleteBuild(namespace: string, name: string): boolean;
  events(namespace?: string): StoredEvent[];
}

/** Reads and parses a CRD manifest: a path or a name of CRD_FILES. Throws CrdError or the read error. */
export async function loadCrd(crd: string = 'conditions'): Promise<CustomResourceDefinition> {
  const path = Object.hasOwn(CRD_FILES, crd) ? CRD_FILES[crd as keyof typeof CRD_FILES] : crd;
  return parseCrd(await readFile(path, 'utf8'), path);
}

export async function startApiServer(options: ApiServerOptions = {}): Promise<ApiServer> {
  const crd = await loadCrd(options.crd);
  const ownsDir = options.dir === undefined;
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), 'spot-apiserver-')));
  try {
    const server = new LocalApiServer(options, crd, dir, ownsDir, await sharedServerCertificates());
    await server.start(options.port ?? 0);
    return server;
  } catch (error) {
    if (ownsDir && !options.keepDir) await rm(dir, { recursive: true, force: true });
    throw error;
  }
}

// =============================================================================================
// HTTP plumbing

interface Reply {
  status: number;
  contentType: string;
  body: string | Buffer;
  headers?: Record<string, string | string[]>;
}

function jsonReply(status: number, value: unknown): Reply {
  return { status, contentType: 'application/json', body: JSON.stringify(value) };
}

/** ErrorNegotiated sets Retry-After whenever details.retryAfterSeconds > 0. */
function statusReply(status: Status): Reply {
  const reply = jsonReply(status.code ?? 500, status);
  const retryAfter = status.details?.retryAfterSeconds;
  if (retryAfter) reply.headers = { 'Retry-After': String(retryAfter) };
  return reply;
}

/** A Warning header value (RFC 7234): code 299, no agent, the text quoted, as kube-apiserver sends it. */
const warningHeader = (text: string) => `299 - ${JSON.stringify(text)}`;

interface RequestBody {
  bytes: number;
  /** Undefined when the body was over `limit` (it is read and dropped, then refused). */
  data: Buffer | undefined;
  limit: number;
}

async function readBody(request: IncomingMessage, limit: number): Promise<RequestBody> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of request as AsyncIterable<Buffer>) {
    bytes += chunk.length;
    if (bytes <= limit) chunks.push(chunk);
  }
  return { bytes, data: bytes <= limit ? Buffer.concat(chunks) : undefined, limit };
}

/** A watch stream to write, instead of a reply. */
interface WatchReply {
  watch: Watch;
  representation: Representation;
  query: URLSearchParams;
}

/** Faults that let the request go on. */
type PassThroughFault = Extract<FaultRule, { latency: number } | { concurrentWrite: unknown } | { replaceBuild: true } | { maxRequestBytes: number }>;

function isPassThrough(rule: FaultRule): rule is PassThroughFault {
  return 'latency' in rule || 'concurrentWrite' in rule || 'replaceBuild' in rule || 'maxRequestBytes' in rule;
}

// ---------------------------------------------------------------------------------------------
// Faults

type TerminalFault = Exclude<FaultRule, PassThroughFault>;

interface ActiveFault {
  rule: FaultRule;
  matched: number;
  hits: number;
}

function faultLabel(rule: FaultRule): string {
  if ('latency' in rule) return 'latency';
  if ('concurrentWrite' in rule) return 'concurrentWrite';
  if ('replaceBuild' in rule) return 'replaceBuild';
  if ('maxRequestBytes' in rule) return 'maxRequestBytes';
  if ('reset' in rule) return rule.reset === 'after-write' ? 'reset-after-write' : 'reset';
  if ('hang' in rule) return 'hang';
  if ('html' in rule) return 'html';
  if ('body' in rule) return 'body';
  return rule.status === 429 ? `429-${rule.form}` : String(rule.status);
}

function matchesRequest(rule: FaultMatch, method: string, path: string): boolean {
  if (rule.method !== undefined && rule.method.toUpperCase() !== method) return false;
  if (rule.path === undefined) return true;
  return typeof rule.path === 'string' ? rule.path === path : rule.path.test(path);
}

const TOO_MANY_REQUESTS = 'Too many requests, please try again later.';

function faultReply(fault: Exclude<TerminalFault, { reset: unknown } | { hang: true }>): Reply {
  if ('html' in fault) {
    // What a proxy or captive portal in front of the API server sends.
    const status = fault.status ?? 200;
    const title = `${status} ${STATUS_CODES[status] ?? ''}`.trim();
    return { status, contentType: 'text/html', body: `<html><head><title>${title}</title></head><body><h1>${title}</h1></body></html>\n` };
  }
  if ('body' in fault) {
    return { status: fault.status ?? 200, contentType: fault.contentType ?? 'application/json', body: fault.body };
  }
  const withRetry = fault.retryAfterSeconds ? details({ retryAfterSeconds: fault.retryAfterSeconds }) : undefined;
  switch (fault.status) {
    case 429:
      if (fault.form === 'text') {
        // maxinflight.go tooManyRequests: Go's http.Error, which appends a newline.
        const retryAfter = String(fault.retryAfterSeconds ?? 1);
        return {
          status: 429,
          contentType: 'text/plain; charset=utf-8',
          body: `${TOO_MANY_REQUESTS}\n`,
          headers: { 'Retry-After': retryAfter, 'X-Content-Type-Options': 'nosniff' },
        };
      }
      return statusReply(failure(429, 'TooManyRequests', TOO_MANY_REQUESTS, withRetry));
    case 500:
      return statusReply(
        failure(500, 'InternalError', 'Internal error occurred: injected fault', details({ causes: [{ message: 'injected fault' }], retryAfterSeconds: fault.retryAfterSeconds })),
      );
    case 503:
      return statusReply(failure(503, 'ServiceUnavailable', 'the server is currently unable to handle the request', withRetry));
  }
}

/** Stored Builds are built from lib/types' Build shape (kind and apiVersion fixed); hand out copies. */
function asBuild(object: KubeObject): Build {
  return deepCopy(object) as unknown as Build;
}

/** The user a kubeconfig from this server acts as, with every permission (a kind cluster's admin). */
const ADMIN: Identity = { user: 'kubernetes-admin', rules: [{ verbs: '*', resources: '*' }] };

// =============================================================================================
// The server

const newToken = (kind = 'test-token') => `${kind}-${randomBytes(16).toString('hex')}`;

/** Write then rename, so a reader sees the old file or the new one, never half of one. */
async function writeFileAtomic(path: string, content: string): Promise<void> {
  const temporary = `${path}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(temporary, content);
  await rename(temporary, path);
}

class LocalApiServer implements ApiServer {
  readonly requests: RequestLogEntry[] = [];
  readonly host: '127.0.0.1' | '::1';
  readonly namespace: string;
  readonly serviceAccountDir: string;
  readonly caPem: string;
  readonly kubeconfigPath: string;
  private readonly server: Server;
  private readonly registry: Registry;
  private readonly adminToken = newToken('test-token-admin');
  private readonly identities = new Map<string, Identity>();
  private readonly faults: ActiveFault[] = [];
  private readonly sockets = new Set<Socket>();
  private readonly onRequest: ((entry: RequestLogEntry) => void) | undefined;
  private readonly removeDirOnStop: boolean;
  private currentToken = newToken();
  private boundPort = 0;
  private stopped = false;
  private otherCa: Promise<string> | undefined;

  constructor(
    options: ApiServerOptions,
    readonly crd: CustomResourceDefinition,
    readonly dir: string,
    ownsDir: boolean,
    certificates: ServerPems,
  ) {
    this.registry = new Registry(crd);
    this.kubeconfigPath = join(dir, 'kubeconfig');
    this.host = options.host ?? '127.0.0.1';
    this.namespace = options.namespace ?? 'default';
    this.serviceAccountDir = join(dir, 'serviceaccount');
    this.caPem = certificates.caPem;
    this.onRequest = options.onRequest;
    this.removeDirOnStop = ownsDir && !options.keepDir;
    const serviceAccount = options.serviceAccount ?? 'spot-builder';
    this.identities.set(this.currentToken, { user: `system:serviceaccount:${this.namespace}:${serviceAccount}` });
    this.identities.set(this.adminToken, ADMIN);
    this.server = createServer({ key: certificates.keyPem, cert: certificates.certPem }, (req, res) => {
      // Failing while answering leaves nothing to answer with: drop the connection, keep serving.
      this.handle(req, res).catch(() => req.socket.destroy());
    });
    // Track raw sockets so an outage can cut them, including idle keep-alive and hung ones.
    this.server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
  }

  async start(port: number): Promise<void> {
    await mkdir(this.serviceAccountDir, { recursive: true });
    await Promise.all([
      writeFile(join(this.serviceAccountDir, 'token'), this.currentToken),
      writeFile(join(this.serviceAccountDir, 'ca.crt'), this.caPem),
      writeFile(join(this.serviceAccountDir, 'namespace'), this.namespace),
    ]);
    await this.listen(port);
    this.boundPort = (this.server.address() as AddressInfo).port;
    await writeFile(this.kubeconfigPath, this.kubeconfig(), { mode: 0o600 });
  }

  /** A kubeconfig naming this server, trusting its CA, authenticating as the admin. */
  private kubeconfig(): string {
    const name = 'spot-local';
    return toYaml({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name, cluster: { server: this.url, 'certificate-authority-data': Buffer.from(this.caPem).toString('base64') } }],
      users: [{ name: ADMIN.user, user: { token: this.adminToken } }],
      contexts: [{ name, context: { cluster: name, user: ADMIN.user, namespace: this.namespace } }],
      'current-context': name,
    });
  }

  get port(): number {
    return this.boundPort;
  }

  get url(): string {
    return `https://${this.host.includes(':') ? `[${this.host}]` : this.host}:${this.port}`;
  }

  get token(): string {
    return this.currentToken;
  }

  env(): ServiceAccountEnv {
    return {
      KUBERNETES_SERVICE_HOST: this.host,
      KUBERNETES_SERVICE_PORT: String(this.port),
      SPOT_SERVICEACCOUNT_DIR: this.serviceAccountDir,
    };
  }

  otherCaPem(): Promise<string> {
    this.otherCa ??= createCertificateAuthority(join(this.dir, 'other-ca'), 'ca', 'unrelated test CA').then((ca) => ca.certPem);
    return this.otherCa;
  }

  async rotateToken(): Promise<string> {
    const identity = this.identities.get(this.currentToken);
    const next = newToken();
    // File first: a client that re-reads after its 401 must find the new token already there.
    await writeFileAtomic(join(this.serviceAccountDir, 'token'), next);
    this.identities.delete(this.currentToken);
    if (identity) this.identities.set(next, identity);
    this.currentToken = next;
    return next;
  }

  addIdentity(token: string, identity: Identity): void {
    this.identities.set(token, { ...identity });
  }

  setPermissions(tokenOrUser: string, rules: readonly PermissionRule[]): void {
    const byToken = this.identities.get(tokenOrUser);
    const targets = byToken ? [byToken] : [...this.identities.values()].filter((i) => i.user === tokenOrUser);
    if (targets.length === 0) throw new Error(`no identity with token or user "${tokenOrUser}"`);
    for (const identity of targets) identity.rules = rules;
  }

  inject(rule: FaultRule): FaultHandle {
    const fault: ActiveFault = { rule, matched: 0, hits: 0 };
    this.faults.push(fault);
    return {
      get hits() {
        return fault.hits;
      },
      remove: () => {
        const index = this.faults.indexOf(fault);
        if (index >= 0) this.faults.splice(index, 1);
      },
    };
  }

  clearFaults(): void {
    this.faults.length = 0;
  }

  clearLog(): void {
    this.requests.length = 0;
  }

  async suspend(): Promise<void> {
    if (!this.server.listening) return;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }

  async resume(): Promise<void> {
    if (this.stopped) throw new Error('the API server was stopped');
    if (!this.server.listening) await this.listen(this.boundPort);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.suspend();
    if (this.removeDirOnStop) await rm(this.dir, { recursive: true, force: true });
  }

  private listen(port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, this.host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
  }

  // -------------------------------------------------------------------------------------------
  // Direct store access

  createBuild(build: NewBuild): Build {
    const metadata: ObjectMeta = { name: build.name, namespace: build.namespace ?? this.namespace };
    if (build.labels) metadata.labels = { ...build.labels };
    const object: KubeObject = { apiVersion: this.registry.custom.apiVersion, kind: this.registry.custom.kind, metadata };
    if (build.spec !== undefined) object.spec = deepCopy(build.spec);
    if (build.status !== undefined) object.status = deepCopy(build.status);
    return asBuild(this.registry.seedBuild(object));
  }

  getBuild(namespace: string, name: string): Build | undefined {
    const object = this.registry.build(namespace, name);
    return object && asBuild(object);
  }

  setBuildStatus(namespace: string, name: string, status: BuildStatus | undefined): Build {
    return asBuild(this.registry.writeStatus(namespace, name, status));
  }

  replaceBuild(namespace: string, name: string, status?: BuildStatus): Build {
    return asBuild(this.registry.replaceBuild(namespace, name, status));
  }

  deleteBuild(namespace: string, name: string): boolean {
    return this.registry.deleteBuild(namespace, name);
  }

  events(namespace?: string): StoredEvent[] {
    return this.registry.events(namespace).map((e) => deepCopy(e) as StoredEvent);
  }

  // -------------------------------------------------------------------------------------------
  // Request handling

  private record(entry: RequestLogEntry): void {
    this.requests.push(entry);
    this.onRequest?.(entry);
  }

  /** A watch stream: newline-delimited `{"type":…,"object":…}` frames until the client leaves, timeoutSeconds pass or the server stops. */
  private stream(res: ServerResponse, entry: RequestLogEntry, reply: WatchReply): void {
    entry.status = 200;
    this.record(entry);
    res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private' });
    res.flushHeaders();
    // watchEmbeddedEncoder: only the first Table of a watch carries the column definitions.
    let options: TableOptions | undefined = reply.representation.as === 'Table' ? tableOptions(reply.representation, reply.query) : undefined;
    const send = (event: WatchEvent) => {
      let object: unknown = event.object;
      if (options && event.type !== 'BOOKMARK') {
        object = toTable(reply.watch.resource.printer, [event.object as unknown as JsonObject], event.object.metadata.resourceVersion ?? '', options, Date.now());
        options = { ...options, noHeaders: true };
      }
      res.write(`${JSON.stringify({ type: event.type, object })}\n`);
    };
    for (const event of reply.watch.initial) send(event);
    const unsubscribe = reply.watch.subscribe(send);
    const timeoutSeconds = Number(reply.query.get('timeoutSeconds') ?? '');
    const timer = timeoutSeconds > 0 ? setTimeout(() => res.end(), timeoutSeconds * 1000) : undefined;
    res.once('close', () => {
      unsubscribe();
      clearTimeout(timer);
    });
  }

  private send(res: ServerResponse, entry: RequestLogEntry, reply: Reply): void {
    entry.status = reply.status;
    this.record(entry);
    res.writeHead(reply.status, {
      'Content-Type': reply.contentType,
      'Content-Length': Buffer.byteLength(reply.body),
      ...reply.headers,
    });
    res.end(reply.body);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'https://apiserver.invalid');
    const entry: RequestLogEntry = {
      method: req.method ?? 'GET',
      path: url.pathname,
      query: url.search.slice(1),
      contentType: req.headers['content-type'],
      status: 0,
      bytes: 0,
    };
    const gone = new AbortController();
    res.once('close', () => gone.abort());
    try {
      await this.serve(req, res, url, entry, gone.signal);
    } catch (error) {
      // The socket went away (an outage, stop(), the client gave up): nobody to answer.
      if (gone.signal.aborted || req.socket.destroyed) {
        if (entry.fault) this.record(entry);
        return;
      }
      const message = error instanceof Error ? error.message : String(error);
      this.send(res, entry, statusReply(failure(500, 'InternalError', `Internal error occurred: ${message}`, details({ causes: [{ message }] }))));
    }
  }

  private async serve(req: IncomingMessage, res: ServerResponse, url: URL, entry: RequestLogEntry, signal: AbortSignal): Promise<void> {
    const { terminal, bodyLimit } = await this.applyPassThroughFaults(entry, signal);
    if (terminal && 'reset' in terminal && terminal.reset !== 'after-write') {
      this.record(entry);
      req.socket.destroy();
      return;
    }
    const body = await readBody(req, bodyLimit);
    entry.bytes = body.bytes;
    if (terminal && 'hang' in terminal) {
      this.record(entry);
      return;
    }
    if (terminal && !('reset' in terminal)) {
      this.send(res, entry, faultReply(terminal));
      return;
    }
    const reply = this.respond(entry, req, url, body);
    if ('watch' in reply) {
      this.stream(res, entry, reply);
      return;
    }
    if (terminal) {
      // reset 'after-write': the change is stored, only the answer is lost.
      this.record(entry);
      req.socket.destroy();
      return;
    }
    this.send(res, entry, reply);
  }

  /**
   * Applies the pass-through faults in rule order; returns the first terminal fault, if any, and
   * the size limit to read the body under.
   */
  private async applyPassThroughFaults(entry: RequestLogEntry, signal: AbortSignal): Promise<{ terminal?: TerminalFault; bodyLimit: number }> {
    let bodyLimit = MAX_BODY_BYTES;
    for (const rule of this.takeFaults(entry.method, entry.path)) {
      entry.fault = entry.fault ? `${entry.fault}+${faultLabel(rule)}` : faultLabel(rule);
      if (!isPassThrough(rule)) return { terminal: rule, bodyLimit };
      if ('latency' in rule) await sleep(rule.latency, undefined, { signal });
      else if ('concurrentWrite' in rule) this.writeConcurrently(entry.path, rule.concurrentWrite);
      else if ('replaceBuild' in rule) this.replaceAddressedBuild(entry.path, rule.status);
      else bodyLimit = Math.min(bodyLimit, rule.maxRequestBytes);
    }
    return { bodyLimit };
  }

  /** The rules that fire for this request: pass-through ones, then at most one terminal one. */
  private takeFaults(method: string, path: string): FaultRule[] {
    const fired: FaultRule[] = [];
    for (const fault of this.faults) {
      const { rule } = fault;
      if (fault.hits >= (rule.times ?? 1) || !matchesRequest(rule, method, path)) continue;
      fault.matched += 1;
      if (rule.when && !rule.when({ method, path, n: fault.matched })) continue;
      fault.hits += 1;
      fired.push(rule);
      if (!isPassThrough(rule)) break;
    }
    return fired;
  }

  /** The Build a request's path names, if it names one that exists. */
  private addressedBuild(path: string): { namespace: string; name: string; current: KubeObject } | undefined {
    const route = this.registry.route('GET', path, new URLSearchParams());
    if (route?.resource !== this.registry.custom || route.name === undefined || route.namespace === undefined) return undefined;
    const current = this.registry.build(route.namespace, route.name);
    return current && { namespace: route.namespace, name: route.name, current };
  }

  private writeConcurrently(path: string, mutate: (status: BuildStatus) => void): void {
    const target = this.addressedBuild(path);
    if (!target) return;
    const status = deepCopy((target.current.status ?? {}) as BuildStatus);
    mutate(status);
    this.registry.writeStatus(target.namespace, target.name, status);
  }

  private replaceAddressedBuild(path: string, status: BuildStatus | undefined): void {
    const target = this.addressedBuild(path);
    if (target) this.registry.replaceBuild(target.namespace, target.name, status);
  }

  /**
   * Authentication, discovery (any authenticated user may read it, as system:discovery allows),
   * routing, authorization, content negotiation, then the verb; every refusal is a Status.
   */
  private respond(entry: RequestLogEntry, req: IncomingMessage, url: URL, body: RequestBody): Reply | WatchReply {
    try {
      const identity = this.authenticate(req.headers.authorization);
      entry.identity = identity.user;
      const address = `${this.host.includes(':') ? `[${this.host}]` : this.host}:${this.port}`;
      const document = entry.method === 'GET' ? discoveryDocument(entry.path, this.registry.discovered(), address) : undefined;
      if (document) return jsonReply(200, document);
      const route = this.registry.route(entry.method, entry.path, url.searchParams);
      if (!route) throw fail(ROUTE_NOT_FOUND);
      if (!allows(identity.rules ?? BUILD_POD_RULES, route)) throw forbidden(identity.user, route);
      const representation = readsObjects(route) ? negotiate(req.headers.accept) : ({ as: 'object' } as const);
      if (route.verb === 'watch') return { watch: this.registry.openWatch(route, url.searchParams), representation, query: url.searchParams };
      const request = { query: url.searchParams, contentType: req.headers['content-type'], body: body.data, bodyLimit: body.limit };
      const { status, value, warnings } = this.registry.handle(route, request);
      const reply = jsonReply(status, representation.as === 'Table' ? this.asTable(route, value, representation, url.searchParams) : value);
      if (warnings.length > 0) reply.headers = { Warning: warnings.map(warningHeader) };
      return reply;
    } catch (error) {
      if (error instanceof StatusError) return statusReply(error.status);
      throw error;
    }
  }

  /** A get's object or a list's items as a Table (handlers/response.go transformResponseObject). */
  private asTable(route: Route, value: unknown, representation: { version: string }, query: URLSearchParams): JsonObject {
    const options = tableOptions(representation, query);
    const answer = value as JsonObject & { metadata: { resourceVersion?: string }; items?: JsonObject[] };
    const objects = route.verb === 'list' ? (answer.items ?? []) : [answer];
    return toTable(route.resource.printer, objects, answer.metadata.resourceVersion ?? '', options, Date.now());
  }

  /** The bearer authenticator: `Bearer <token>`, scheme case-insensitive; anything else is 401. */
  private authenticate(header: string | undefined): Identity {
    const [scheme, token] = (header ?? '').split(' ');
    const identity = scheme?.toLowerCase() === 'bearer' && token ? this.identities.get(token) : undefined;
    if (!identity) throw fail(UNAUTHORIZED);
    return identity;
  }
}

/** Only reads are printed as Tables; writes answer the object whatever the client accepts. */
const readsObjects = (route: Route) => route.verb === 'get' || route.verb === 'list' || route.verb === 'watch';
