/**
 * How spot-run becomes one file with undici inlined: shared by `npm run build` (which adds
 * minification and a source map), the tests that run the command from a bundle of the current
 * sources (the tsx entry takes seconds to start, a bundle a fraction of one) and the bench's
 * bundled job. Two formats of the same recipe:
 *
 *   esm   dist/spot-run.mjs: runs on any Node >= 20.18.1 as it is.
 *   cjs   dist/spot-run.cjs: the same, and what `node --build-snapshot` takes (it runs CommonJS
 *         only) to make a V8 startup snapshot for one Node binary (README, "Start-up snapshot").
 */
import { readFile } from 'node:fs/promises';
import type { BuildOptions, Plugin } from 'esbuild';

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

/**
 * Three of undici's module-level requires, made lazy in the bundle (package.json pins undici
 * exactly, and a rewrite that no longer matches fails the build):
 *
 * - dispatcher/client.js loads client-h2.js, and with it node:http2 (~4 ms), for HTTP/2, which
 *   only an Agent with `allowH2` negotiates; spot-run's never does. It now loads on first use.
 * - dispatcher/client.js reads node:http's `maxHeaderSize` and core/util.js its `IncomingMessage`
 *   at load. They are now read when first needed (the first Client, destroying a response).
 *   node:http cannot be part of a V8 startup snapshot ("global handle not serialized", Node 20 to
 *   24), so this is what lets undici be loaded when the snapshot is built; the ESM bundle loads
 *   node:http at the first request instead of at start, which costs nothing either way.
 */
const UNDICI_REWRITES: Record<string, Array<[from: string, to: string]>> = {
  'lib/dispatcher/client.js': [
    ["const http = require('node:http')\n", ''],
    [
      `const getDefaultNodeMaxHeaderSize = http &&
  http.maxHeaderSize &&
  Number.isInteger(http.maxHeaderSize) &&
  http.maxHeaderSize > 0
  ? () => http.maxHeaderSize
  : () => { throw new InvalidArgumentError('http module not available or http.maxHeaderSize invalid') }`,
      `const getDefaultNodeMaxHeaderSize = () => {
  const { maxHeaderSize } = require('node:http')
  if (Number.isInteger(maxHeaderSize) && maxHeaderSize > 0) return maxHeaderSize
  throw new InvalidArgumentError('http module not available or http.maxHeaderSize invalid')
}`,
    ],
    ["const connectH2 = require('./client-h2.js')", "const connectH2 = (...args) => require('./client-h2.js')(...args)"],
  ],
  'lib/core/util.js': [
    ["const { IncomingMessage } = require('node:http')\n", ''],
    ['constructor === IncomingMessage)', "constructor === require('node:http').IncomingMessage)"],
  ],
};

export const lazyUndiciRequires: Plugin = {
  name: 'lazy-undici-requires',
  setup(build) {
    build.onLoad({ filter: /[\\/]node_modules[\\/]undici[\\/]lib[\\/](dispatcher[\\/]client|core[\\/]util)\.js$/ }, async (args) => {
      const path = args.path.replaceAll('\\', '/');
      const [file, rewrites] = Object.entries(UNDICI_REWRITES).find(([name]) => path.endsWith(`/undici/${name}`))!;
      let source = await readFile(args.path, 'utf8');
      for (const [from, to] of rewrites) {
        if (source.split(from).length !== 2) {
          throw new Error(`undici/${file} no longer holds ${JSON.stringify(from.split('\n', 1)[0])} exactly once: update UNDICI_REWRITES in scripts/bundle-options.ts for this undici version`);
        }
        source = source.replace(from, to);
      }
      return { contents: source, loader: 'js' };
    });
  },
};

export type BundleFormat = 'esm' | 'cjs';

export function spotRunBundleOptions(root: string, entry: string, outfile: string, format: BundleFormat = 'esm'): BuildOptions {
  return {
    absWorkingDir: root,
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    format,
    target: 'node20',
    // CommonJS has a `require` of its own.
    ...(format === 'esm' ? { banner: { js: REQUIRE_SHIM } } : {}),
    plugins: [lazyUndiciRequires],
    logLevel: 'warning',
  };
}
