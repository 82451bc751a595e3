/**
 * Turns the benchmark's TypeScript jobs into what each contender runs, under dist/bench/ (rebuilt
 * on every run, never committed):
 *
 *   dist/bench/jobs/*.js              each job compiled alone (esbuild, no bundling): imports stay
 *                                     as written, so `../../lib/index.js` is dist/lib/index.js
 *                                     and `undici` / `@kubernetes/client-node` come from node_modules.
 *   dist/bench/spot-runtime.bundle.mjs  the spot-runtime job as one file, lib and undici inlined and
 *                                     minified: the same esbuild settings as dist/spot-run.mjs.
 */
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';
import { ROOT } from './paths.js';

const JOBS_SRC = join(ROOT, 'bench', 'jobs');
export const JOBS_OUT = join(ROOT, 'dist', 'bench', 'jobs');
export const BUNDLE = join(ROOT, 'dist', 'bench', 'spot-runtime.bundle.mjs');

/**
 * As in scripts/build.ts: undici is CommonJS, and inside an ESM bundle its `require('node:…')`
 * calls need a real `require` in scope.
 */
const REQUIRE_BANNER = [
  "import { createRequire as __spotCreateRequire } from 'node:module';",
  'const require = __spotCreateRequire(import.meta.url);',
].join('\n');

export async function compileJobs(): Promise<void> {
  rmSync(join(ROOT, 'dist', 'bench'), { recursive: true, force: true });
  const common = { absWorkingDir: ROOT, platform: 'node', format: 'esm', target: 'node20', logLevel: 'warning' } as const;
  await build({
    ...common,
    entryPoints: readdirSync(JOBS_SRC)
      .filter((file) => file.endsWith('.ts'))
      .map((file) => join(JOBS_SRC, file)),
    outdir: JOBS_OUT,
    bundle: false,
  });
  await build({
    ...common,
    entryPoints: [join(JOBS_SRC, 'spot-runtime.ts')],
    outfile: BUNDLE,
    bundle: true,
    minify: true,
    treeShaking: true,
    banner: { js: REQUIRE_BANNER },
  });
}
