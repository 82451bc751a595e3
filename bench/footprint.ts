/**
 * Production footprint, measured the way a user would meet it: `npm pack` (the tarball npm would
 * publish or fetch), then a production install (`npm install --omit=dev`) into an empty scratch
 * project, counting every package that lands in node_modules and the bytes of its files.
 *
 * Also installs @kubernetes/client-node@2 the same way and tries to import it, to show on this
 * Node version why the comparison uses 1.4.0.
 */
import { spawn } from 'node:child_process';
import { lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const CLIENT_NODE_VERSION = '1.4.0';

export interface Footprint {
  /** `npm pack` tarball size in bytes. */
  packBytes: number;
  /** Bytes of every file under the scratch project's node_modules. */
  installedBytes: number;
  /** Packages in node_modules, the package itself included. */
  packages: number;
}

export interface Footprints {
  spot: Footprint;
  clientNode: Footprint;
  /** The one-file bundle (dist/spot-run.mjs) needs no install at all: its size. */
  bundleBytes: number;
  /** What happened when client-node 2.x was imported here. */
  clientNode2: string;
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command asynchronously (the local API server may be serving in this process). */
function run(command: string, args: readonly string[], cwd: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

async function npm(args: readonly string[], cwd: string): Promise<string> {
  const result = await run('npm', [...args, '--no-audit', '--no-fund', '--loglevel=error'], cwd);
  if (result.code !== 0) throw new Error(`npm ${args.join(' ')} (in ${cwd}) exited ${result.code}:\n${result.stderr.slice(-2000)}`);
  return result.stdout;
}

/** Apparent size of every regular file under `dir` (symlinks counted as links, not followed). */
function treeBytes(dir: string): number {
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    total += entry.isDirectory() ? treeBytes(path) : lstatSync(path).size;
  }
  return total;
}

/**
 * `npm pack` of `spec` (a folder or a registry spec) into `dest`; its tarball's path and size.
 * Scripts off: the snapshot's dist/ is the build being measured, and the package's `prepare`
 * (a rebuild) needs sources the snapshot does not hold.
 */
async function pack(spec: string, dest: string): Promise<{ file: string; bytes: number }> {
  const [info] = JSON.parse(await npm(['pack', spec, '--json', '--ignore-scripts', '--pack-destination', dest], dest)) as Array<{
    filename: string;
    size: number;
  }>;
  if (!info) throw new Error(`npm pack ${spec} reported nothing`);
  return { file: join(dest, info.filename), bytes: info.size };
}

/** A production install of `spec` into a new scratch project; what landed in node_modules. */
async function install(spec: string, scratch: string): Promise<{ installedBytes: number; packages: number; dir: string }> {
  const dir = mkdtempSync(join(scratch, 'install-'));
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'scratch', version: '1.0.0', private: true, type: 'module' }));
  await npm(['install', '--omit=dev', '--prefer-offline', spec], dir);
  const lock = JSON.parse(readFileSync(join(dir, 'package-lock.json'), 'utf8')) as { packages: Record<string, unknown> };
  return {
    installedBytes: treeBytes(join(dir, 'node_modules')),
    packages: Object.keys(lock.packages).filter((key) => key.startsWith('node_modules/')).length,
    dir,
  };
}

/** Installs client-node 2.x and imports it: on Node 20 it fails while loading undici 8. */
async function tryClientNode2(scratch: string): Promise<string> {
  const { dir } = await install('@kubernetes/client-node@2', scratch);
  const version = (JSON.parse(readFileSync(join(dir, 'node_modules/@kubernetes/client-node/package.json'), 'utf8')) as { version: string }).version;
  const undici = JSON.parse(readFileSync(join(dir, 'node_modules/undici/package.json'), 'utf8')) as { version: string; engines?: { node?: string } };
  const result = await run(process.execPath, ['--input-type=module', '-e', "await import('@kubernetes/client-node')"], dir);
  const what = `@kubernetes/client-node ${version} (undici ${undici.version}, engines.node ${undici.engines?.node ?? 'unset'}) on Node ${process.version}`;
  if (result.code === 0) return `${what}: imports fine`;
  const error = result.stderr.split('\n').find((line) => /^\w*Error\b/.test(line)) ?? result.stderr.trim().split('\n').pop();
  const where = result.stderr.match(/node_modules\/(undici\/[^\s:)]+)/)?.[1];
  return `${what}: import fails with "${error}"${where ? ` in ${where}` : ''}`;
}

/** `workspace`: the snapshot of the package (bench/workspace.ts), packed as npm would publish it. */
export async function measureFootprints(workspace: string): Promise<Footprints> {
  const scratch = mkdtempSync(join(tmpdir(), 'spot-bench-footprint-'));
  try {
    // Independent npm calls, run side by side: this phase is timed by nobody.
    const [spotPack, clientNodePack] = await Promise.all([pack(workspace, scratch), pack(`@kubernetes/client-node@${CLIENT_NODE_VERSION}`, scratch)]);
    const [spotInstall, clientNodeInstall, clientNode2] = await Promise.all([
      install(spotPack.file, scratch),
      install(clientNodePack.file, scratch),
      tryClientNode2(scratch),
    ]);
    return {
      spot: { packBytes: spotPack.bytes, installedBytes: spotInstall.installedBytes, packages: spotInstall.packages },
      clientNode: { packBytes: clientNodePack.bytes, installedBytes: clientNodeInstall.installedBytes, packages: clientNodeInstall.packages },
      bundleBytes: lstatSync(join(workspace, 'dist', 'spot-run.mjs')).size,
      clientNode2,
    };
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}
