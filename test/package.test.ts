/**
 * The image path, proved the way an image would run it: build, then run the command from a scratch
 * folder that holds only what the Dockerfile copies (dist/, package.json, a production install),
 * and the single-file bundle from a folder that holds nothing else. No tsx, no dev dependencies.
 */
import { strict as assert } from 'node:assert';
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startApiServer, type ApiServer } from '../scripts/apiserver/server.js';
import { ROOT, runCli } from './support/cli.js';

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string; dependencies: Record<string, string> };

describe('built command, outside the source tree', { timeout: 240_000 }, () => {
  let scratch: string;
  let lone: string;
  let server: ApiServer;

  before(async () => {
    execFileSync(process.execPath, ['--import', 'tsx', 'scripts/build.ts'], { cwd: ROOT, stdio: 'pipe' });
    scratch = mkdtempSync(join(tmpdir(), 'spot-scratch-'));
    cpSync(join(ROOT, 'dist'), join(scratch, 'dist'), { recursive: true });
    for (const f of ['package.json', 'package-lock.json']) cpSync(join(ROOT, f), join(scratch, f));
    const install = spawnSync('npm', ['ci', '--omit=dev', '--no-audit', '--no-fund', '--ignore-scripts'], {
      cwd: scratch,
      encoding: 'utf8',
    });
    assert.equal(install.status, 0, `npm ci --omit=dev failed:\n${install.stderr}`);
    lone = mkdtempSync(join(tmpdir(), 'spot-bundle-'));
    cpSync(join(ROOT, 'dist', 'spot-run.mjs'), join(lone, 'spot-run.mjs'));
    server = await startApiServer();
  });

  after(async () => {
    await server?.stop();
    for (const dir of [scratch, lone]) if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('the production install holds undici and nothing else', () => {
    assert.deepEqual(Object.keys(pkg.dependencies), ['undici']);
    const installed = readdirSync(join(scratch, 'node_modules')).filter((n) => !n.startsWith('.'));
    assert.deepEqual(installed, ['undici']);
  });

  const variants = [
    { label: 'dist/ with production node_modules', entry: () => join(scratch, 'dist', 'scripts', 'spot-run.js'), cwd: () => scratch },
    { label: 'the single-file bundle alone', entry: () => join(lone, 'spot-run.mjs'), cwd: () => lone },
  ];

  for (const v of variants) {
    test(`${v.label}: --version`, async () => {
      const r = await runCli(['--version'], { entry: v.entry(), cwd: v.cwd() });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `spot-run ${pkg.version}\n`);
    });

    test(`${v.label}: a short run against the local API server`, async () => {
      const name = v.entry().endsWith('.mjs') ? 'bundle-build' : 'dist-build';
      server.createBuild({ name });
      const before = server.requests.length;
      const r = await runCli(
        ['--step', 'Compiling=echo compiled', '--step', 'Pushing Image=echo registry.example.com/app:1 > "$SPOT_RESULTS_DIR/image-url"'],
        { entry: v.entry(), cwd: v.cwd(), env: { ...server.env(), BUILD_REFERENCE: `${server.namespace}/${name}` } },
      );
      assert.equal(r.code, 0, r.stderr);
      const stored = server.getBuild(server.namespace, name)!;
      assert.equal(stored.status?.phase, 'Done');
      assert.deepEqual(
        stored.status?.conditions?.map((c) => [c.type, c.status]),
        [
          ['Compiling', 'Success'],
          ['Pushing Image', 'Success'],
        ],
      );
      assert.equal(stored.status?.image?.url, 'registry.example.com/app:1');
      // 1 GET + 3 status writes + 2 events.
      assert.equal(server.requests.length - before, 6);
    });
  }

  test('npm pack ships only what runs', () => {
    const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, encoding: 'utf8' });
    const files = (JSON.parse(out) as Array<{ files: Array<{ path: string }> }>)[0]!.files.map((f) => f.path);
    assert.ok(files.includes('dist/lib/index.js') && files.includes('dist/lib/index.d.ts'), files.join(' '));
    assert.ok(files.includes('dist/scripts/spot-run.js'), 'the bin is shipped');
    // Source maps and the single-file bundle are image artifacts (the Dockerfile builds them), not package content.
    const stray = files.filter(
      (f) => !/^(dist\/(lib\/.*\.(js|d\.ts)|scripts\/spot-run\.(js|d\.ts)|scripts\/spot-run\/[a-z-]+\.js)|package\.json|README\.md|LICENSE)$/.test(f),
    );
    assert.deepEqual(stray, []);
  });
});
