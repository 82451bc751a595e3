/**
 * Throwaway certificates for the local API server, made with the `openssl` command line at run
 * time so that no key ever lives in the repository. EC P-256 keys take milliseconds to make.
 * Only classic `openssl req` / `openssl x509` options are used, so OpenSSL 1.1.1 and 3.x both work.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Long enough to debug a kept directory, short enough that nobody mistakes these for real ones. */
const VALID_DAYS = '7';

const OPENSSL_CONFIG = `
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, IP:::1, DNS:localhost
authorityKeyIdentifier = keyid
`;

export interface CertificateAuthority {
  /** PEM of the CA certificate: what a client trusts. */
  certPem: string;
  certPath: string;
  keyPath: string;
}

export interface ServerCertificates {
  ca: CertificateAuthority;
  /** PEM of the server certificate (SAN IP:127.0.0.1, IP:::1, DNS:localhost). */
  certPem: string;
  keyPem: string;
}

async function openssl(args: readonly string[]): Promise<void> {
  try {
    await run('openssl', args);
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr?.trim();
    throw new Error(`openssl ${args[0]} failed: ${stderr || (error as Error).message}`, { cause: error });
  }
}

async function writeConfig(dir: string): Promise<string> {
  const path = join(dir, 'openssl.cnf');
  await writeFile(path, OPENSSL_CONFIG);
  return path;
}

/** A new key pair for `subject`, written as `<name>.key`, plus either a CSR or a self-signed CA. */
function newKeyArgs(dir: string, name: string, subject: string): string[] {
  return [
    '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', join(dir, `${name}.key`), '-subj', subject,
  ];
}

/** A self-signed CA in `dir` (created if missing): `<name>.crt` and `<name>.key`. */
export async function createCertificateAuthority(dir: string, name = 'ca', commonName = 'spot-runtime test CA'): Promise<CertificateAuthority> {
  await mkdir(dir, { recursive: true });
  return signCertificateAuthority(dir, await writeConfig(dir), name, commonName);
}

async function signCertificateAuthority(dir: string, config: string, name: string, commonName: string): Promise<CertificateAuthority> {
  const certPath = join(dir, `${name}.crt`);
  await openssl([
    'req', '-x509', ...newKeyArgs(dir, name, `/CN=${commonName}`),
    '-config', config, '-extensions', 'ca_ext', '-days', VALID_DAYS, '-out', certPath,
  ]);
  return { certPem: await readFile(certPath, 'utf8'), certPath, keyPath: join(dir, `${name}.key`) };
}

/** A CA and a server certificate it signed, for loopback (IPv4 and IPv6) and `localhost`. */
export async function createServerCertificates(dir: string): Promise<ServerCertificates> {
  await mkdir(dir, { recursive: true });
  const config = await writeConfig(dir);
  const csrPath = join(dir, 'server.csr');
  // The CA and the server's key and CSR do not depend on each other.
  const [ca] = await Promise.all([
    signCertificateAuthority(dir, config, 'ca', 'spot-runtime test CA'),
    openssl(['req', '-new', ...newKeyArgs(dir, 'server', '/CN=localhost'), '-config', config, '-out', csrPath]),
  ]);
  const certPath = join(dir, 'server.crt');
  await openssl([
    'x509', '-req', '-in', csrPath, '-CA', ca.certPath, '-CAkey', ca.keyPath,
    '-set_serial', `0x${randomBytes(8).toString('hex')}`, '-days', VALID_DAYS,
    '-extfile', config, '-extensions', 'server_ext', '-out', certPath,
  ]);
  const [certPem, keyPem] = await Promise.all([readFile(certPath, 'utf8'), readFile(join(dir, 'server.key'), 'utf8')]);
  return { ca, certPem, keyPem };
}

export interface ServerPems {
  caPem: string;
  certPem: string;
  keyPem: string;
}

let shared: Promise<ServerPems> | undefined;

/**
 * One CA and server certificate per process, kept in memory: openssl runs once however many
 * servers a test file starts (it is the slowest part of a start, on a busy machine by far).
 */
export function sharedServerCertificates(): Promise<ServerPems> {
  if (!shared) {
    shared = (async () => {
      const dir = await mkdtemp(join(tmpdir(), 'spot-pki-'));
      try {
        const { ca, certPem, keyPem } = await createServerCertificates(dir);
        return { caPem: ca.certPem, certPem, keyPem };
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    })();
    // Do not remember a failure (say, openssl missing): the next start should try again.
    shared.catch(() => (shared = undefined));
  }
  return shared;
}
