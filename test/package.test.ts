/**
 * What ships, proved the way it is used:
 * - the image path: build, then run the command from a scratch folder that holds only what the
 *   Dockerfile copies (dist/, package.json, a production install), and the single-file bundle from
 *   a folder that holds nothing else. No tsx, no dev dependencies.
 * - the npm package: from a clean checkout, `npm pack` and `npm install git+file://...` (last test).
 */
import { strict as assert } from 'node:assert';
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
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
});

/**
 * The package as a user meets it, from a checkout that holds only what git tracks (no dist/, no
 * build left behind by the tests above): `npm pack` must build it (the `prepare` script), the
 * tarball must install into an empty project and import from JavaScript and type-check from
 * TypeScript, and `npm install git+file://...` must do the same. One test, so the checkout, the
 * pack and each install happen once.
 *
 * The checkout is the working tree's tracked and unignored files committed into a fresh
 * repository, so uncommitted edits are what is tested, as the next commit would hold them.
 */
const execFileAsync = promisify(execFile);

/** Runs a command, rejecting with its stderr on failure; stdout when it succeeds. */
async function sh(command: string, args: string[], cwd: string): Promise<string> {
  try {
    const { stdout } = await execFileAsync(command, args, { cwd, encoding: 'utf8', maxBuffer: 16 * 1024 * 1024, timeout: 120_000 });
    return stdout;
  } catch (error) {
    const e = error as { stderr?: string; message: string };
    throw new Error(`${command} ${args.join(' ')} (in ${cwd}) failed: ${e.message}\n${(e.stderr ?? '').slice(-3000)}`);
  }
}

const NPM_QUIET = ['--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'];

/** A scratch project that depends on nothing yet. */
function emptyProject(parent: string, name: string): string {
  const dir = join(parent, name);
  mkdirSync(dir);
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name, version: '1.0.0', private: true, type: 'module' }));
  return dir;
}

/** What a JavaScript user gets from `import ... from 'spot-runtime'` and the bin, in `project`. */
async function useFromJavaScript(project: string): Promise<void> {
  const script = [
    "import { createClient, parseBuildReference, runTasks, VERSION } from 'spot-runtime';",
    "const ref = parseBuildReference('workspace-a/sample-build');",
    'console.log(JSON.stringify({ ref, createClient: typeof createClient, runTasks: typeof runTasks, VERSION }));',
  ].join('\n');
  const out = JSON.parse(await sh(process.execPath, ['--input-type=module', '-e', script], project)) as Record<string, unknown>;
  assert.deepEqual(out, {
    ref: { namespace: 'workspace-a', name: 'sample-build' },
    createClient: 'function',
    runTasks: 'function',
    VERSION: pkg.version,
  });
  assert.equal(await sh(join(project, 'node_modules', '.bin', 'spot-run'), ['--version'], project), `spot-run ${pkg.version}\n`);
}

