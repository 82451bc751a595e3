/**
 * `npm run build`: turns the TypeScript sources into what package.json publishes.
 *
 *   dist/lib/index.js, dist/lib/chunk-*.js  the library export and the `spot-run` bin, run with the
 *   dist/scripts/spot-run.js                production node_modules (undici) beside them: esbuild,
 *                                           one module per entry plus the code they share (a chunk
 *                                           under dist/lib/), undici imported as it is installed.
 *                                           Node's ESM loader costs a process ~1 ms of start-up per
 *                                           file it loads, and lib/ is some twenty (BENCHMARKS.md,
 *                                           start-up). Not minified: readable as it is. No source
 *                                           maps: the package ships exactly these files.
 *   dist/lib/*.d.ts, dist/scripts/*.d.ts    tsc's declarations, one per module, for the types.
 *   dist/spot-run.mjs (+ .map)              the same command as one self-contained file, undici
 *                                           inlined, to copy into any image that has Node
 *                                           (20.18.1 or newer: the package's engines).
 *   dist/spot-run.cjs                       that file as CommonJS, which `node --build-snapshot`
 *                                           turns into a V8 startup snapshot for the Node binary
 *                                           that runs it (README, "Start-up snapshot"): built and
 *                                           smoke-run here with this build's node, then removed,
 *                                           since a blob only loads in the binary that made it.
 *
 * dist/ is rebuilt from scratch every time, so nothing from a deleted source file is ever
 * shipped. Each output is smoke-run with --version before the build calls itself done.
 *
 * It is also the package's `prepare` script, which npm runs for `npm pack`, `npm publish` and an
 * install from git; so the report goes to stderr, and `npm pack --json` keeps a clean stdout.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type BuildFailure } from 'esbuild';
import { REQUIRE_SHIM, spotRunBundleOptions } from './bundle-options.js';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const DIST = join(ROOT, 'dist');
const TSCONFIG = 'tsconfig.build.json';
const ENTRY = join(ROOT, 'scripts', 'spot-run.ts');
const BIN = join(DIST, 'scripts', 'spot-run.js');
const BUNDLE = join(DIST, 'spot-run.mjs');
const SNAPSHOT_ENTRY = join(DIST, 'spot-run.cjs');
const LIBRARY_ENTRY = join(ROOT, 'lib', 'index.ts');
const SMOKE_TIMEOUT_MS = 15_000;

const BANNER = `#!/usr/bin/env node\n${REQUIRE_SHIM}`;

class BuildError extends Error {}

function rel(path: string): string {
  return relative(ROOT, path) || '.';
}

function formatSize(bytes: number): string {
  return bytes < 1024 ? `${bytes} B` : `${(bytes / 1024).toFixed(1)} kB`;
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? filesUnder(join(dir, entry.name)) : [join(dir, entry.name)],
  );
}

/** The library and the bin as ESM modules that import undici from node_modules, sharing one chunk. */
async function library(): Promise<void> {
  try {
    await build({
      absWorkingDir: ROOT,
      entryPoints: [LIBRARY_ENTRY, ENTRY],
      outbase: ROOT,
      outdir: DIST,
      chunkNames: 'lib/[name]-[hash]',
      bundle: true,
      splitting: true,
      packages: 'external',
      platform: 'node',
      format: 'esm',
      target: 'node20',
      logLevel: 'warning',
    });
  } catch (error) {
    const count = (error as Partial<BuildFailure>).errors?.length;
    throw new BuildError(`esbuild could not build the library${count ? ` (${count} error${count === 1 ? '' : 's'} above)` : `: ${String(error)}`}`);
  }
}

function compile(): void {
  // The declarations (and the type check), through the project's own TypeScript, not whatever
  // `tsc` is on PATH.
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  const run = spawnSync(process.execPath, [tsc, '-p', TSCONFIG, '--pretty'], { cwd: ROOT, stdio: 'inherit' });
  if (run.error) throw new BuildError(`could not start tsc: ${run.error.message}`);
  if (run.status !== 0) {
    // tsc emits despite type errors; a half-right dist/ must not be mistaken for a build.
    rmSync(DIST, { recursive: true, force: true });
    const how = run.signal ? `was killed by ${run.signal}` : `exited ${run.status}`;
    throw new BuildError(`tsc -p ${TSCONFIG} ${how}: fix the errors above (dist/ removed)`);
  }
}

/** Every path package.json's bin and exports promise must exist, or the package is broken. */
function checkPackageEntryPoints(): void {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
    bin?: string | Record<string, string>;
    exports?: unknown;
  };
  const promised = new Set<string>();
  const bins = typeof pkg.bin === 'string' ? [pkg.bin] : Object.values(pkg.bin ?? {});
  for (const bin of bins) promised.add(bin);
  const collect = (value: unknown): void => {
    if (typeof value === 'string') {
      if (value.startsWith('./dist/')) promised.add(value);
    } else if (value && typeof value === 'object') {
      for (const nested of Object.values(value)) collect(nested);
    }
  };
  collect(pkg.exports);
  const missing = [...promised].filter((path) => !existsSync(join(ROOT, path)));
  if (missing.length > 0) {
    throw new BuildError(
      `package.json points at ${missing.join(', ')}, which the build did not produce: ` +
        `is the source missing from "include" in ${TSCONFIG}?`,
    );
  }
}

