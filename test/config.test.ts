import { strict as assert } from 'node:assert';
import { generateKeyPairSync, sign, X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { DEFAULT_SERVICEACCOUNT_DIR, loadConfig, serverUrl, type ConfigOptions } from '../lib/config.js';
import { ConfigError } from '../lib/errors.js';
import { rejection } from './support/fixtures.js';

// ---------------------------------------------------------------------------------------------
// A throwaway self-signed certificate, made here (pure node:crypto, no openssl) so no key lives in the repo.

function der(tag: number, ...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  const n = body.length;
  const length = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : [0x82, n >> 8, n & 0xff];
  return Buffer.concat([Buffer.from([tag, ...length]), body]);
}

function testCertificatePem(): string {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const ecdsaWithSha256 = der(0x30, der(0x06, Buffer.from([0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02])));
  const name = der(0x30, der(0x31, der(0x30, der(0x06, Buffer.from([0x55, 0x04, 0x03])), der(0x0c, Buffer.from('spot-runtime test CA')))));
  const utcTime = (d: Date) => der(0x17, Buffer.from(`${d.toISOString().replace(/[-:T]/g, '').slice(2, 14)}Z`));
  const now = Date.now();
  const tbs = der(
    0x30,
    der(0xa0, der(0x02, Buffer.from([2]))), // v3
    der(0x02, Buffer.from([1])), // serial
    ecdsaWithSha256,
    name,
    der(0x30, utcTime(new Date(now - 60_000)), utcTime(new Date(now + 86_400_000))),
    name,
    publicKey.export({ type: 'spki', format: 'der' }),
  );
  const signature = sign('sha256', tbs, privateKey);
  const cert = der(0x30, tbs, ecdsaWithSha256, der(0x03, Buffer.concat([Buffer.from([0]), signature])));
  const base64 = cert.toString('base64').replace(/.{64}/g, '$&\n').trimEnd();
  return `-----BEGIN CERTIFICATE-----\n${base64}\n-----END CERTIFICATE-----\n`;
}

const CA = testCertificatePem();
const TOKEN = 'test-token';

// ---------------------------------------------------------------------------------------------

const dirs: string[] = [];
after(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

interface Folder {
  token?: string | undefined;
  ca?: string | undefined;
  namespace?: string | undefined;
}

/** A service-account folder with the given files (undefined = file absent). */
async function serviceAccountDir(files: Folder = {}): Promise<string> {
  const base = await mkdtemp(join(tmpdir(), 'spot-config-'));
  dirs.push(base);
  const dir = join(base, 'serviceaccount');
  await mkdir(dir);
  const all = { token: `${TOKEN}\n`, ca: CA, namespace: 'ns\n', ...files };
  if (all.token !== undefined) await writeFile(join(dir, 'token'), all.token);
  if (all.ca !== undefined) await writeFile(join(dir, 'ca.crt'), all.ca);
  if (all.namespace !== undefined) await writeFile(join(dir, 'namespace'), all.namespace);
  return dir;
}

const clusterEnv = { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' };

/** The ConfigError `loadConfig(options)` fails with; it must never carry the token. */
async function configError(options: ConfigOptions): Promise<ConfigError> {
  const err = await rejection(() => loadConfig(options));
  assert.ok(err instanceof ConfigError, `${err.name}: ${err.message}`);
  assert.equal(err.code, 'ERR_SPOT_CONFIG');
  assert.ok(!err.message.includes(TOKEN), `the token in: ${err.message}`);
  return err;
}

describe('in-cluster', () => {
  test('reads token, CA and namespace from the folder; https to host:port', async () => {
    const dir = await serviceAccountDir();
    const config = await loadConfig({ env: clusterEnv, serviceAccountDir: dir });
    assert.equal(config.server, 'https://10.96.0.1:443');
    assert.equal(config.ca, CA);
    assert.equal(config.namespace, 'ns', 'the namespace file is trimmed');
    assert.equal(await config.tokenSource!.token(), TOKEN, 'the token is trimmed');
    assert.doesNotThrow(() => new X509Certificate(config.ca!));
  });

  for (const [missing, env] of [
    ['KUBERNETES_SERVICE_HOST', { KUBERNETES_SERVICE_PORT: '443' }],
    ['KUBERNETES_SERVICE_PORT', { KUBERNETES_SERVICE_HOST: '10.96.0.1' }],
    ['KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT', { KUBERNETES_SERVICE_HOST: '', KUBERNETES_SERVICE_PORT: '' }],
  ] as const) {
    test(`${missing} unset: client-go's ErrNotInCluster text, naming what is unset`, async () => {
      const dir = await serviceAccountDir();
      const err = await configError({ env, serviceAccountDir: dir });
      assert.ok(
        err.message.startsWith(
          'unable to load in-cluster configuration, KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be defined',
        ),
        err.message,
      );
      assert.ok(err.message.includes(`(${missing} unset;`), err.message);
      assert.equal(err.path, undefined, 'a setting, not a file');
    });
  }

  test('a port that is not a number is refused', async () => {
    const err = await configError({ env: { ...clusterEnv, KUBERNETES_SERVICE_PORT: 'https' }, serviceAccountDir: await serviceAccountDir() });
    assert.match(err.message, /KUBERNETES_SERVICE_PORT must be a port number, got "https"/);
  });

  test('missing token file: names the file', async () => {
    const dir = await serviceAccountDir({ token: undefined });
    const err = await configError({ env: clusterEnv, serviceAccountDir: dir });
    assert.equal(err.message, `service-account token file ${join(dir, 'token')} is missing`);
    assert.equal(err.path, join(dir, 'token'));
  });

  test('empty token file: names the file', async () => {
    const dir = await serviceAccountDir({ token: '\n' });
    const err = await configError({ env: clusterEnv, serviceAccountDir: dir });
    assert.equal(err.message, `service-account token file ${join(dir, 'token')} is empty`);
  });

  test('missing CA: an error (client-go would silently fall back to the system roots)', async () => {
    const dir = await serviceAccountDir({ ca: undefined });
    const err = await configError({ env: clusterEnv, serviceAccountDir: dir });
    assert.equal(err.message, `CA file ${join(dir, 'ca.crt')} is missing`);
    assert.equal(err.path, join(dir, 'ca.crt'));
  });

  test('a CA that is not PEM: names the file and what was expected', async () => {
    const dir = await serviceAccountDir({ ca: 'not a certificate\n' });
    const err = await configError({ env: clusterEnv, serviceAccountDir: dir });
    assert.equal(err.message, `CA file ${join(dir, 'ca.crt')} holds no PEM certificate (expected "-----BEGIN CERTIFICATE-----")`);
  });

  test('a PEM block that is not a certificate: cannot be parsed', async () => {
    const dir = await serviceAccountDir({ ca: '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n' });
    const err = await configError({ env: clusterEnv, serviceAccountDir: dir });
    assert.equal(err.message, `CA file ${join(dir, 'ca.crt')} holds a certificate that cannot be parsed`);
  });

  test('missing namespace file: the namespace is unknown, and start-up goes on', async () => {
    const dir = await serviceAccountDir({ namespace: undefined });
    const config = await loadConfig({ env: clusterEnv, serviceAccountDir: dir });
    assert.equal(config.namespace, undefined);
    assert.equal(await config.tokenSource!.token(), TOKEN);
  });

  test('an empty namespace file: names the file', async () => {
    const dir = await serviceAccountDir({ namespace: ' \n' });
    const err = await configError({ env: clusterEnv, serviceAccountDir: dir });
    assert.equal(err.message, `namespace file ${join(dir, 'namespace')} is empty`);
    assert.equal(err.path, join(dir, 'namespace'));
  });

  test('POD_NAMESPACE wins over the namespace file (which may then be absent)', async () => {
    const withFile = await serviceAccountDir({ namespace: 'other' });
    assert.equal((await loadConfig({ env: { ...clusterEnv, POD_NAMESPACE: 'ns' }, serviceAccountDir: withFile })).namespace, 'ns');
    const withoutFile = await serviceAccountDir({ namespace: undefined });
    assert.equal((await loadConfig({ env: { ...clusterEnv, POD_NAMESPACE: 'ns' }, serviceAccountDir: withoutFile })).namespace, 'ns');
  });

  test('the namespace option wins over POD_NAMESPACE', async () => {
    const dir = await serviceAccountDir();
    const config = await loadConfig({ env: { ...clusterEnv, POD_NAMESPACE: 'other' }, serviceAccountDir: dir, namespace: 'mine' });
    assert.equal(config.namespace, 'mine');
  });

  test('a namespace that is not a valid name is refused', async () => {
    const dir = await serviceAccountDir({ namespace: 'Not/A/Namespace' });
    const err = await rejection(() => loadConfig({ env: clusterEnv, serviceAccountDir: dir }));
    assert.equal(err.name, 'InvalidNameError');
    assert.match(err.message, /invalid pod namespace "Not\/A\/Namespace"/);
  });

  test('an IPv6 host is bracketed, as Go\'s net.JoinHostPort', async () => {
    const dir = await serviceAccountDir();
    const config = await loadConfig({ env: { KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '443' }, serviceAccountDir: dir });
    assert.equal(config.server, 'https://[fd00::1]:443');
    assert.equal(serverUrl('[fd00::1]', '6443'), 'https://[fd00::1]:6443');
    assert.equal(serverUrl('10.0.0.1', '443'), 'https://10.0.0.1:443');
    assert.equal(serverUrl('kubernetes.default.svc', '443'), 'https://kubernetes.default.svc:443');
  });

  test('SPOT_SERVICEACCOUNT_DIR moves the folder, and errors say so', async () => {
    const dir = await serviceAccountDir();
    const config = await loadConfig({ env: { ...clusterEnv, SPOT_SERVICEACCOUNT_DIR: dir } });
    assert.equal(config.ca, CA);
    const empty = await serviceAccountDir({ token: undefined });
    const err = await configError({ env: { ...clusterEnv, SPOT_SERVICEACCOUNT_DIR: empty } });
    assert.equal(err.message, `service-account token file ${join(empty, 'token')} is missing (folder from SPOT_SERVICEACCOUNT_DIR)`);
  });

  test('the serviceAccountDir option wins over SPOT_SERVICEACCOUNT_DIR', async () => {
    const good = await serviceAccountDir();
    const broken = await serviceAccountDir({ token: undefined, ca: undefined, namespace: undefined });
    const config = await loadConfig({ env: { ...clusterEnv, SPOT_SERVICEACCOUNT_DIR: broken }, serviceAccountDir: good });
    assert.equal(config.namespace, 'ns');
  });

  test('without an override the standard folder is named, with a hint', { skip: existsSync(DEFAULT_SERVICEACCOUNT_DIR) && 'running in a pod' }, async () => {
    const err = await configError({ env: clusterEnv });
    assert.ok(
      err.message.startsWith(`service-account token file ${DEFAULT_SERVICEACCOUNT_DIR}/token is missing`) ||
        err.message.startsWith(`CA file ${DEFAULT_SERVICEACCOUNT_DIR}/ca.crt is missing`),
      err.message,
    );
    assert.match(err.message, /\(mount a service-account token in the pod, or set SPOT_SERVICEACCOUNT_DIR\)$/);
  });
});

describe('explicit server', () => {
  for (const server of ['http://10.0.0.1:8080', 'http://kubernetes.example.com', 'http://192.168.1.10:8001']) {
    test(`plain http to a non-loopback host is refused: ${server}`, async () => {
      const err = await configError({ server, token: TOKEN, env: {} });
      assert.match(err.message, /^refusing plain http to /);
      assert.equal(err.path, undefined, 'a setting, not a file');
    });
  }

  for (const [server, origin] of [
    ['http://127.0.0.1:8001', 'http://127.0.0.1:8001'],
    ['http://localhost:8001/', 'http://localhost:8001'],
    ['http://[::1]:8001', 'http://[::1]:8001'],
    ['https://kubernetes.example.com:6443', 'https://kubernetes.example.com:6443'],
  ] as const) {
    test(`allowed: ${server}`, async () => {
      const config = await loadConfig({ server, env: {} });
      assert.equal(config.server, origin);
      assert.equal(config.tokenSource, undefined, 'no token: kubectl proxy adds its own');
      assert.equal(config.namespace, 'default');
    });
  }

  test('a URL with a path, a query or another scheme is refused', async () => {
    for (const server of ['https://k8s.example.com/api', 'https://k8s.example.com?x=1', 'ftp://k8s.example.com', 'not a url']) {
      const err = await configError({ server, env: {} });
      assert.match(err.message, /invalid server URL/);
    }
  });

  test('token, token file and CA file', async () => {
    const dir = await serviceAccountDir();
    const fixed = await loadConfig({ server: 'https://k8s.example.com', token: ` ${TOKEN} `, env: { POD_NAMESPACE: 'ns' } });
    assert.equal(await fixed.tokenSource!.token(), TOKEN);
    assert.equal(fixed.namespace, 'ns');
    const fromFile = await loadConfig({ server: 'https://k8s.example.com', tokenFile: join(dir, 'token'), caFile: join(dir, 'ca.crt'), env: {} });
    assert.equal(await fromFile.tokenSource!.token(), TOKEN);
    assert.equal(fromFile.ca, CA);
  });

  test('an empty token is refused', async () => {
    const err = await configError({ server: 'https://k8s.example.com', token: '  ', env: {} });
    assert.equal(err.message, 'the token given is empty');
  });

  test('the token never appears in an error, even when its file is given as the CA', async () => {
    const dir = await serviceAccountDir();
    const err = await configError({ server: 'https://k8s.example.com', token: TOKEN, caFile: join(dir, 'token'), env: {} });
    assert.match(err.message, /holds no PEM certificate/);
  });
});
