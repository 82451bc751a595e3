/**
 * The benchmark job on @kubernetes/client-node 1.4.0, written as its users write status updates:
 * in-cluster KubeConfig, the generated CustomObjectsApi and CoreV1Api, a merge patch of the whole
 * `status` (set through the documented header middleware), one write when a step starts and one
 * when it ends, then one event.
 *
 * `loadFromCluster(pathPrefix)` is client-node's own in-cluster loader, unchanged: it reads
 * `${pathPrefix}/var/run/secrets/kubernetes.io/serviceaccount/{token,ca.crt,namespace}` and the
 * KUBERNETES_SERVICE_HOST/PORT env. The prefix is the seam its own tests use; scripts/bench.ts
 * points it at a folder whose `var/run/secrets/kubernetes.io/serviceaccount` is a symlink to the
 * local API server's service-account folder. In a pod the prefix is empty.
 */
import * as k8s from '@kubernetes/client-node';
import { COMPONENT, EVENT, IMAGE_URL, IN_PROGRESS, STEPS, SUCCESS, timestamp } from './common.js';
import { mark } from './report.js';

mark('imported'); // every static import above has been loaded and evaluated

interface Condition {
  type: string;
  status: string;
  lastTransitionTime: string;
  reason?: string;
}

const kc = new k8s.KubeConfig();
kc.loadFromCluster(process.env.BENCH_INCLUSTER_PATH_PREFIX ?? '');
const customObjects = kc.makeApiClient(k8s.CustomObjectsApi);
const core = kc.makeApiClient(k8s.CoreV1Api);
// The generated client picks application/json-patch+json unless told otherwise.
const mergePatch = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch);

const [namespace = '', name = ''] = (process.env.BUILD_REFERENCE ?? '').split('/');
const target = { group: 'spot.release.com', version: 'v1alpha1', namespace, plural: 'builds', name };

const build = await customObjects.getNamespacedCustomObject(target);
const status: { conditions: Condition[]; phase: string; image?: { url: string } } = { conditions: [], phase: 'Running' };

function setCondition(type: string, value: string, reason?: string): void {
  const next: Condition = { type, status: value, lastTransitionTime: timestamp(), ...(reason ? { reason } : {}) };
  const index = status.conditions.findIndex((c) => c.type === type);
  if (index >= 0) status.conditions[index] = next;
  else status.conditions.push(next);
  status.phase = status.conditions.length === STEPS.length && status.conditions.every((c) => c.status === SUCCESS) ? 'Done' : 'Running';
}

let written = build;
for (const [i, type] of STEPS.entries()) {
  setCondition(type, IN_PROGRESS);
  written = await customObjects.patchNamespacedCustomObjectStatus({ ...target, body: { status } }, mergePatch);
  mark('firstWrite');
  // (the step itself: nothing)
  if (i === STEPS.length - 1) status.image = { url: IMAGE_URL };
  setCondition(type, SUCCESS, 'Succeeded');
  written = await customObjects.patchNamespacedCustomObjectStatus({ ...target, body: { status } }, mergePatch);
}

const now = new Date();
await core.createNamespacedEvent({
  namespace,
  body: {
    metadata: { name: `${name}.${(BigInt(now.getTime()) * 1_000_000n).toString(16)}`, namespace },
    involvedObject: {
      apiVersion: 'spot.release.com/v1alpha1',
      kind: 'Build',
      name,
      namespace,
      uid: written.metadata?.uid,
      resourceVersion: written.metadata?.resourceVersion,
    },
    reason: EVENT.reason,
    message: EVENT.message,
    type: EVENT.type,
    source: { component: COMPONENT },
    reportingComponent: COMPONENT,
    reportingInstance: process.env.POD_NAME ?? 'unknown',
    firstTimestamp: now,
    lastTimestamp: now,
    count: 1,
  },
});
mark('done');
