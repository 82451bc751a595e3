/**
 * A real control plane for the conformance suite, envtest-style: etcd and kube-apiserver built
 * from source (test/cluster/build.ts), on loopback, with random ports and a temp folder, no
 * kubelet or controllers. The API server runs with RBAC, service-account tokens (TokenRequest),
 * an audit log (what every request got, so a test can assert the real 409s and 401s it met) and
 * a CA made at start; the harness itself is a system:masters client certificate.
 *
 * `startCluster()` resolves once /readyz answers ok; `stop()` stops both servers and removes the
 * folder with every credential in it. Both also happen when the process exits or is interrupted.
 */
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { requireBinaries, ROOT, type Binaries } from './build.js';
import { KubeHttp } from './kube.js';
import { createClusterPki, type ClusterPki } from './pki.js';
import { logTail, startServer, type ServerProcess } from './processes.js';
import { updateServiceAccountFolder, writeServiceAccountFolder } from './serviceaccount.js';

export const SERVICE_ACCOUNT_ISSUER = 'https://kubernetes.default.svc.cluster.local';

/** Audit policy: metadata of every request except the API server's own loopback traffic. */
const AUDIT_POLICY = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: None
    users: ["system:apiserver"]
  - level: Metadata
`;

export interface AuditEvent {
  stage: string;
  verb: string;
  requestURI: string;
  user: { username?: string; groups?: string[] };
  objectRef?: { resource?: string; subresource?: string; namespace?: string; name?: string; apiGroup?: string };
  responseStatus?: { code?: number; reason?: string; status?: string };
  userAgent?: string;
}

export interface KubectlResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ApplyOptions {
  /** `${NAME}` in the files is replaced by `vars.NAME` before parsing (only the names given). */
  vars?: Record<string, string>;
  /** Namespaces to move objects to: `metadata.namespace` and RoleBinding subjects' namespace. */
  namespaces?: Record<string, string>;
  /** Last word on each object: return a changed one, or undefined to leave it out. */
  transform?: (object: KubeObject) => KubeObject | undefined;
}

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; uid?: string; [key: string]: unknown };
  [key: string]: unknown;
}

export interface ServiceAccountFolder {
  dir: string;
  namespace: string;
  serviceAccount: string;
  /** The variables a pod gets from Kubernetes and the folder the runtime reads. */
  env: { KUBERNETES_SERVICE_HOST: string; KUBERNETES_SERVICE_PORT: string; SPOT_SERVICEACCOUNT_DIR: string };
  /** The token currently in the folder. */
  token: string;
  /** Writes `token` into the folder the way the kubelet does (new version, atomic `..data` swap). */
  rotate(token: string): Promise<void>;
}

export interface Cluster {
  /** https://127.0.0.1:PORT */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly caPem: string;
  readonly dir: string;
  readonly kubeconfig: string;
  readonly binaries: Binaries;
  /** The harness's own client (system:masters). */
  readonly http: KubeHttp;
  readonly apiserverLog: string;
  readonly etcdLog: string;

  kubectl(args: string[], input?: string): Promise<KubectlResult>;
  /** `kubectl`, failing with its stderr unless it exits 0; resolves to stdout. */
  kubectlOk(args: string[], input?: string): Promise<string>;
  /** Applies deploy files (paths relative to the repository root) with kubectl; see ApplyOptions. */
  applyDeploy(files: string[], options?: ApplyOptions): Promise<KubeObject[]>;
  ensureNamespace(name: string): Promise<void>;
  /** A bound token from the TokenRequest API (bound to a Secret when `boundSecret` is given). */
  mintToken(namespace: string, serviceAccount: string, options?: { boundSecret?: string; expirationSeconds?: number }): Promise<string>;
  /** Mints a token and writes a kubelet-style service-account folder (`token`, `ca.crt`, `namespace`). */
  serviceAccountFolder(namespace: string, serviceAccount: string, options?: { boundSecret?: string }): Promise<ServiceAccountFolder>;
  /** The audit log so far (waits briefly for the log to catch up with `until`, when given). */
  audit(until?: (events: AuditEvent[]) => boolean): Promise<AuditEvent[]>;
  /** Last lines of the API server's and etcd's logs, for a failure message. */
  logs(lines?: number): string;
  stop(): Promise<void>;
}

export interface StartOptions {
  /** Deploy files applied once the server is ready (e.g. the CRD). */
  deploy?: string[];
  /** Keep the folder (logs, audit log) after stop; also with env SPOT_CLUSTER_KEEP=1. */
  keep?: boolean;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
}

// ---------------------------------------------------------------------------------------------
// Cleanup that survives failures and interruptions

const live = new Set<{ stopSync(): void }>();
let signalsHooked = false;

function hookSignals(): void {
  if (signalsHooked) return;
  signalsHooked = true;
  process.on('exit', () => {
    for (const c of live) c.stopSync();
  });
  for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]] as const) {
    // Node's default for these signals exits without 'exit' handlers: stop the cluster first.
    process.once(signal, () => {
      for (const c of live) c.stopSync();
      process.exit(code);
    });
  }
}

const DIR_PREFIX = 'spot-cluster-';
const OWNER_FILE = 'owner.pid';

/**
 * Folders of clusters whose process was killed outright (SIGKILL leaves no time to clean up; the
 * servers themselves die with it, see internal/lifeline): removed at the next start, credentials
 * and all. A folder is abandoned when the process that wrote its owner.pid is gone.
 */
function sweepAbandoned(): void {
  for (const entry of readdirSync(tmpdir())) {
    if (!entry.startsWith(DIR_PREFIX)) continue;
    const path = join(tmpdir(), entry);
    let owner: number;
    try {
      owner = Number(readFileSync(join(path, OWNER_FILE), 'utf8'));
    } catch {
      continue; // not ours, or still being set up
    }
    try {
      process.kill(owner, 0);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ESRCH') rmSync(path, { recursive: true, force: true });
    }
  }
}

async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: count }, () => new Promise<import('node:net').Server>((resolve, reject) => {
      const s = createServer();
      s.once('error', reject);
      s.listen(0, '127.0.0.1', () => resolve(s));
    })),
  );
  const ports = servers.map((s) => (s.address() as import('node:net').AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return ports;
}

async function waitFor(what: string, check: () => Promise<boolean>, processes: ServerProcess[], timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    const dead = processes.find((p) => p.done);
    if (dead) throw new Error(`${dead.name} exited (${await dead.exited}) before ${what}; last lines of its log:\n${dead.tail(40)}`);
    try {
      if (await check()) return;
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() > until) throw new Error(`${what} did not happen within ${timeoutMs / 1000} s${last ? ` (last error: ${last})` : ''}`);
    await sleep(100);
  }
}

function kubeconfig(url: string, pki: ClusterPki): string {
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'spot', cluster: { server: url, 'certificate-authority-data': b64(pki.caPem) } }],
    users: [{ name: 'admin', user: { 'client-certificate-data': b64(pki.adminCertPem), 'client-key-data': b64(pki.adminKeyPem) } }],
    contexts: [{ name: 'spot', context: { cluster: 'spot', user: 'admin', namespace: 'default' } }],
    'current-context': 'spot',
  });
}

/** The objects of `kubectl -o json` for several documents: JSON values one after another. */
function jsonStream(text: string): unknown[] {
  const out: unknown[] = [];
  let depth = 0;
  let start = -1;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '{' || c === '[') {
      if (depth++ === 0) start = i;
    } else if ((c === '}' || c === ']') && --depth === 0) out.push(JSON.parse(text.slice(start, i + 1)));
  }
  return out.flatMap((v) => ((v as { kind?: string }).kind === 'List' ? (v as { items: unknown[] }).items : [v]));
}

/** Namespaced kinds among what deploy/ holds; the rest (CRDs, ClusterRoles, Namespaces) are cluster-wide. */
const CLUSTER_SCOPED = new Set(['CustomResourceDefinition', 'ClusterRole', 'ClusterRoleBinding', 'Namespace']);

// ---------------------------------------------------------------------------------------------

export async function startCluster(options: StartOptions = {}): Promise<Cluster> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(options);
    } catch (err) {
      // The free ports were free when asked for; another process may have taken one since.
      if (attempt < 3 && /address already in use/.test((err as Error).message)) continue;
      throw err;
    }
  }
}

async function startOnce(options: StartOptions): Promise<Cluster> {
  const binaries = requireBinaries();
  const log = options.log ?? (() => {});
  const keep = options.keep ?? process.env.SPOT_CLUSTER_KEEP === '1';
  hookSignals();
  sweepAbandoned();
  const dir = mkdtempSync(join(tmpdir(), DIR_PREFIX));
  writeFileSync(join(dir, OWNER_FILE), String(process.pid));
  const processes: ServerProcess[] = [];
  const handle = {
    stopSync() {
      for (const p of processes) {
        try {
          process.kill(-p.pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
      if (!keep) rmSync(dir, { recursive: true, force: true });
    },
  };
  live.add(handle);
  const apiserverLog = join(dir, 'kube-apiserver.log');
  const etcdLog = join(dir, 'etcd.log');
  let http: KubeHttp | undefined;

  const stop = async () => {
    live.delete(handle);
    // The API server first: etcd going away under it only makes noise in its log.
    for (const p of [...processes].reverse()) await p.stop(p.name === 'etcd' ? 5_000 : 10_000);
    await http?.close();
    if (!keep) rmSync(dir, { recursive: true, force: true });
    else log(`kept ${dir}`);
  };

  try {
    const pki = await createClusterPki(join(dir, 'pki'));
    const [etcdPort, peerPort, apiPort] = (await freePorts(3)) as [number, number, number];
    const etcdUrl = `http://127.0.0.1:${etcdPort}`;
    log(`etcd on ${etcdUrl}`);
    processes.push(
      startServer('etcd', binaries.etcd, [
        `--data-dir=${join(dir, 'etcd-data')}`,
        `--listen-client-urls=${etcdUrl}`,
        `--advertise-client-urls=${etcdUrl}`,
        `--listen-peer-urls=http://127.0.0.1:${peerPort}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
        `--initial-cluster=default=http://127.0.0.1:${peerPort}`,
        // A test cluster's data is thrown away: durability buys nothing and costs a slow disk seconds.
        '--unsafe-no-fsync=true',
        '--log-level=warn',
      ], etcdLog),
    );
    await waitFor('etcd is healthy', async () => {
      const res = await fetch(`${etcdUrl}/health`);
      return res.ok && ((await res.json()) as { health?: string }).health === 'true';
    }, processes, 30_000);

    await writeFile(join(dir, 'audit-policy.yaml'), AUDIT_POLICY);
    await mkdir(join(dir, 'apiserver-certs'));
    const url = `https://127.0.0.1:${apiPort}`;
    log(`kube-apiserver on ${url}`);
    processes.push(
      startServer('kube-apiserver', binaries['kube-apiserver'], [
        `--etcd-servers=${etcdUrl}`,
        '--bind-address=127.0.0.1',
        '--advertise-address=127.0.0.1',
        `--secure-port=${apiPort}`,
        `--cert-dir=${join(dir, 'apiserver-certs')}`,
        `--tls-cert-file=${pki.servingCertPath}`,
        `--tls-private-key-file=${pki.servingKeyPath}`,
        `--client-ca-file=${pki.caPath}`,
        '--authorization-mode=RBAC',
        `--service-account-issuer=${SERVICE_ACCOUNT_ISSUER}`,
        `--service-account-key-file=${pki.serviceAccountPublicKeyPath}`,
        `--service-account-signing-key-file=${pki.serviceAccountKeyPath}`,
        `--api-audiences=${SERVICE_ACCOUNT_ISSUER}`,
        '--service-cluster-ip-range=10.0.0.0/24',
        // The ServiceAccount admission plugin waits for a controller we do not run (and we create
        // no pods); everything else stays as a real cluster has it.
        '--disable-admission-plugins=ServiceAccount',
        // No endpoints to keep for a single loopback server.
        '--endpoint-reconciler-type=none',
        `--audit-policy-file=${join(dir, 'audit-policy.yaml')}`,
        `--audit-log-path=${join(dir, 'audit.log')}`,
        '--audit-log-mode=blocking',
        '--profiling=false',
      ], apiserverLog),
    );
    http = new KubeHttp(url, { ca: pki.caPem, cert: pki.adminCertPem, key: pki.adminKeyPem });
    const client = http;
    await waitFor('kube-apiserver is ready (/readyz)', async () => (await client.send({ method: 'GET', path: '/readyz' })).status === 200, processes, 120_000);
    const kubeconfigPath = join(dir, 'kubeconfig');
    await writeFile(kubeconfigPath, kubeconfig(url, pki), { mode: 0o600 });

    const kubectl = (args: string[], input?: string) =>
      new Promise<KubectlResult>((resolve, reject) => {
        const child = spawn(binaries.kubectl, [`--kubeconfig=${kubeconfigPath}`, `--cache-dir=${join(dir, 'kubectl-cache')}`, ...args], {
          env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir },
          stdio: ['pipe', 'pipe', 'pipe'],
        });
        let stdout = '';
        let stderr = '';
        child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
        child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
        child.on('error', reject);
        child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
        child.stdin.end(input ?? '');
      });
    const kubectlOk = async (args: string[], input?: string) => {
      const r = await kubectl(args, input);
      if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
      return r.stdout;
    };

    const ensureNamespace = async (name: string) => {
      const r = await client.send({ method: 'POST', path: '/api/v1/namespaces', body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name } } });
      if (r.status !== 201 && r.status !== 409) throw new Error(`cannot create namespace ${name}: ${r.status} ${r.text}`);
    };

    const applyDeploy = async (files: string[], o: ApplyOptions = {}): Promise<KubeObject[]> => {
      const applied: KubeObject[] = [];
      // File by file, in order: a later file may hold objects of a CRD an earlier one defines.
      for (const file of files) {
        let text = readFileSync(isAbsolute(file) ? file : join(ROOT, file), 'utf8');
        for (const [name, value] of Object.entries(o.vars ?? {})) text = text.split(`\${${name}}`).join(value);
        // kubectl parses the YAML (one parser, the real one); the objects are then adjusted as JSON.
        const objects: KubeObject[] = [];
        for (let object of jsonStream(await kubectlOk(['create', '--dry-run=client', '-o', 'json', '-f', '-'], text)) as KubeObject[]) {
          const move = (ns: string | undefined) => (ns !== undefined && o.namespaces?.[ns] !== undefined ? o.namespaces[ns] : ns);
          if (!CLUSTER_SCOPED.has(object.kind)) object.metadata.namespace = move(object.metadata.namespace ?? 'default');
          for (const subject of (object.subjects as Array<{ kind: string; namespace?: string }> | undefined) ?? []) {
            if (subject.kind === 'ServiceAccount') subject.namespace = move(subject.namespace);
          }
          const changed = o.transform ? o.transform(object) : object;
          if (changed) objects.push((object = changed));
        }
        for (const ns of new Set(objects.map((x) => x.metadata.namespace).filter((x): x is string => !!x))) await ensureNamespace(ns);
        await kubectlOk(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }));
        const crds = objects.filter((x) => x.kind === 'CustomResourceDefinition').map((x) => `crd/${x.metadata.name}`);
        if (crds.length > 0) await kubectlOk(['wait', '--for=condition=Established', '--timeout=60s', ...crds]);
        applied.push(...objects);
      }
      return applied;
    };

    const mintToken = async (namespace: string, serviceAccount: string, m: { boundSecret?: string; expirationSeconds?: number } = {}) => {
      let boundObjectRef: Record<string, string> | undefined;
      if (m.boundSecret) {
        const secret = await client.expect<KubeObject>({ method: 'GET', path: `/api/v1/namespaces/${namespace}/secrets/${m.boundSecret}` });
        boundObjectRef = { apiVersion: 'v1', kind: 'Secret', name: m.boundSecret, uid: secret.metadata.uid! };
      }
      const answer = await client.expect<{ status: { token: string } }>({
        method: 'POST',
        path: `/api/v1/namespaces/${namespace}/serviceaccounts/${serviceAccount}/token`,
        body: {
          apiVersion: 'authentication.k8s.io/v1',
          kind: 'TokenRequest',
          spec: { audiences: [SERVICE_ACCOUNT_ISSUER], expirationSeconds: m.expirationSeconds ?? 3600, ...(boundObjectRef ? { boundObjectRef } : {}) },
        },
      });
      return answer.status.token;
    };

    let folders = 0;
    const serviceAccountFolder = async (namespace: string, serviceAccount: string, f: { boundSecret?: string } = {}): Promise<ServiceAccountFolder> => {
      const folder = join(dir, 'serviceaccounts', `${++folders}-${namespace}-${serviceAccount}`);
      const token = await mintToken(namespace, serviceAccount, f);
      await writeServiceAccountFolder(folder, { token, caPem: pki.caPem, namespace });
      const result: ServiceAccountFolder = {
        dir: folder,
        namespace,
        serviceAccount,
        env: { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: String(apiPort), SPOT_SERVICEACCOUNT_DIR: folder },
        token,
        async rotate(next: string) {
          await updateServiceAccountFolder(folder, { token: next, caPem: pki.caPem, namespace });
          result.token = next;
        },
      };
      return result;
    };

    const readAudit = (): AuditEvent[] => {
      let text = '';
      try {
        text = readFileSync(join(dir, 'audit.log'), 'utf8');
      } catch {
        return [];
      }
      // The last line may be half-written.
      return text.split('\n').flatMap((line) => {
        try {
          return line ? [JSON.parse(line) as AuditEvent] : [];
        } catch {
          return [];
        }
      });
    };

    const cluster: Cluster = {
      url,
      host: '127.0.0.1',
      port: apiPort,
      caPem: pki.caPem,
      dir,
      kubeconfig: kubeconfigPath,
      binaries,
      http: client,
      apiserverLog,
      etcdLog,
      kubectl,
      kubectlOk,
      applyDeploy,
      ensureNamespace,
      mintToken,
      serviceAccountFolder,
      async audit(until) {
        const deadline = Date.now() + 5_000;
        for (;;) {
          const events = readAudit();
          if (!until || until(events) || Date.now() > deadline) return events;
          await sleep(50);
        }
      },
      logs: (lines = 30) => `--- kube-apiserver (${apiserverLog}) ---\n${logTail(apiserverLog, lines)}\n--- etcd (${etcdLog}) ---\n${logTail(etcdLog, lines)}`,
      stop,
    };
    if (options.deploy?.length) await applyDeploy(options.deploy);
    return cluster;
  } catch (err) {
    const logs = `--- kube-apiserver ---\n${logTail(apiserverLog, 40)}\n--- etcd ---\n${logTail(etcdLog, 20)}`;
    await stop().catch(() => {});
    throw new Error(`cannot start the cluster: ${(err as Error).message}\n${logs}`, { cause: err });
  }
}