/** Type-checks a consumer under one module resolution; tsc's diagnostics on failure. */
async function typeCheck(project: string, moduleResolution: 'nodenext' | 'bundler'): Promise<void> {
  const config = join(project, `tsconfig.${moduleResolution}.json`);
  writeFileSync(
    config,
    JSON.stringify({
      compilerOptions: {
        strict: true,
        noEmit: true,
        target: 'ES2022',
        module: moduleResolution === 'nodenext' ? 'nodenext' : 'esnext',
        moduleResolution,
        // The package's own .d.ts files are checked too, not taken on trust.
        skipLibCheck: false,
        // A TypeScript project on Node has @types/node; undici's types (and so ours) need it.
        types: ['node'],
        typeRoots: [join(ROOT, 'node_modules', '@types')],
      },
      files: ['consumer.ts'],
    }),
  );
  await sh(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', config], project);
}

const CONSUMER_TS = `
import { createClient, isApiError, parseBuildReference, runTasks, type Build, type BuildRef } from 'spot-runtime';

export const ref: BuildRef = parseBuildReference('workspace-a/sample-build');
// @ts-expect-error a reference is parsed from a string: proves the types are real, not any
parseBuildReference(42);
export function statusCode(error: unknown): number | undefined {
  return isApiError(error) ? error.statusCode : undefined;
}
export type Status = Build['status'];
export const run: typeof runTasks = runTasks;
export const connect: typeof createClient = createClient;
`;

test('a clean checkout packs, installs and imports as a package (npm pack and git+file)', { timeout: 240_000 }, async () => {
  const scratch = mkdtempSync(join(tmpdir(), 'spot-clean-'));
  try {
    // The checkout: tracked and unignored files only, committed into a fresh repository.
    const checkout = join(scratch, 'checkout');
    const listed = (await sh('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], ROOT)).split('\0').filter(Boolean);
    for (const file of listed) {
      if (!existsSync(join(ROOT, file))) continue; // deleted in the working tree
      mkdirSync(dirname(join(checkout, file)), { recursive: true });
      cpSync(join(ROOT, file), join(checkout, file));
    }
    assert.equal(existsSync(join(checkout, 'dist')), false, 'the checkout must not hold a build');
    const git = (...args: string[]) => sh('git', ['-c', 'user.name=test', '-c', 'user.email=test@example.com', '-c', 'commit.gpgsign=false', ...args], checkout);
    await git('init', '--quiet');
    await git('add', '--all');
    await git('commit', '--quiet', '--no-verify', '-m', 'checkout');
    // The development install `npm ci` would make, borrowed (after the commit: git would track the
    // link): the point is what `npm pack` does with a checkout that has never been built.
    symlinkSync(join(ROOT, 'node_modules'), join(checkout, 'node_modules'));

    // npm pack: `prepare` builds; --json must stay parseable (the build reports on stderr).
    const packs = join(scratch, 'packs');
    mkdirSync(packs);
    const [packed] = JSON.parse(await sh('npm', ['pack', '--json', '--pack-destination', packs, '--loglevel=error'], checkout)) as Array<{
      filename: string;
      size: number;
      unpackedSize: number;
      files: Array<{ path: string }>;
    }>;
    assert.ok(packed, 'npm pack reported a tarball');
    const shipped = packed.files.map((f) => f.path).sort();
    // The library's JavaScript (its entry and the chunk it shares with the bin: esbuild names it by
    // a hash of its content), every library module's declarations, the bin, and the package's own
    // files; nothing else (no source maps, no image bundle, no sources).
    const modules = readdirSync(join(checkout, 'lib')).filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts') && !f.endsWith('.test.ts'));
    const chunks = shipped.filter((f) => /^dist\/lib\/chunk-[A-Z0-9]+\.js$/.test(f));
    assert.equal(chunks.length, 1, `one shared chunk: ${shipped.join(', ')}`);
    const expected = [
      'LICENSE',
      'README.md',
      'package.json',
      'dist/scripts/spot-run.d.ts',
      'dist/scripts/spot-run.js',
      'dist/lib/index.js',
      ...chunks,
      ...modules.map((f) => `dist/lib/${f.replace(/\.ts$/, '.d.ts')}`),
    ].sort();
    assert.deepEqual(shipped, expected);

    // The tarball, into an empty project.
    const fromTarball = emptyProject(scratch, 'from-tarball');
    await sh('npm', ['install', ...NPM_QUIET, join(packs, packed.filename)], fromTarball);
    const installed = join(fromTarball, 'node_modules', 'spot-runtime');
    assert.deepEqual(readdirSync(join(fromTarball, 'node_modules')).filter((n) => !n.startsWith('.')).sort(), ['spot-runtime', 'undici']);
    assert.match(readFileSync(join(installed, 'LICENSE'), 'utf8'), /^\s*Apache License\s+Version 2\.0, January 2004\b[\s\S]*END OF TERMS AND CONDITIONS/);
    for (const file of shipped.filter((f) => f.endsWith('.js'))) {
      for (const [, url] of readFileSync(join(installed, file), 'utf8').matchAll(/[#@] sourceMappingURL=(\S+)/g)) {
        assert.ok(existsSync(join(installed, dirname(file), url!)), `${file} points at ${url}, which the package does not ship`);
      }
    }
    writeFileSync(join(fromTarball, 'consumer.ts'), CONSUMER_TS);
    // The two type-checks and the git install are independent; run them side by side.
    const fromGit = emptyProject(scratch, 'from-git');
    await Promise.all([
      useFromJavaScript(fromTarball),
      typeCheck(fromTarball, 'nodenext'),
      typeCheck(fromTarball, 'bundler'),
      // npm clones the repository, installs its dev dependencies and runs `prepare`, as for any git dependency.
      sh('npm', ['install', ...NPM_QUIET, `git+file://${checkout}`], fromGit).then(() => useFromJavaScript(fromGit)),
    ]);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
});
