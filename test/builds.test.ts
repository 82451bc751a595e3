import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import { applyCondition } from '../lib/conditions.js';
import { ApiError, isConflict, isInvalid, isNotFound, ResponseError } from '../lib/errors.js';
import { buildRef } from '../lib/names.js';
import type { Build } from '../lib/types.js';
import { StaticTokenSource } from '../lib/token.js';
import { createTransport } from '../lib/transport.js';
import { createFixture, FAST_RETRY, loadFixture, rejection, replyBody, TEST_SERVER, TEST_TOKEN, withFixture } from './support/fixtures.js';

const ref = buildRef('ns', 'b1');
const BUILDS = '/apis/spot.release.com/v1alpha1/namespaces/ns/builds/b1';

describe('getBuild', () => {
  test('GETs the Build with the bearer token and returns it as stored', async () => {
    await withFixture('get-build', async (client) => {
      const build = await client.getBuild(ref);
      assert.deepEqual(build, replyBody(loadFixture('get-build'), 0));
    });
  });

  test('a missing Build is an ApiError NotFound carrying the Status details', async () => {
    await withFixture('get-build-not-found', async (client) => {
      const err = await rejection(() => client.getBuild(ref));
      assert.ok(err instanceof ApiError, String(err));
      assert.ok(isNotFound(err), String(err));
      assert.equal(err.reason, 'NotFound');
      assert.equal(err.serverMessage, 'builds.spot.release.com "b1" not found');
      assert.deepEqual(err.details, { name: 'b1', group: 'spot.release.com', kind: 'builds' });
      assert.equal(err.message, `404 NotFound: builds.spot.release.com "b1" not found (GET ${BUILDS})`);
    });
  });

  test('a missing CRD (no route) is told apart from a missing Build by its details', async () => {
    await withFixture('get-build-crd-missing', async (client) => {
      const err = await rejection(() => client.getBuild(ref));
      assert.ok(err instanceof ApiError && isNotFound(err), String(err));
      assert.equal(err.details, undefined);
      assert.match(err.message, /the server could not find the requested resource/);
    });
  });

  test('a reference that is not a valid name never reaches a URL', async () => {
    await withFixture([], async (client) => {
      const err = await rejection(() => client.getBuild({ namespace: 'ns', name: '../secrets' }));
      assert.equal(err.name, 'InvalidNameError');
    });
  });
});

describe('replaceBuildStatus', () => {
  test('PUTs apiVersion, kind, metadata with the resourceVersion, and status (no spec) to /status', async () => {
    const exchanges = loadFixture('replace-build-status');
    await withFixture(exchanges, async (client) => {
      const build = replyBody<Build>(loadFixture('get-build'), 0);
      build.status = {
        phase: 'Done',
        conditions: [{ type: 'Building Image', status: 'Success', lastTransitionTime: '2025-06-01T10:05:00Z', reason: 'Succeeded' }],
      };
      const stored = await client.replaceBuildStatus(build);
      assert.equal(stored.metadata.resourceVersion, '1002');
      assert.equal(stored.status?.phase, 'Done');
    });
  });

  test('a stale resourceVersion is a Conflict, not retried by the PUT itself', async () => {
    await withFixture('replace-build-status-conflict', async (client) => {
      const build = replyBody<Build>(loadFixture('get-build'), 0);
      build.status = replyBody<Build>(loadFixture('replace-build-status'), 0).status!;
      const err = await rejection(() => client.replaceBuildStatus(build));
      assert.ok(isConflict(err), String(err));
    });
  });

  test('without a resourceVersion nothing is sent: custom resources refuse unconditional updates', async () => {
    await withFixture([], async (client) => {
      const build = replyBody<Build>(loadFixture('get-build'), 0);
      delete build.metadata.resourceVersion;
      const err = await rejection(() => client.replaceBuildStatus(build));
      assert.ok(err instanceof TypeError, String(err));
      assert.match(err.message, /resourceVersion/);
    });
  });
});

describe('patchBuildStatus', () => {
  const mergeStatus = replyBody<{ status: Record<string, unknown> }>(loadFixture('patch-build-status-merge'), 0).status;

  test('merge: application/merge-patch+json, with metadata.resourceVersion as the precondition', async () => {
    await withFixture('patch-build-status-merge', async (client) => {
      const stored = await client.patchBuildStatus(ref, { status: mergeStatus }, { type: 'merge', resourceVersion: '1001' });
      assert.equal(stored.metadata.resourceVersion, '1002');
    });
  });

  test('merge without a resourceVersion sends the patch as given', async () => {
    await withFixture('patch-build-status-merge-unconditional', async (client) => {
      await client.patchBuildStatus(ref, { status: { phase: 'Running' } }, { type: 'merge' });
    });
  });

  test('json: application/json-patch+json, the precondition is a leading replace of /metadata/resourceVersion', async () => {
    await withFixture('patch-build-status-json', async (client) => {
      const stored = await client.patchBuildStatus(ref, [{ op: 'replace', path: '/status/phase', value: 'Done' }], {
        type: 'json',
        resourceVersion: '1001',
      });
      assert.equal(stored.status?.phase, 'Done');
    });
  });

  test('a patch of the wrong shape for its type is refused before sending', async () => {
    await withFixture([], async (client) => {
      await assert.rejects(client.patchBuildStatus(ref, { status: {} }, { type: 'json' }), TypeError);
      await assert.rejects(client.patchBuildStatus(ref, [], { type: 'merge' }), TypeError);
    });
  });

  test('422 Invalid keeps the causes and is not retried', async () => {
    await withFixture('patch-build-status-invalid', async (client) => {
      const err = await rejection(() =>
        client.patchBuildStatus(ref, { status: { phase: 'Finished' } }, { type: 'merge', resourceVersion: '1001' }),
      );
      assert.ok(err instanceof ApiError && isInvalid(err), String(err));
      assert.equal(err.details?.causes?.[0]?.field, 'status.phase');
      assert.equal(err.details?.kind, 'Build');
    });
  });
});

