/**
 * A service-account folder laid out exactly as the kubelet writes projected volumes
 * (pkg/volume/util/atomic_writer.go): the files live in a timestamped folder `..<time>`, a
 * `..data` symlink points at it, and `token`, `ca.crt`, `namespace` are symlinks through
 * `..data`. An update writes a new timestamped folder and swaps `..data` with one rename, so a
 * reader sees the old set or the new set, never a mix.
 */
import { mkdir, readlink, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface ServiceAccountFiles {
  token: string;
  caPem: string;
  namespace: string;
}

const FILES = { token: 'token', caPem: 'ca.crt', namespace: 'namespace' } as const;

let sequence = 0;
function timestamped(): string {
  // ..2026_11_28_19_30_00.123456789 as the kubelet names them; the sequence keeps two writes in one ms apart.
  const t = new Date().toISOString().replace(/[-:T]/g, '_').replace(/\.(\d+)Z$/, (_, ms: string) => `.${ms}${String(sequence++ % 1e6).padStart(6, '0')}`);
  return `..${t}`;
}

async function writeVersion(dir: string, files: ServiceAccountFiles): Promise<string> {
  const name = timestamped();
  await mkdir(join(dir, name), { mode: 0o755 });
  await Promise.all(
    Object.entries(FILES).map(([key, file]) => writeFile(join(dir, name, file), files[key as keyof ServiceAccountFiles], { mode: 0o600 })),
  );
  return name;
}

/** Creates the folder with its first version. */
export async function writeServiceAccountFolder(dir: string, files: ServiceAccountFiles): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const version = await writeVersion(dir, files);
  await symlink(version, join(dir, '..data'));
  for (const file of Object.values(FILES)) await symlink(join('..data', file), join(dir, file));
}

/** Writes a new version and swaps `..data` to it atomically, then removes the old version. */
export async function updateServiceAccountFolder(dir: string, files: ServiceAccountFiles): Promise<void> {
  const old = await readlink(join(dir, '..data'));
  const version = await writeVersion(dir, files);
  await symlink(version, join(dir, '..data_tmp'));
  await rename(join(dir, '..data_tmp'), join(dir, '..data'));
  await rm(join(dir, old), { recursive: true, force: true });
}
