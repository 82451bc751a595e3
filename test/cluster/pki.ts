/**
 * The cluster's throwaway credentials, made with the openssl command line at every start (no key
 * lives in the repository): one CA that signs the API server's serving certificate and the admin
 * client certificate (so it is also the `--client-ca-file`), and the service-account signing key.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createCertificateAuthority } from '../../scripts/apiserver/certs.js';

const run = promisify(execFile);

export interface ClusterPki {
  caPath: string;
  caPem: string;
  servingCertPath: string;
  servingKeyPath: string;
  /** Client certificate of the harness: O=system:masters, so RBAC allows it everything. */
  adminCertPath: string;
  adminKeyPath: string;
  adminCertPem: string;
  adminKeyPem: string;
  /** EC P-256 key that signs service-account tokens (ES256). */
  serviceAccountKeyPath: string;
  /** Its public half, which verifies them. */
  serviceAccountPublicKeyPath: string;
}

/** The identity of the harness as the API server sees it. */
export const ADMIN_USER = 'spot-cluster-admin';

async function openssl(args: string[]): Promise<void> {
  try {
    await run('openssl', args);
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr?.trim();
    throw new Error(`openssl ${args[0]} failed: ${stderr || (error as Error).message}`, { cause: error });
  }
}

const EXTENSIONS = `
[serving]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
# The names an in-cluster client may use: loopback here, and what a pod would see.
subjectAltName = IP:127.0.0.1, DNS:localhost, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, IP:10.0.0.1
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
`;

async function signed(dir: string, name: string, subject: string, extensions: 'serving' | 'client', ca: { certPath: string; keyPath: string }): Promise<{ certPath: string; keyPath: string }> {
  const keyPath = join(dir, `${name}.key`);
  const csrPath = join(dir, `${name}.csr`);
  const certPath = join(dir, `${name}.crt`);
  await openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', keyPath, '-subj', subject, '-out', csrPath]);
  await openssl([
    'x509', '-req', '-in', csrPath, '-CA', ca.certPath, '-CAkey', ca.keyPath, '-set_serial', `0x${randomBytes(8).toString('hex')}`,
    '-days', '2', '-extfile', join(dir, 'extensions.cnf'), '-extensions', extensions, '-out', certPath,
  ]);
  return { certPath, keyPath };
}

/** Makes every credential in `dir` (which the caller removes). */
export async function createClusterPki(dir: string): Promise<ClusterPki> {
  const ca = await createCertificateAuthority(dir, 'ca', 'spot-runtime cluster CA');
  await writeFile(join(dir, 'extensions.cnf'), EXTENSIONS);
  const serviceAccountKeyPath = join(dir, 'service-account.key');
  const [serving, admin] = await Promise.all([
    signed(dir, 'apiserver', '/CN=kube-apiserver', 'serving', ca),
    signed(dir, 'admin', `/O=system:masters/CN=${ADMIN_USER}`, 'client', ca),
    openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', serviceAccountKeyPath]),
  ]);
  const serviceAccountPublicKeyPath = join(dir, 'service-account.pub');
  await openssl(['pkey', '-in', serviceAccountKeyPath, '-pubout', '-out', serviceAccountPublicKeyPath]);
  const [adminCertPem, adminKeyPem] = await Promise.all([readFile(admin.certPath, 'utf8'), readFile(admin.keyPath, 'utf8')]);
  return {
    caPath: ca.certPath,
    caPem: ca.certPem,
    servingCertPath: serving.certPath,
    servingKeyPath: serving.keyPath,
    adminCertPath: admin.certPath,
    adminKeyPath: admin.keyPath,
    adminCertPem,
    adminKeyPem,
    serviceAccountKeyPath,
    serviceAccountPublicKeyPath,
  };
}