async function bundle(): Promise<void> {
  // esbuild carries the entry's own "#!" line to the top of the output; the banner must then
  // not add a second one, which would be a syntax error on line 2.
  const entryHasShebang = readFileSync(ENTRY, 'utf8').startsWith('#!');
  try {
    await build({
      ...spotRunBundleOptions(ROOT, ENTRY, BUNDLE),
      minify: true,
      treeShaking: true,
      // A separate .map plus a sourceMappingURL comment, so `node --enable-source-maps` finds it.
      sourcemap: 'linked',
      banner: { js: entryHasShebang ? REQUIRE_SHIM : BANNER },
    });
    // No source map: a process started from a snapshot runs code the snapshot holds, not this file.
    await build({ ...spotRunBundleOptions(ROOT, ENTRY, SNAPSHOT_ENTRY, 'cjs'), minify: true, treeShaking: true });
  } catch (error) {
    // esbuild has already printed its diagnostics; add which step failed.
    const count = (error as Partial<BuildFailure>).errors?.length;
    throw new BuildError(`esbuild could not bundle ${rel(ENTRY)}${count ? ` (${count} error${count === 1 ? '' : 's'} above)` : `: ${String(error)}`}`);
  }
  const firstLine = readFileSync(BUNDLE, 'utf8').split('\n', 1)[0];
  if (firstLine !== '#!/usr/bin/env node') throw new BuildError(`${rel(BUNDLE)} starts with ${JSON.stringify(firstLine)}, not a node shebang`);
}

/**
 * Loading the output is what catches a broken bundle (a require shim that throws, a duplicate
 * declaration from the banner, a missing runtime dependency); --version does nothing else. The file
 * is run as a user runs it, through its shebang and mode bits.
 */
function smoke(file: string): string {
  const run = spawnSync(file, ['--version'], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: SMOKE_TIMEOUT_MS,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (run.error || run.status !== 0) {
    const detail = run.error?.message ?? (run.stderr.trim() || `exit ${run.status ?? run.signal}`);
    throw new BuildError(`${rel(file)} --version failed: ${detail}`);
  }
  return run.stdout.trim();
}

/**
 * Builds a startup snapshot from dist/spot-run.cjs with this build's node, in a scratch folder,
 * and runs --version from it: what catches a module that cannot be part of a snapshot, or code
 * that breaks when it runs in a process started from one.
 */
function smokeSnapshot(): string {
  const dir = mkdtempSync(join(tmpdir(), 'spot-run-snapshot-'));
  try {
    const blob = join(dir, 'spot-run.blob');
    const node = (args: string[]) =>
      spawnSync(process.execPath, args, { cwd: dir, encoding: 'utf8', timeout: SMOKE_TIMEOUT_MS, stdio: ['ignore', 'pipe', 'pipe'] });
    const made = node(['--snapshot-blob', blob, '--build-snapshot', SNAPSHOT_ENTRY]);
    if (made.error || made.status !== 0) {
      throw new BuildError(`node --build-snapshot ${rel(SNAPSHOT_ENTRY)} failed: ${made.error?.message ?? (made.stderr.trim() || `exit ${made.status ?? made.signal}`)}`);
    }
    const run = node(['--snapshot-blob', blob, '--', '--version']);
    if (run.error || run.status !== 0) {
      throw new BuildError(`--version from the snapshot of ${rel(SNAPSHOT_ENTRY)} failed: ${run.error?.message ?? (run.stderr.trim() || `exit ${run.status ?? run.signal}`)}`);
    }
    return run.stdout.trim();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const started = performance.now();
  if (!existsSync(ENTRY)) throw new BuildError(`${rel(ENTRY)} does not exist: nothing to build`);

  rmSync(DIST, { recursive: true, force: true });
  compile();
  await library();
  checkPackageEntryPoints();
  await bundle();

  // npm links the bin as it is: without "#!" the shell, not node, would run it.
  if (!readFileSync(BIN, 'utf8').startsWith('#!/usr/bin/env node\n')) {
    throw new BuildError(`${rel(BIN)} has no "#!/usr/bin/env node" line: ${rel(ENTRY)} must start with one (esbuild keeps it)`);
  }
  // npm sets the bin's mode on install, but the image and `./dist/spot-run.mjs` use the files as built.
  for (const file of [BIN, BUNDLE]) chmodSync(file, 0o755);

  const versions = new Set([smoke(BIN), smoke(BUNDLE), smokeSnapshot()]);
  if (versions.size !== 1) throw new BuildError(`the builds disagree on --version: ${[...versions].join(' vs ')}`);

  const libFiles = filesUnder(join(DIST, 'lib'));
  const libBytes = libFiles.reduce((sum, file) => sum + statSync(file).size, 0);
  const rows: Array<[string, string]> = [
    [rel(BIN), formatSize(statSync(BIN).size)],
    [`${rel(join(DIST, 'lib'))}/ (${libFiles.length} files)`, formatSize(libBytes)],
    [rel(BUNDLE), formatSize(statSync(BUNDLE).size)],
    [rel(`${BUNDLE}.map`), formatSize(statSync(`${BUNDLE}.map`).size)],
    [rel(SNAPSHOT_ENTRY), formatSize(statSync(SNAPSHOT_ENTRY).size)],
  ];
  const width = Math.max(...rows.map(([name]) => name.length));
  for (const [name, size] of rows) console.error(`  ${name.padEnd(width)}  ${size.padStart(9)}`);
  console.error(`build: done in ${((performance.now() - started) / 1000).toFixed(1)} s (--version: ${[...versions][0]})`);
}

main().catch((error: unknown) => {
  if (error instanceof BuildError) {
    console.error(`build failed: ${error.message}`);
  } else {
    console.error('build failed:', error);
  }
  process.exitCode = 1;
});
