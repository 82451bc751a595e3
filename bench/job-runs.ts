/**
 * The status-flow job, once per contender per round, interleaved (A B C D E F A B C ...) so that
 * drift in the machine's load spreads over every contender alike. Each run gets a fresh Build; after
 * it the local API server's state is checked (phase Done, the image, every step Success, one event,
 * no failed request), so no contender can look fast by doing less.
 */
import { mkdir, symlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { ApiServer } from '../scripts/apiserver/server.js';
import { runChild } from './child.js';
import { BUNDLE, JOBS_DIR, SNAPSHOT_BLOB } from './workspace.js';
import { EVENT, IMAGE_URL, STEPS } from './jobs/common.js';

export type ContenderId = 'spot' | 'spot-tsx' | 'bundle' | 'snapshot' | 'client-node' | 'undici' | 'https';

export interface Contender {
  id: ContenderId;
  label: string;
  /** Arguments to `node`, in the workspace (bench/workspace.ts). */
  args: string[];
}

export const CONTENDERS: readonly Contender[] = [
  { id: 'spot', label: 'spot-runtime (dist/lib)', args: [`${JOBS_DIR}/spot-runtime.js`] },
  { id: 'spot-tsx', label: 'spot-runtime (tsx, lib/*.ts)', args: ['--import', 'tsx', 'bench/jobs/spot-runtime.ts'] },
  { id: 'bundle', label: 'spot-runtime bundle (1 file)', args: [BUNDLE] },
  { id: 'snapshot', label: 'spot-runtime bundle, V8 snapshot', args: ['--snapshot-blob', SNAPSHOT_BLOB] },
  { id: 'client-node', label: '@kubernetes/client-node 1.4.0', args: [`${JOBS_DIR}/client-node.js`] },
  { id: 'undici', label: 'floor: raw undici', args: [`${JOBS_DIR}/floor-undici.js`] },
  { id: 'https', label: 'floor: node:https', args: [`${JOBS_DIR}/floor-https.js`] },
];

export interface JobSample {
  /** Child's clock: ms from its process start until its static imports were loaded. */
  importedMs: number;
  /** Child's clock: ms from its process start to the first status write acknowledged. */
  coldStartMs: number;
  /** Child's clock: ms from its process start until the job was done (client closed). */
  doneMs: number;
  /** Parent's clock: ms from spawn() to exit. */
  wallMs: number;
  peakRssMiB: number;
  requests: number;
  /** Sum of request body sizes as the API server read them. */
  bodyBytes: number;
  /** e.g. `GET PATCH×5 POST` */
  shape: string;
}

/**
 * client-node's in-cluster loader reads `${prefix}/var/run/secrets/kubernetes.io/serviceaccount/*`;
 * this makes a prefix under which that path is a symlink to the local server's folder.
 */
export async function clientNodePathPrefix(server: ApiServer): Promise<string> {
  const prefix = join(server.dir, 'client-node-root');
  const link = join(prefix, 'var/run/secrets/kubernetes.io/serviceaccount');
  await mkdir(dirname(link), { recursive: true });
  await symlink(server.serviceAccountDir, link);
  return prefix;
}

function requestShape(methods: string[]): string {
  const counts = new Map<string, number>();
  for (const method of methods) counts.set(method, (counts.get(method) ?? 0) + 1);
  return [...counts].map(([method, n]) => (n === 1 ? method : `${method}×${n}`)).join(' ');
}

/** Throws unless the run left the Build exactly as the job should. */
function checkOutcome(server: ApiServer, namespace: string, name: string, contender: Contender): void {
  const build = server.getBuild(namespace, name);
  const status = build?.status;
  const problems = [
    status?.phase !== 'Done' && `phase is ${JSON.stringify(status?.phase)}`,
    status?.image?.url !== IMAGE_URL && `image is ${JSON.stringify(status?.image)}`,
    ...STEPS.map((type) => {
      const found = status?.conditions?.find((c) => c.type === type);
      return found?.status !== 'Success' && `condition ${type} is ${JSON.stringify(found?.status)}`;
    }),
    server.events(namespace).filter((e) => e.involvedObject?.name === name && e.reason === EVENT.reason).length !== 1 && 'not exactly one event',
    ...server.requests.filter((r) => r.status < 200 || r.status > 299).map((r) => `${r.method} ${r.path} answered ${r.status}`),
  ].filter(Boolean);
  if (problems.length > 0) throw new Error(`${contender.label} left Build ${namespace}/${name} wrong: ${problems.join('; ')}`);
}

export async function runJob(workspace: string, server: ApiServer, contender: Contender, buildName: string, clientNodePrefix: string): Promise<JobSample> {
  const namespace = server.namespace;
  server.createBuild({ name: buildName, spec: { image: { name: 'team/app', tag: '1.4.2', registry: { url: 'registry.example.com' } } } });
  server.clearLog();
  const { report, wallMs } = await runChild(workspace, contender.args, {
    ...server.env(),
    BUILD_REFERENCE: `${namespace}/${buildName}`,
    POD_NAME: `${buildName}-pod`,
    ...(contender.id === 'client-node' ? { BENCH_INCLUSTER_PATH_PREFIX: clientNodePrefix } : {}),
  });
  checkOutcome(server, namespace, buildName, contender);
  const { imported, firstWrite, done } = report.marks;
  if (imported === undefined || firstWrite === undefined || done === undefined) {
    throw new Error(`${contender.label} reported marks ${JSON.stringify(report.marks)}: imported, firstWrite and done expected`);
  }
  return {
    importedMs: imported,
    coldStartMs: firstWrite,
    doneMs: done,
    wallMs,
    peakRssMiB: report.maxRssKiB / 1024,
    requests: server.requests.length,
    bodyBytes: server.requests.reduce((sum, r) => sum + r.bytes, 0),
    shape: requestShape(server.requests.map((r) => r.method)),
  };
}

/**
 * `rounds` measured rounds after one warm-up round (discarded: it fills the page cache and tsx's
 * on-disk transform cache, which only the first process of a kind would pay for).
 */
export async function runJobRounds(
  workspace: string,
  server: ApiServer,
  rounds: number,
  onRound: (round: number) => void,
): Promise<Map<ContenderId, JobSample[]>> {
  const prefix = await clientNodePathPrefix(server);
  const samples = new Map<ContenderId, JobSample[]>(CONTENDERS.map((c) => [c.id, []]));
  for (let round = 0; round <= rounds; round++) {
    for (const contender of CONTENDERS) {
      const sample = await runJob(workspace, server, contender, `job-${contender.id}-${round}`, prefix);
      if (round > 0) samples.get(contender.id)!.push(sample);
    }
    onRound(round);
  }
  return samples;
}
