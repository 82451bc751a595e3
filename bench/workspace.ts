/**
 * A private snapshot of what is measured, in a temp folder laid out like the repository, so that a
 * `npm run build` or an edit to lib/ in the working tree during the run changes nothing under
 * measurement:
 *
 *   package.json, README.md, dist/         copies (dist/ as built: what `npm pack` publishes)
 *   lib/*.ts, bench/jobs/*.ts              copies of the sources (the tsx contender runs these)
 *   dist/bench/jobs/*.js                   each job compiled alone (esbuild, no bundling): imports
 *                                          stay as written, so `../../lib/index.js` is dist/lib
 *   dist/bench/spot-runtime.bundle.mjs     the spot-runtime job as one file, lib and undici inlined
 *                                          and minified: the recipe of dist/spot-run.mjs
 *   dist/bench/spot-runtime.blob           the same as CommonJS (dist/spot-run.cjs's recipe), made
 *                                          into a V8 startup snapshot by this node, as the README
 *                                          tells an image to do with dist/spot-run.cjs
 *   node_modules -> the repository's       so `undici`, `tsx` and `@kubernetes/client-node` resolve
 *
 * Children run with the snapshot as their working directory; paths below are relative to it.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';
import { spotRunBundleOptions } from '../scripts/bundle-options.js';
import { ROOT } from './paths.js';

export const JOBS_DIR = 'dist/bench/jobs';
export const BUNDLE = 'dist/bench/spot-runtime.bundle.mjs';
export const SNAPSHOT_BLOB = 'dist/bench/spot-runtime.blob';


export async function createWorkspace(): Promise<string> {
  const root = mkdtempSync(join(tmpdir(), 'spot-bench-'));
  try {
    for (const file of ['package.json', 'README.md']) if (existsSync(join(ROOT, file))) cpSync(join(ROOT, file), join(root, file));
    cpSync(join(ROOT, 'dist'), join(root, 'dist'), { recursive: true, filter: (path) => !path.startsWith(join(ROOT, 'dist', 'bench')) });
    cpSync(join(ROOT, 'lib'), join(root, 'lib'), { recursive: true });
    cpSync(join(ROOT, 'bench', 'jobs'), join(root, 'bench', 'jobs'), { recursive: true });
    symlinkSync(join(ROOT, 'node_modules'), join(root, 'node_modules'), 'dir');

    const jobs = join(root, 'bench', 'jobs');
    const common = { absWorkingDir: root, platform: 'node', format: 'esm', target: 'node20', logLevel: 'warning' } as const;
    await build({
      ...common,
      entryPoints: readdirSync(jobs)
        .filter((file) => file.endsWith('.ts'))
        .map((file) => join(jobs, file)),
      outdir: join(root, JOBS_DIR),
      bundle: false,
    });
    const job = join(jobs, 'spot-runtime.ts');
    const bundled = { minify: true, treeShaking: true } as const;
    await build({ ...spotRunBundleOptions(root, job, join(root, BUNDLE)), ...bundled });
    const snapshotEntry = join(root, 'dist', 'bench', 'spot-runtime.cjs');
    await build({ ...spotRunBundleOptions(root, job, snapshotEntry, 'cjs'), ...bundled });
    const snapshot = spawnSync(process.execPath, ['--snapshot-blob', join(root, SNAPSHOT_BLOB), '--build-snapshot', snapshotEntry], {
      cwd: root,
      // As the contenders run (bench/child.ts): nothing of this process's environment leaks in.
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp' },
      encoding: 'utf8',
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    if (snapshot.status !== 0) throw new Error(`node --build-snapshot of the spot-runtime job exited ${snapshot.status ?? snapshot.signal}:\n${snapshot.stderr}`);
    return root;
  } catch (error) {
    removeWorkspace(root);
    throw error;
  }
}

export function removeWorkspace(root: string): void {
  rmSync(root, { recursive: true, force: true });
}
