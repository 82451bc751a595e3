/**
 * `npm run cluster`: a real kube-apiserver and etcd for a person, with deploy/crd.yaml and
 * deploy/rbac.yaml applied, deploy/sample-build.yaml created, and a service-account folder for
 * spot-build-sample-build (the Build's own identity, deploy/rbac.yaml). Prints how to point kubectl and spot-run at it; Ctrl-C stops everything and
 * removes every file it made (pass --keep to keep the folder with the logs).
 */
import { requireBinaries } from './build.js';
import { startCluster } from './harness.js';

async function main(): Promise<void> {
  requireBinaries();
  const keep = process.argv.includes('--keep');
  const started = Date.now();
  const cluster = await startCluster({ deploy: ['deploy/crd.yaml', 'deploy/rbac.yaml', 'deploy/sample-build.yaml'], keep, log: (l) => console.log(l) });
  const sa = await cluster.serviceAccountFolder('default', 'spot-build-sample-build');
  console.log(`
ready in ${((Date.now() - started) / 1000).toFixed(1)} s (logs in ${cluster.dir}${keep ? ', kept' : ', removed at exit'})

  ${cluster.binaries.kubectl} --kubeconfig ${cluster.kubeconfig} get builds

  KUBERNETES_SERVICE_HOST=${sa.env.KUBERNETES_SERVICE_HOST} KUBERNETES_SERVICE_PORT=${sa.env.KUBERNETES_SERVICE_PORT} \\
  SPOT_SERVICEACCOUNT_DIR=${sa.dir} BUILD_REFERENCE=default/sample-build \\
    node --import tsx scripts/spot-run.ts --step 'Building Image=echo building'

Ctrl-C to stop.`);
  // The harness's signal handlers stop the cluster and exit; until then, keep the process alive.
  setInterval(() => {}, 1 << 30);
}

main().catch((err: Error) => {
  console.error(`cluster: ${err.message}`);
  process.exit(1);
});
