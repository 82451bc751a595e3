/**
 * What a step hands back through its results folder (`$SPOT_RESULTS_DIR`): the image it built.
 * The folder is written by the step, which is untrusted: a result file may be a symbolic link to
 * the service-account token, a device that never ends, a named pipe that blocks whoever opens it,
 * or just too big. Each file is opened without following links and without blocking, must be a
 * regular file of at most MAX_RESULT_BYTES, and must hold no secret or masked value; anything else
 * fails the step with reason `InvalidResult` before a byte of it is sent anywhere.
 *
 * Reading (I/O) and turning the files into `status.image` (`imageFromResults`, pure) are apart.
 */
import { constants, type Stats } from 'node:fs';
import { lstat, open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { TaskFailure } from './errors.js';
import { redact } from './secrets.js';
import type { BuildStatus } from './types.js';

export const RESULT_FILES = Object.freeze({ imageUrl: 'image-url', imageDigest: 'image-digest', imageMetadata: 'image-metadata' });

/** The most a result file may hold; the whole status write is bounded by these (issue 12). */
export const MAX_RESULT_BYTES = 4096;

/** An OCI content digest, `algorithm:encoded` (image-spec descriptor.md). */
const DIGEST = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;
/** A reference pinned by digest, `...@sha256:<64 hex>`, as registries and `docker push` print it. */
const PINNED_SHA256 = /@(sha256:[0-9a-f]{64})$/;

/** The result files' contents as read, each undefined when the step did not write it. */
export interface ResultFiles {
  url?: string;
  digest?: string;
  metadata?: string;
}

function invalid(type: string, name: string, why: string): TaskFailure {
  return new TaskFailure('InvalidResult', `${type}'s result file ${name} ${why}`);
}

/**
 * The image digest a step reported: its `image-digest` file (trimmed) when it wrote one, else the
 * digest an `image-url` pinned by `@sha256:<64 hex>` ends with, else undefined. Throws a
 * `TaskFailure` when the file holds something that is not a digest.
 */
export function imageDigest(url: string | undefined, digestFile: string | undefined, type: string): string | undefined {
  const given = digestFile?.trim();
  if (given) {
    if (!DIGEST.test(given)) throw new TaskFailure('InvalidResult', `${type} wrote ${RESULT_FILES.imageDigest}, which must be a digest such as sha256:<64 hex>`);
    return given;
  }
  return url?.trim().match(PINNED_SHA256)?.[1];
}

/**
 * `status.image` from a step's result files: `url` (trimmed), `digest` (see imageDigest) and
 * `metadata` (a JSON object of strings); undefined when there is nothing to report. Throws a
 * `TaskFailure` (`InvalidResult`) for a digest or metadata that is not one.
 */
export function imageFromResults(files: ResultFiles, type: string): NonNullable<BuildStatus['image']> | undefined {
  const image: NonNullable<BuildStatus['image']> = {};
  const url = files.url?.trim();
  if (url) image.url = url;
  const digest = imageDigest(files.url, files.digest, type);
  if (digest !== undefined) image.digest = digest;
  if (files.metadata !== undefined && files.metadata.trim() !== '') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(files.metadata);
    } catch {
      parsed = undefined;
    }
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed) || !Object.values(parsed).every((v) => typeof v === 'string')) {
      throw new TaskFailure('InvalidResult', `${type} wrote ${RESULT_FILES.imageMetadata}, which must be a JSON object of strings`);
    }
    image.metadata = parsed as Record<string, string>;
  }
  return Object.keys(image).length ? image : undefined;
}

/** What a result file is when it is not a regular file, for the message. */
function kind(stat: Stats): string {
  if (stat.isDirectory()) return 'a folder';
  if (stat.isFIFO()) return 'a named pipe';
  if (stat.isCharacterDevice() || stat.isBlockDevice()) return 'a device';
  if (stat.isSocket()) return 'a socket';
  return 'not a regular file';
}

/** One result file's text, or undefined when the step did not write it. */
async function readResultFile(dir: string, name: string, type: string): Promise<string | undefined> {
  let handle: FileHandle;
  try {
    // O_NOFOLLOW: a link is refused, never followed (to the token, to /dev/zero). O_NONBLOCK: a
    // named pipe opens at once instead of waiting for a writer, and is then refused below.
    handle = await open(join(dir, name), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    // Linux answers ELOOP for a link under O_NOFOLLOW (the BSDs EMLINK).
    if (code === 'ELOOP' || code === 'EMLINK') throw invalid(type, name, 'is a symbolic link: result files must be regular files');
    throw invalid(type, name, `cannot be read (${code ?? (err as Error).message})`);
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw invalid(type, name, `is ${kind(stat)}: result files must be regular files`);
    if (stat.size > MAX_RESULT_BYTES) throw invalid(type, name, `holds ${stat.size} bytes: at most ${MAX_RESULT_BYTES} are accepted`);
    // One byte more than the bound: a file that grew after the check is caught too.
    const buffer = Buffer.alloc(MAX_RESULT_BYTES + 1);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    if (bytesRead > MAX_RESULT_BYTES) throw invalid(type, name, `holds more than ${MAX_RESULT_BYTES} bytes: at most ${MAX_RESULT_BYTES} are accepted`);
    const text = buffer.toString('utf8', 0, bytesRead);
    // Never shown, never sent: the value is not in the message either. A masked value (a registry
    // credential the step may use) counts too: status.image is read by anyone who can read Builds.
    if (redact(text) !== text) throw invalid(type, name, 'holds a secret of this run (a credential or a masked value): it is not reported');
    return text;
  } finally {
    await handle.close();
  }
}

/** The results folder as it was created: a step may replace it (with a link elsewhere) before it is read. */
export interface FolderIdentity {
  dev: number;
  ino: number;
}

export async function folderIdentity(dir: string): Promise<FolderIdentity> {
  const { dev, ino } = await lstat(dir);
  return { dev, ino };
}

/**
 * Reads a step's results folder into the status it reports (`{ image }`), or undefined when it
 * wrote nothing. `identity` is the folder as created: if the step put something else (a link to
 * another folder) in its place, nothing is read. Throws a `TaskFailure` (`InvalidResult`).
 */
export async function readResults(dir: string, type: string, identity: FolderIdentity): Promise<Partial<BuildStatus> | undefined> {
  const now = await lstat(dir).catch(() => undefined);
  if (!now) return undefined;
  if (!now.isDirectory() || now.dev !== identity.dev || now.ino !== identity.ino) {
    throw new TaskFailure('InvalidResult', `${type} replaced its results folder ($SPOT_RESULTS_DIR): nothing in it is read`);
  }
  // One after another: a refusal names the first bad file, whatever the timing.
  const files: ResultFiles = {};
  const url = await readResultFile(dir, RESULT_FILES.imageUrl, type);
  const digest = await readResultFile(dir, RESULT_FILES.imageDigest, type);
  const metadata = await readResultFile(dir, RESULT_FILES.imageMetadata, type);
  if (url !== undefined) files.url = url;
  if (digest !== undefined) files.digest = digest;
  if (metadata !== undefined) files.metadata = metadata;
  const image = imageFromResults(files, type);
  return image ? { image } : undefined;
}
