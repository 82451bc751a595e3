/**
 * Issue 13, the command fits a person's habits: -h and -v, one message style for bad flag values,
 * a repeated flag refused, --build NAME in the pod's namespace, errors that name the flag that
 * fixes them (--server, --ca-file), and configuration errors that exit 2 at once (a token that
 * cannot be sent is not retried as a network error until the deadline).
 */
import { strict as assert } from 'node:assert';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startApiServer, type ApiServer } from '../scripts/apiserver/server.js';
import { ExitCodes } from '../scripts/spot-run/exit-codes.js';
import { parseOptions } from '../scripts/spot-run/options.js';
import { ENV, options, usage } from './support/options.js';
import { bundleSpotRun, runCli, type CliOptions, type CliResult } from './support/cli.js';

describe('flags as a person types them', () => {
  test('-h and -v are --help and --version', () => {
    assert.deepEqual(parseOptions(['-h'], {}), { action: 'help' });
    assert.deepEqual(parseOptions(['-v'], {}), { action: 'version' });
    assert.deepEqual(parseOptions(['--step', 'A=true', '-h'], {}), { action: 'help' });
  });

  const refusals: Array<[string, string[], RegExp]> = [
    ['--grace -1 says what is wrong, not "ambiguous"', ['--grace', '-1'], /^--grace must be a positive number of seconds, got "-1"$/],
    ['--api-timeout -0.5', ['--api-timeout', '-0.5'], /^--api-timeout must be a positive number of seconds, got "-0.5"$/],
    ['--grace with a blank value', ['--grace', ' '], /^--grace must be a positive number of seconds, got " "$/],
    ['--log-level with a bad value names the value', ['--log-level', 'trace'], /^--log-level must be debug, info, warn or error, got "trace"$/],
    ['--step without "="', ['--step', 'make image'], /^--step must be "TYPE=COMMAND", e\.g\. "Building Image=make image", got "make image"$/],
    ['--build with a bad name', ['--build', 'default/B1'], /^--build must be \[NAMESPACE\/\]NAME, got "default\/B1": invalid Build name "B1"/],
    ['--build without its value', ['--build'], /^--build must be followed by a value, got nothing$/],
    ['--build followed by another flag', ['--build', '--step', 'A=true'], /^--build must be followed by a value, got the flag "--step"$/],
    ['--step-user that is not a number', ['--step-user', 'nobody'], /^--step-user must be UID or UID:GID \(numbers\), got "nobody"$/],
    ['--step-user root', ['--step-user', '0'], /^--step-user must not be root \(0\)/],
    ['a repeated --build', ['--build', 'team-a/b1', '--build', 'team-b/b2'], /^--build must be given once, got "team-a\/b1" and "team-b\/b2"$/],
    ['a repeated --grace', ['--grace', '5', '--grace=10'], /^--grace must be given once, got "5" and "10"$/],
    ['a repeated --server', ['--server', 'https://a:6443', '--server', 'https://b:6443'], /^--server must be given once/],
  ];
  for (const [name, argv, message] of refusals) {
    test(`refuses ${name}`, () => assert.match(usage(() => parseOptions(['--step', 'Z=true', ...argv], ENV)), message));
  }

  test('every refused flag value reads "--FLAG must be ..., got ..."', () => {
    const values: Array<[string, string]> = [
      ['--grace', 'soon'], ['--api-timeout', '0'], ['--api-deadline', '-3'], ['--log-format', 'yaml'], ['--log-level', 'loud'],
      ['--build', 'a/b/c'], ['--step', 'x'], ['--step-user', '1:x'],
    ];
    for (const [flag, value] of values) {
      assert.match(usage(() => parseOptions([flag, value, '--step', 'Z=true'], ENV)), new RegExp(`^${flag} must .*, got ${JSON.stringify(value).replace(/[/.*+?^${}()|[\]\\]/g, '\\$&')}`));
    }
  });

  test('--step repeats, as it always did; a value that starts with a dash is still a value', () => {
    const o = options(['--step', 'A=true', '--step', 'B=-x']);
    assert.deepEqual(o.stepFlags.map((s) => s.command), ['true', '-x']);
    assert.equal(options(['--step', 'A=true', '--grace', '2.5']).graceMs, 2_500);
  });

  test('--build NAME: no namespace yet (the pod\'s, known once the configuration is read); BUILD_REFERENCE stays namespace/name', () => {
    assert.deepEqual(options(['--build', 'b2', '--step', 'A=true']).ref, { namespace: undefined, name: 'b2' });
    assert.deepEqual(options(['--build', 'team/b2', '--step', 'A=true']).ref, { namespace: 'team', name: 'b2' });
    assert.match(usage(() => parseOptions(['--step', 'A=true'], { BUILD_REFERENCE: 'b2' })), /^invalid Build reference "b2".* \(from BUILD_REFERENCE\)$/);
  });

  test('--step-user UID[:GID]: the group defaults to the user', () => {
    const ownUid = process.getuid?.();
    const uid = ownUid === 1234 ? 4321 : 1234;
    assert.deepEqual(options(['--step-user', String(uid), '--step', 'A=true']).stepUser, { uid, gid: uid });
    assert.deepEqual(options(['--step-user', `${uid}:77`, '--step', 'A=true']).stepUser, { uid, gid: 77 });
    assert.equal(options(['--step', 'A=true']).stepUser, undefined);
    if (ownUid !== undefined && ownUid !== 0) {
      assert.match(usage(() => parseOptions(['--step-user', String(ownUid), '--step', 'A=true'], ENV)), /must differ from spot-run's own user/);
    }
  });
});

describe('spot-run against the local API server and without one', () => {
  let server: ApiServer;
  let bundle: string;
  let scratch: string;
  before(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'spot-habits-'));
    [server, bundle] = await Promise.all([startApiServer({ namespace: 'team-a' }), bundleSpotRun()]);
  });
  after(async () => {
    await server?.stop();
    await rm(scratch, { recursive: true, force: true });
  });
  const spotRun = (args: string[], options: CliOptions = {}): Promise<CliResult> => runCli(args, { entry: bundle, timeoutMs: 30_000, ...options });
  const context = (r: CliResult) => `exit ${r.code} in ${r.ms} ms\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;

  test('--build NAME reports on the Build of that name in the pod\'s namespace (the namespace file; POD_NAMESPACE wins)', async () => {
    server.createBuild({ namespace: 'team-a', name: 'by-name' });
    server.createBuild({ namespace: 'team-b', name: 'by-name' });
    const fromFile = await spotRun(['--build', 'by-name', '--step', 'Build=true'], { env: { ...server.env() } });
    assert.equal(fromFile.code, 0, context(fromFile));
    assert.match(fromFile.stderr, /Build team-a\/by-name/);
    assert.equal(server.getBuild('team-a', 'by-name')?.status?.phase, 'Done');
    assert.equal(server.getBuild('team-b', 'by-name')?.status?.phase, undefined);

    const fromEnv = await spotRun(['--build', 'by-name', '--step', 'Build=true'], { env: { ...server.env(), POD_NAMESPACE: 'team-b' } });
    assert.equal(fromEnv.code, 0, context(fromEnv));
    assert.equal(server.getBuild('team-b', 'by-name')?.status?.phase, 'Done');
  });

  test('--build NAME where the pod\'s namespace cannot be told: exit 2, saying to name it', async () => {
    const dir = await mkdtemp(join(scratch, 'sa-'));
    for (const file of ['token', 'ca.crt']) await copyFile(join(server.serviceAccountDir, file), join(dir, file));
    const before = server.requests.length;
    const r = await spotRun(['--build', 'by-name', '--step', 'Build=true'], { env: { ...server.env(), SPOT_SERVICEACCOUNT_DIR: dir } });
    assert.equal(r.code, ExitCodes.Usage, context(r));
    assert.match(r.stderr, /^spot-run: --build by-name names no namespace and the pod's is unknown .*: pass --build NAMESPACE\/by-name\n$/);
    assert.equal(server.requests.length, before, 'nothing was sent');
  });

  test('outside a cluster without --server: the error names --server', async () => {
    const r = await spotRun(['--build', 'default/b1', '--step', 'A=true']);
    assert.equal(r.code, ExitCodes.Usage, context(r));
    assert.match(r.stderr, /^spot-run: not in a Kubernetes pod: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set; outside a cluster pass --server URL/);
  });

  test('a TLS failure out of cluster suggests --ca-file (exit 3, at once)', async () => {
    const tokenFile = join(scratch, 'token');
    await writeFile(tokenFile, server.token);
    const r = await spotRun(['--server', server.url, '--token-file', tokenFile, '--build', 'team-a/tls', '--step', 'A=true']);
    assert.equal(r.code, ExitCodes.ReportFailed, context(r));
    assert.match(r.stderr, /\(if the server's certificate is signed by a private CA, pass that CA with --ca-file FILE\)\n$/);
    // With the wrong CA, the hint says which file to check.
    const otherCa = join(scratch, 'other-ca.crt');
    await writeFile(otherCa, await server.otherCaPem());
    const wrong = await spotRun(['--server', server.url, '--token-file', tokenFile, '--ca-file', otherCa, '--build', 'team-a/tls', '--step', 'A=true']);
    assert.equal(wrong.code, ExitCodes.ReportFailed, context(wrong));
    assert.match(wrong.stderr, new RegExp(`\\(check that --ca-file ${otherCa.replace(/[/.]/g, '\\$&')} holds the CA that signed the server's certificate\\)\\n$`));
  });

  test('a token file with a CR/LF or of 7 characters: exit 2 at once, nothing sent, the token not printed', async () => {
    for (const [name, token] of [['crlf', `${server.token}\r\nX-Injected: 1`], ['short', 'abc1234']] as const) {
      const tokenFile = join(scratch, `token-${name}`);
      await writeFile(tokenFile, token);
      const before = server.requests.length;
      const r = await spotRun(['--server', server.url, '--token-file', tokenFile, '--build', 'team-a/b1', '--step', 'A=true', '--api-deadline', '5']);
      assert.equal(r.code, ExitCodes.Usage, `${name}: ${context(r)}`);
      assert.ok(r.ms < 4_000, `${name}: took ${r.ms} ms (retried?)`);
      assert.match(r.stderr, /^spot-run: service-account token file \S+ (holds a line break at character \d+|is too short \(7 characters, at least 8\))/);
      assert.ok(!r.stderr.includes(server.token) && !r.stderr.includes('abc1234'), r.stderr);
      assert.equal(server.requests.length, before, 'nothing was sent');
    }
  });

  test('a malformed KUBERNETES_SERVICE_HOST: exit 2 at once', async () => {
    const r = await spotRun(['--build', 'team-a/b1', '--step', 'A=true', '--api-deadline', '5'], { env: { ...server.env(), KUBERNETES_SERVICE_HOST: '127.0.0.1/evil' } });
    assert.equal(r.code, ExitCodes.Usage, context(r));
    assert.ok(r.ms < 4_000, `took ${r.ms} ms (retried?)`);
    assert.match(r.stderr, /^spot-run: KUBERNETES_SERVICE_HOST must be an IP address or a host name, got "127\.0\.0\.1\/evil"\n$/);
  });
});
