/**
 * The results folder (lib/results.ts): `imageFromResults`, the pure rule that turns the result
 * files' text into `status.image` (issue 11: `image-digest` beside `image-url`, a url pinned by
 * `@sha256:<64 hex>` filling the digest), and what a step's folder yields end to end. The hostile
 * folders are in steps-security.test.ts.
 */
import { strict as assert } from 'node:assert';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { TaskFailure } from '../lib/errors.js';
import { silentLogger } from '../lib/log.js';
import { imageFromResults, MAX_RESULT_BYTES, RESULT_FILES } from '../lib/results.js';
import { runStep } from '../lib/steps.js';

const DIGEST = `sha256:${'4f'.repeat(32)}`;
const PINNED = `registry.example.com/team/app@${DIGEST}`;

describe('imageFromResults (pure)', () => {
  test('url and digest from their files, trimmed', () => {
    assert.deepEqual(imageFromResults({ url: ' registry.example.com/team/app:1.0.0\n', digest: `${DIGEST}\n` }, 'Push'), {
      url: 'registry.example.com/team/app:1.0.0',
      digest: DIGEST,
    });
  });

  test('a url pinned by @sha256:<64 hex> fills the digest when there is no image-digest', () => {
    assert.deepEqual(imageFromResults({ url: `${PINNED}\n` }, 'Push'), { url: PINNED, digest: DIGEST });
  });

  test('the image-digest file wins over the pinned url; an empty one does not count', () => {
    assert.deepEqual(imageFromResults({ url: PINNED, digest: 'sha512:abcdef' }, 'Push'), { url: PINNED, digest: 'sha512:abcdef' });
    assert.deepEqual(imageFromResults({ url: PINNED, digest: '  \n' }, 'Push'), { url: PINNED, digest: DIGEST });
  });

  test('a digest alone, metadata alone, or nothing at all', () => {
    assert.deepEqual(imageFromResults({ digest: DIGEST }, 'Push'), { digest: DIGEST });
    assert.deepEqual(imageFromResults({ metadata: '{"builder":"kaniko"}' }, 'Push'), { metadata: { builder: 'kaniko' } });
    assert.equal(imageFromResults({}, 'Push'), undefined);
    assert.equal(imageFromResults({ url: ' \n', metadata: '' }, 'Push'), undefined);
  });

  test('an image-digest that is not a digest, or metadata that is not an object of strings: InvalidResult', () => {
    assert.throws(
      () => imageFromResults({ digest: 'latest' }, 'Push'),
      (err: unknown) => err instanceof TaskFailure && err.reason === 'InvalidResult' && err.message === 'Push wrote image-digest, which must be a digest such as sha256:<64 hex>',
    );
    assert.throws(
      () => imageFromResults({ metadata: '{"layers":3}' }, 'Push'),
      (err: unknown) => err instanceof TaskFailure && err.message === 'Push wrote image-metadata, which must be a JSON object of strings',
    );
  });

  test('the file names and the size bound', () => {
    assert.deepEqual({ ...RESULT_FILES }, { imageUrl: 'image-url', imageDigest: 'image-digest', imageMetadata: 'image-metadata' });
    assert.equal(MAX_RESULT_BYTES, 4096);
  });
});

describe('a step\'s results folder, end to end', () => {
  let scratch: string;
  before(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'spot-results-test-'));
  });
  after(async () => {
    await rm(scratch, { recursive: true, force: true });
  });
  const run = (command: string) =>
    runStep({ type: 'Push', command }, new AbortController().signal, silentLogger, { stdout: () => {}, stderr: () => {}, resultsParent: scratch });

  test('image-url and image-digest both land in status.image', async () => {
    const result = await run(`echo registry.example.com/team/app:1.0.0 > "$SPOT_RESULTS_DIR/image-url"; echo ${DIGEST} > "$SPOT_RESULTS_DIR/image-digest"`);
    assert.deepEqual(result, { status: { image: { url: 'registry.example.com/team/app:1.0.0', digest: DIGEST } } });
  });

  test('a pinned image-url alone fills the digest', async () => {
    assert.deepEqual(await run(`echo ${PINNED} > "$SPOT_RESULTS_DIR/image-url"`), { status: { image: { url: PINNED, digest: DIGEST } } });
  });

  test('a step that removes its results folder reports nothing, and does not fail for it', async () => {
    assert.deepEqual(await run('rm -rf "$SPOT_RESULTS_DIR"'), {});
  });
});
