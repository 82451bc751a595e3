/**
 * How spot-run becomes one ESM file with undici inlined: shared by `npm run build` (which adds
 * minification and a source map) and the tests that run the command from a bundle of the current
 * sources (the tsx entry takes seconds to start, a bundle a fraction of one).
 */
import type { BuildOptions } from 'esbuild';

/**
 * undici is CommonJS: inside an ESM bundle esbuild turns its `require('node:…')` calls into a shim
 * that throws "Dynamic require of … is not supported" unless a real `require` is in scope. The
 * import is aliased so that it cannot collide with a `createRequire` the bundled code imports
 * itself (the banner is opaque text to esbuild, which cannot rename around it).
 */
export const REQUIRE_SHIM = [
  "import { createRequire as __spotCreateRequire } from 'node:module';",
  'const require = __spotCreateRequire(import.meta.url);',
].join('\n');

export function spotRunBundleOptions(root: string, entry: string, outfile: string): BuildOptions {
  return {
    absWorkingDir: root,
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    banner: { js: REQUIRE_SHIM },
    logLevel: 'warning',
  };
}