describe('updateBuildStatus', () => {
  const succeeded = (build: Build) =>
    applyCondition(
      build.status!,
      { type: 'Building Image', status: 'Success', reason: 'Succeeded', message: 'image pushed' },
      new Date('2025-06-01T10:05:00Z'),
    );

  test('two 409 Conflicts, then success: re-read and re-applied each time, the operator\'s fields kept', async () => {
    const exchanges = loadFixture('update-build-status-conflicts');
    await withFixture(exchanges, async (client, { requests }) => {
      const seen: string[] = [];
      const stored = await client.updateBuildStatus(ref, (build) => {
        seen.push(build.metadata.resourceVersion!);
        succeeded(build);
      });
      assert.deepEqual(seen, ['1001', '1002', '1003'], 'mutate runs on each fresh read');
      assert.equal(stored.metadata.resourceVersion, '1004');
      // The fixture already checked each body exactly; spell out what the last write carried.
      const last = requests.at(-1)!.body as { status: { conditions: Array<{ type: string }> }; metadata: unknown };
      assert.deepEqual(
        last.status.conditions.map((c) => c.type),
        ['Building Image', 'Pod Deployment'],
      );
      assert.deepEqual(last.metadata, { resourceVersion: '1003' });
      assert.ok(!('pod' in last.status), 'status.pod is not rewritten, so the operator\'s value stays');
      assert.deepEqual(stored.status?.pod, { namespace: 'ns', name: 'b1-build-7x9k2', ip: '10.1.2.3' });
      assert.equal(stored.status?.image?.url, 'registry.example.com/team/app:3f2c1a9');
    });
  });

  test('gives up after maxAttempts conflicts with the Conflict error', async () => {
    await withFixture('update-build-status-conflict-exhausted', async (client) => {
      const err = await rejection(() => client.updateBuildStatus(ref, succeeded, { maxAttempts: 2 }));
      assert.ok(isConflict(err), String(err));
    });
  });

  test('writes nothing when the mutation changes nothing', async () => {
    await withFixture('update-build-status-no-change', async (client) => {
      const stored = await client.updateBuildStatus(ref, (build) => {
        build.status!.phase = 'Running';
      });
      assert.equal(stored.metadata.resourceVersion, '1001');
    });
  });

  test('with a base Build the first GET is skipped', async () => {
    const exchanges = loadFixture('update-build-status-conflicts').slice(1);
    const base = replyBody<Build>(loadFixture('update-build-status-conflicts'), 0);
    await withFixture(exchanges, async (client) => {
      const stored = await client.updateBuildStatus(ref, succeeded, { base });
      assert.equal(stored.metadata.resourceVersion, '1004');
    });
  });

  test('a non-conflict error is thrown at once, without re-reading', async () => {
    const [get] = loadFixture('update-build-status-conflicts');
    const [invalid] = loadFixture('patch-build-status-invalid');
    await withFixture([get!, invalid!], async (client) => {
      const err = await rejection(() =>
        client.updateBuildStatus(ref, (build) => {
          build.status!.phase = 'Finished' as never;
        }),
      );
      assert.ok(isInvalid(err), String(err));
    });
  });
});

describe('a strategic merge patch on a custom resource (recorded from kube-apiserver)', () => {
  test('is 415 UnsupportedMediaType naming the accepted types, and not retried', async () => {
    const fixture = createFixture('patch-build-status-strategic');
    const transport = createTransport({ server: TEST_SERVER, tokenSource: new StaticTokenSource(TEST_TOKEN), dispatcher: fixture.agent, retry: FAST_RETRY });
    try {
      const err = await rejection(() =>
        transport.request({ method: 'PATCH', path: `${BUILDS}/status`, body: { status: { phase: 'Done' } }, contentType: 'application/strategic-merge-patch+json' }),
      );
      assert.ok(err instanceof ApiError, String(err));
      assert.equal(err.statusCode, 415);
      assert.equal(err.reason, 'UnsupportedMediaType');
      assert.match(err.serverMessage, /accepted media types include: application\/json-patch\+json, application\/merge-patch\+json/);
      fixture.assertDone();
    } finally {
      await transport.close();
      await fixture.close();
    }
  });
});

describe('answers that are not the Build asked for', () => {
  test('each is a ResponseError naming the problem and the request', async () => {
    await withFixture('answers-not-a-build', async (client) => {
      const problems: RegExp[] = [
        /not a Build \(apiVersion "v1", kind "ConfigMap"\)/,
        /the answer is Build ns\/b2, not ns\/b1/,
        /expected a JSON answer, got text\/html; charset=utf-8: "<!doctype html><html><body>Please log in<\/body><\/html>"/,
        /malformed JSON in the answer/,
        /status\.conditions that is not a list/,
        /no metadata\.resourceVersion/,
      ];
      for (const problem of problems) {
        const err = await rejection(() => client.getBuild(ref));
        assert.ok(err instanceof ResponseError, `${err.name}: ${err.message}`);
        assert.equal(err.code, 'ERR_SPOT_RESPONSE');
        assert.equal(err.statusCode, 200);
        assert.match(err.message, problem);
        assert.ok(err.message.endsWith(`(GET ${BUILDS})`), err.message);
      }
    });
  });
});
