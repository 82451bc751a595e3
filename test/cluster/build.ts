/**
 * `npm run cluster:build`: builds kube-apiserver, etcd and kubectl from the Go module in this
 * folder (versions pinned in go.mod) into `.cache/cluster/<versions>-<hash>/`, and does nothing
 * when that folder already holds them. The hash covers go.mod, go.sum and every .go file here, so
 * a changed pin or main gets a new folder; an interrupted build never leaves a half-filled one
 * (it builds into a temp folder renamed into place).
 */
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

export const MODULE_DIR = fileURLToPath(new URL('.', import.meta.url));
export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const CACHE_ROOT = join(ROOT, '.cache', 'cluster');
/** The mains in this module; each becomes a binary of the same name. */
export const COMMANDS = ['kube-apiserver', 'etcd', 'kubectl'] as const;
export type Command = (typeof COMMANDS)[number];

export interface PinnedVersions {
  kubernetes: string;
  etcd: string;
}

/** The versions go.mod requires (the module's own pins, not what a binary reports). */
export function pinnedVersions(goMod = readFileSync(join(MODULE_DIR, 'go.mod'), 'utf8')): PinnedVersions {
  const version = (module: string) => {
    const m = new RegExp(`^\\s*${module.replace(/[.]/g, '\\.')}\\s+(v\\S+)`, 'm').exec(goMod);
    if (!m) throw new Error(`test/cluster/go.mod does not require ${module}`);
    return m[1]!;
  };
  return { kubernetes: version('k8s.io/kubernetes'), etcd: version('go.etcd.io/etcd/server/v3') };
}

function goFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir).sort()) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) out.push(...goFiles(path));
    else if (entry.endsWith('.go')) out.push(path);
  }
  return out;
}

/**
 * `go build` flags. The -X flags stamp the version that a release build's Makefile would (without
 * them the server reports v0.0.0-master on /version and kubectl warns about the skew).
 */
function buildArgs(out: string): string[] {
  const { kubernetes } = pinnedVersions();
  const [major, minor] = kubernetes.replace(/^v/, '').split('.');
  const stamp = ['k8s.io/component-base/version', 'k8s.io/client-go/pkg/version'].flatMap((pkg) => [
    `-X ${pkg}.gitVersion=${kubernetes}`,
    `-X ${pkg}.gitMajor=${major}`,
    `-X ${pkg}.gitMinor=${minor}`,
    `-X ${pkg}.gitTreeState=clean`,
  ]);
  return ['build', '-trimpath', `-ldflags=-s -w ${stamp.join(' ')}`, '-o', `${out}/`, ...COMMANDS.map((c) => `./${c}`)];
}

/** Where the binaries for the current sources live (whether or not they are built yet). */
export function binaryDir(): string {
  const hash = createHash('sha256');
  hash.update(buildArgs('').join(' ')).update('\0');
  for (const file of ['go.mod', 'go.sum'].map((f) => join(MODULE_DIR, f)).concat(goFiles(MODULE_DIR))) {
    hash.update(relative(MODULE_DIR, file)).update('\0').update(readFileSync(file)).update('\0');
  }
  const v = pinnedVersions();
  return join(CACHE_ROOT, `kubernetes-${v.kubernetes}_etcd-${v.etcd}_${hash.digest('hex').slice(0, 12)}`);
}

export type Binaries = Record<Command, string> & { dir: string };

function binariesIn(dir: string): Binaries {
  return { dir, ...(Object.fromEntries(COMMANDS.map((c) => [c, join(dir, c)])) as Record<Command, string>) };
}

/** The built binaries, or undefined when `npm run cluster:build` has not run for these sources. */
export function builtBinaries(): Binaries | undefined {
  const b = binariesIn(binaryDir());
  return COMMANDS.every((c) => existsSync(b[c])) ? b : undefined;
}

/** The binaries, or an error that says how to build them. */
export function requireBinaries(): Binaries {
  const b = builtBinaries();
  if (!b) throw new Error(`kube-apiserver/etcd/kubectl are not built for test/cluster's go.mod: run \`npm run cluster:build\` (needs Go; first build takes minutes)`);
  return b;
}

/** Builds the binaries unless they are there; resolves to where they are. */
export async function buildBinaries(log: (line: string) => void = () => {}): Promise<{ binaries: Binaries; built: boolean; seconds: number }> {
  const existing = builtBinaries();
  if (existing) return { binaries: existing, built: false, seconds: 0 };
  const dir = binaryDir();
  try {
    await promisify(execFile)('go', ['version']);
  } catch {
    throw new Error('`go` is not on PATH: the conformance suite builds kube-apiserver and etcd from source with Go (see test/cluster/go.mod for the version)');
  }
  await mkdir(CACHE_ROOT, { recursive: true });
  const tmp = `${dir}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  const started = Date.now();
  log(`building ${COMMANDS.join(', ')} (${Object.entries(pinnedVersions()).map(([k, v]) => `${k} ${v}`).join(', ')}) into ${relative(ROOT, dir)}`);
  try {
    await new Promise<void>((resolve, reject) => {
      const child = spawn('go', buildArgs(tmp), {
        cwd: MODULE_DIR,
        env: { ...process.env, CGO_ENABLED: '0', GOFLAGS: `${process.env.GOFLAGS ?? ''} -mod=readonly`.trim() },
        stdio: ['ignore', 'inherit', 'inherit'],
      });
      child.on('error', reject);
      child.on('close', (code, signal) => (code === 0 ? resolve() : reject(new Error(`go build failed (${signal ?? `exit ${code}`}); its output is above`))));
    });
    await rename(tmp, dir);
    // Binaries of earlier pins or mains are ~190 MB each and never used again.
    for (const entry of readdirSync(CACHE_ROOT)) {
      if (join(CACHE_ROOT, entry) !== dir && !entry.includes('.tmp-')) await rm(join(CACHE_ROOT, entry), { recursive: true, force: true });
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  const seconds = Math.round((Date.now() - started) / 1000);
  return { binaries: binariesIn(dir), built: true, seconds };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  buildBinaries((line) => console.log(line)).then(
    ({ binaries, built, seconds }) => {
      for (const c of COMMANDS) {
        console.log(`${c.padEnd(15)} ${(statSync(binaries[c]).size / 1e6).toFixed(1).padStart(6)} MB  ${relative(ROOT, binaries[c])}`);
      }
      console.log(built ? `built in ${seconds} s` : 'already built for these sources (nothing to do)');
    },
    (err: Error) => {
      console.error(`cluster:build: ${err.message}`);
      process.exitCode = 1;
    },
  );
}
