/**
 * The sample Build `npm run apiserver` and `npm start` seed, read from deploy/ so that the local
 * server starts with what a cluster would hold after `kubectl apply -f deploy/`: the
 * conditions-shaped sample (default/sample-build), or for a CRD of the published Spot shape
 * (status.stage) its sample (workspace-a/sample-build) with the status the operator writes when it
 * starts the build pod.
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';

import type { BuildSpec, BuildStatus } from '../../lib/types.js';
import { isJsonObject } from './json-patch.js';
import type { CustomResourceDefinition } from './schema.js';
import type { NewBuild } from './server.js';

const SAMPLES = {
  conditions: fileURLToPath(new URL('../../deploy/sample-build.yaml', import.meta.url)),
  spot: fileURLToPath(new URL('../../deploy/spot-sample-build.yaml', import.meta.url)),
};

/** The published Spot shape keeps its phase in status.stage. */
export function isSpotShape(crd: CustomResourceDefinition): boolean {
  return crd.schema.properties?.status?.properties?.stage !== undefined;
}

export interface Sample {
  build: NewBuild & { namespace: string };
  /** Where the build pod runs: `spot-system` in the operator's layout, else the Build's namespace. */
  podNamespace: string;
}

/** The sample Build for this CRD's shape, as the operator would have left it: created, and for Spot, started. */
export async function sampleBuild(crd: CustomResourceDefinition): Promise<Sample> {
  const spot = isSpotShape(crd);
  const path = spot ? SAMPLES.spot : SAMPLES.conditions;
  const manifest: unknown = parseYaml(await readFile(path, 'utf8'));
  const metadata = isJsonObject(manifest) && isJsonObject(manifest.metadata) ? manifest.metadata : {};
  if (!isJsonObject(manifest) || typeof metadata.name !== 'string' || typeof metadata.namespace !== 'string') {
    throw new Error(`${path}: not a Build with metadata.name and metadata.namespace`);
  }
  const build: NewBuild & { namespace: string } = { name: metadata.name, namespace: metadata.namespace };
  if (isJsonObject(metadata.labels)) build.labels = metadata.labels as Record<string, string>;
  if (isJsonObject(manifest.spec)) build.spec = manifest.spec as BuildSpec;
  if (!spot) return { build, podNamespace: build.namespace };
  // spot-operator.md: the operator creates the pod in spot-system, then writes pod and stage Running.
  const pod = { name: `${metadata.name}-x7k2p`, namespace: 'spot-system' };
  build.status = { stage: 'Running', pod } as BuildStatus;
  return { build, podNamespace: pod.namespace };
}
