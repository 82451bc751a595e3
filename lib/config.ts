/**
 * Where the API server is and how to trust and authenticate to it. In-cluster first (the
 * service-account folder and `KUBERNETES_SERVICE_HOST/PORT`, as client-go's InClusterConfig),
 * or an explicit server for development (`kubectl proxy`, a local API server).
 *
 * Stricter than client-go where client-go is lenient in ways that hurt a build pod: a missing or
 * unparsable CA is an error here (client-go logs and falls back to the system roots). The pod's
 * namespace is only a default for a Build named without one, so a missing namespace file leaves it
 * unknown instead of stopping start-up (client-go falls back to "default", which would be a guess).
 * Nothing is sent before all of it is known.
 */
// Static, not `await import()`: code started from a V8 startup snapshot (dist/spot-run.cjs) cannot import().
import { X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { ConfigError } from './errors.js';
import { readOptionalFile, readRequiredFile } from './files.js';
import { validateNamespace } from './names.js';
import { FileTokenSource, StaticTokenSource, type TokenSource } from './token.js';
import type { Logger } from './log.js';

export const DEFAULT_SERVICEACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface ConfigOptions {
  /** Out-of-cluster: the API server's URL. Plain `http:` only to a loopback host. */
  server?: string;
  /** Out-of-cluster: a token file, re-read like the in-cluster one. */
  tokenFile?: string;
  /** Out-of-cluster: a fixed token. */
  token?: string;
  /** Out-of-cluster: a CA bundle (PEM) to trust instead of the system roots. */
  caFile?: string;
  /** In-cluster: the service-account folder (default: env `SPOT_SERVICEACCOUNT_DIR`, then the standard path). */
  serviceAccountDir?: string;
  /** Overrides the namespace from `POD_NAMESPACE` or the service-account folder. */
  namespace?: string;
  /** Environment to read (default `process.env`); tests pass their own. */
  env?: Record<string, string | undefined>;
  logger?: Logger;
}

export interface ClusterConfig {
  /** Origin of the API server, e.g. `https://10.0.0.1:443` or `https://[fd00::1]:443`. */
  server: string;
  /** PEM the server's certificate must chain to; undefined only for plain loopback http or the system roots. */
  ca: string | undefined;
  /** Undefined when no token is needed (e.g. `kubectl proxy`). */
  tokenSource: TokenSource | undefined;
  /**
   * The pod's own namespace: `ConfigOptions.namespace`, else `POD_NAMESPACE`, else the
   * service-account folder's `namespace` file (in-cluster) or `default` (explicit server).
   * Undefined in a cluster when none of them is there.
   */
  namespace: string | undefined;
}

const LOOPBACK_NAMES = new Set(['localhost', '127.0.0.1', '::1', '[::1]']);

function isLoopback(hostname: string): boolean {
  return LOOPBACK_NAMES.has(hostname) || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}

const HOST_NAME = /^(?=.{1,253}$)[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*$/;

/**
 * An IP literal (IPv6 bracketed or not) or a DNS host name: anything else (a space, a CR/LF, a
 * slash) would make a URL that is refused on every attempt, so it is refused here, once.
 */
function isHost(host: string): boolean {
  return isIP(host.replace(/^\[(.*)\]$/, '$1')) !== 0 || HOST_NAME.test(host);
}

/** `https://host:port` with an IPv6 literal bracketed, as Go's net.JoinHostPort. */
export function serverUrl(host: string, port: string): string {
  const bare = host.replace(/^\[(.*)\]$/, '$1');
  return `https://${isIP(bare) === 6 ? `[${bare}]` : bare}:${port}`;
}

/** Checks that `pem` holds at least one parsable certificate, so a bad CA fails here and not as a TLS error later. */
async function checkCaPem(pem: string, path: string): Promise<string> {
  // A private key where a public certificate belongs means a secret was mounted in the wrong
  // place: refuse it rather than keep a key in memory and carry on. Its content is never shown.
  const key = /-----BEGIN ([A-Z0-9 ]*PRIVATE KEY)-----/.exec(pem);
  if (key) {
    throw new ConfigError(`CA file ${path} holds a private key ("${key[1]}"): a CA bundle holds only public certificates; mount the key elsewhere, or not at all`, path);
  }
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g);
  if (!blocks) {
    throw new ConfigError(`CA file ${path} holds no PEM certificate (expected "-----BEGIN CERTIFICATE-----")`, path);
  }
  for (const block of blocks) {
    try {
      new X509Certificate(block);
    } catch (err) {
      throw new ConfigError(`CA file ${path} holds a certificate that cannot be parsed`, path, { cause: err });
    }
  }
  return pem;
}

export async function loadConfig(options: ConfigOptions = {}): Promise<ClusterConfig> {
  const env = options.env ?? process.env;
  return options.server !== undefined ? explicitConfig(options, env) : inClusterConfig(options, env);
}

async function inClusterConfig(options: ConfigOptions, env: Record<string, string | undefined>): Promise<ClusterConfig> {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  if (!host || !port) {
    const missing = [!host && 'KUBERNETES_SERVICE_HOST', !port && 'KUBERNETES_SERVICE_PORT'].filter(Boolean).join(' and ');
    throw new ConfigError(
      `unable to load in-cluster configuration, KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be defined (${missing} unset; outside a cluster pass a server URL instead)`,
    );
  }
  if (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65_535) {
    throw new ConfigError(`KUBERNETES_SERVICE_PORT must be a port number, got ${JSON.stringify(port.slice(0, 20))}`);
  }
  if (!isHost(host)) {
    throw new ConfigError(`KUBERNETES_SERVICE_HOST must be an IP address or a host name, got ${JSON.stringify(host.slice(0, 64))}`);
  }
  const fromEnv = env.SPOT_SERVICEACCOUNT_DIR;
  const dir = options.serviceAccountDir ?? (fromEnv || DEFAULT_SERVICEACCOUNT_DIR);
  const hint =
    options.serviceAccountDir !== undefined
      ? ''
      : fromEnv
        ? ' (folder from SPOT_SERVICEACCOUNT_DIR)'
        : ' (mount a service-account token in the pod, or set SPOT_SERVICEACCOUNT_DIR)';

  const caPath = join(dir, 'ca.crt');
  const [tokenSource, ca, namespace] = await Promise.all([
    FileTokenSource.open(join(dir, 'token'), { logger: options.logger, hint }),
    readRequiredFile(caPath, 'CA file', hint).then((pem) => checkCaPem(pem, caPath)),
    options.namespace ?? (env.POD_NAMESPACE || readOptionalFile(join(dir, 'namespace'), 'namespace file', hint)),
  ]);
  return {
    server: serverUrl(host, port),
    ca,
    tokenSource,
    namespace: namespace === undefined ? undefined : validateNamespace(namespace.trim(), 'pod namespace'),
  };
}

async function explicitConfig(options: ConfigOptions, env: Record<string, string | undefined>): Promise<ClusterConfig> {
  let url: URL;
  try {
    url = new URL(options.server!);
  } catch {
    throw new ConfigError(`invalid server URL ${JSON.stringify(options.server)}: expected e.g. https://host:6443`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new ConfigError(`invalid server URL ${url.origin}: the scheme must be https (or http to a loopback host)`);
  }
  if (url.protocol === 'http:' && !isLoopback(url.hostname)) {
    throw new ConfigError(
      `refusing plain http to ${url.host}: the token and build status would cross the network unencrypted; use https, or http only to a loopback address such as kubectl proxy at http://127.0.0.1:8001`,
    );
  }
  if (url.pathname !== '/' || url.search || url.username) {
    throw new ConfigError(`invalid server URL ${JSON.stringify(options.server)}: give only scheme, host and port`);
  }
  let tokenSource: TokenSource | undefined;
  if (options.tokenFile !== undefined) tokenSource = await FileTokenSource.open(options.tokenFile, { logger: options.logger });
  else if (options.token !== undefined) {
    if (options.token.trim() === '') throw new ConfigError('the token given is empty');
    tokenSource = new StaticTokenSource(options.token.trim());
  }
  const ca =
    options.caFile !== undefined
      ? await checkCaPem(await readRequiredFile(options.caFile, 'CA file', ''), options.caFile)
      : undefined;
  return {
    server: url.origin,
    ca,
    tokenSource,
    namespace: validateNamespace(options.namespace ?? (env.POD_NAMESPACE || 'default'), 'namespace'),
  };
}
