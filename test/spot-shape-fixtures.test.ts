/**
 * Issue 11, the published Spot CRD replayed from fixtures (test/fixtures/run-spot-*.json): the
 * phase goes to status.stage, the server prunes conditions (and image.metadata) and answers 200,
 * and the runtime notices it on the write's answer, stops sending those fields, writes nothing
 * when nothing the CRD keeps changed, and reports each step's start and end as events instead.
 * Every request is checked field by field by the harness; no request beyond the fixture's is
 * allowed. Also: a custom resource given to the client, and getBuild from the already split parts.
 */
import { strict as assert } from 'node:assert';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { applyCondition } from '../lib/conditions.js';
import { isSpotError } from '../lib/errors.js';
import { createLogger, type Logger } from '../lib/log.js';
import { buildRef } from '../lib/names.js';
import { monitorCondition, runTasks, type Task } from '../lib/runner.js';
import { stepTask, type StepOptions } from '../lib/steps.js';
import type { Build } from '../lib/types.js';
import { loadFixture, rejection, replyBody, withFixture, type Exchange, type RecordedRequest, type WithFixtureOptions } from './support/fixtures.js';

const ref = buildRef('workspace-a', 'sample-build');
const BUILD = '/apis/spot.release.com/v1alpha1/namespaces/workspace-a/builds/sample-build';
const STATUS = `${BUILD}/status`;
const EVENTS = '/api/v1/namespaces/workspace-a/events';
const DIGEST = 'sha256:11c8d96f1ece6ebe0983ec43843f9174dd9bc3b94fe33ded894f5d9dbb6b0f78';
const POD = { name: 'sample-build-x7k2p', namespace: 'spot-system' };
const THREE = ['Fetching Source', 'Building Image', 'Pushing Image'];
/** The operator's layout: the pod (and so the client's own namespace) is spot-system, the Build is in workspace-a. */
const OPTIONS: WithFixtureOptions = { config: { namespace: 'spot-system' }, client: { events: { instance: 'sample-build-x7k2p' } } };
const CONDITIONS_LINE = "this Build's CRD does not store conditions: progress is reported in events";

let scratch: string;
before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'spot-shape-fixtures-'));
});
after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

function quietSteps(): StepOptions {
  return { stdout: () => {}, stderr: () => {}, resultsParent: scratch, killGraceMs: 200 };
}

/** A logger that keeps its lines (message only, level first). */
function capture(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  return { lines, log: createLogger({ level: 'debug', write: (line) => lines.push(line.replace(/^\S+ /, '')) }) };
}

const lines = (requests: RecordedRequest[]) => requests.map((r) => `${r.method} ${r.path}`);
type Sent = { status: Record<string, unknown>; metadata: { resourceVersion: string } };
const writes = (requests: RecordedRequest[]) => requests.filter((r) => r.method === 'PATCH').map((r) => r.body as Sent);
const eventsSent = (requests: RecordedRequest[]) =>
  requests.filter((r) => r.method === 'POST').map((r) => r.body as { type: string; reason: string; message: string; metadata: { namespace: string } });

describe('published Spot CRD: three steps that succeed', () => {
  test('stage Running to Done, image url and digest stored, status.pod intact, 2 writes (N+1 at most), progress in events', async () => {
    await withFixture(
      'run-spot-three-steps',
      async (client, { requests }) => {
        const { log, lines: logged } = capture();
        const io = quietSteps();
        const outcome = await runTasks(
          client,
          ref,
          [
            stepTask({ type: THREE[0]!, command: 'echo cloned' }, io),
            stepTask({ type: THREE[1]!, command: 'echo built' }, io),
            stepTask(
              { type: THREE[2]!, command: `echo registry.example.com/team/app:1.0.0 > "$SPOT_RESULTS_DIR/image-url"; echo ${DIGEST} > "$SPOT_RESULTS_DIR/image-digest"` },
              io,
            ),
          ],
          { log },
        );
        assert.equal(outcome.outcome, 'done');
        assert.equal(outcome.exitCode, 0);
        assert.deepEqual(outcome.build.status, {
          stage: 'Done',
          pod: POD,
          image: { url: 'registry.example.com/team/app:1.0.0', digest: DIGEST },
        });
        assert.deepEqual(lines(requests), [
          `GET ${BUILD}`,
          `PATCH ${STATUS}`,
          ...Array(6).fill(`POST ${EVENTS}`),
          `PATCH ${STATUS}`,
          `POST ${EVENTS}`,
          `POST ${EVENTS}`,
        ]);
        const sent = writes(requests);
        assert.ok(sent.length <= THREE.length + 1, `${sent.length} writes for ${THREE.length} steps`);
        assert.deepEqual(sent.map((w) => Object.keys(w.status).sort()), [['conditions'], ['image', 'stage']], 'conditions sent once, then only what the CRD keeps');
        assert.ok(sent.every((w) => !('phase' in w.status)), 'no phase written to a Build that keeps its phase in stage');
        assert.deepEqual(
          eventsSent(requests).map((e) => `${e.type} ${e.reason}`),
          ['Normal Started', ...THREE.flatMap(() => ['Normal TaskStarted', 'Normal TaskSucceeded']), 'Normal Completed'],
        );
        assert.ok(eventsSent(requests).every((e) => e.metadata.namespace === 'workspace-a'), 'every event in the Build\'s namespace, none in the pod\'s');
        assert.equal(logged.filter((l) => l.includes(CONDITIONS_LINE)).length, 1, `said once:\n${logged.join('\n')}`);
        assert.ok(logged.some((l) => l === `INFO  ${CONDITIONS_LINE}`), 'at info level');
        assert.deepEqual(client.prunedFields, ['conditions']);
      },
      OPTIONS,
    );
  });

  test('in-process tasks see the Build as stored (stage Running, no conditions) and the same requests are sent', async () => {
    await withFixture(
      'run-spot-three-steps',
      async (client, { requests }) => {
        const seen: Array<Build['status']> = [];
        const tasks: Task[] = THREE.map((type, i) => ({
          type,
          run: async ({ build }) => {
            seen.push(structuredClone(build.status));
            if (i === 2) return { status: { image: { url: 'registry.example.com/team/app:1.0.0', digest: DIGEST } } };
          },
        }));
        const outcome = await runTasks(client, ref, tasks);
        assert.equal(outcome.build?.status?.stage, 'Done');
        assert.deepEqual(seen, [0, 1, 2].map(() => ({ stage: 'Running', pod: POD })));
        assert.equal(requests.length, 11);
      },
      OPTIONS,
    );
  });
});

describe('published Spot CRD: a failing step', () => {
  test('stage Errored and a Warning event with the exit code and stderr; step 3 never runs', async () => {
    await withFixture(
      'run-spot-step-fails',
      async (client, { requests }) => {
        const io = quietSteps();
        let thirdRan = false;
        const outcome = await runTasks(client, ref, [
          stepTask({ type: THREE[0]!, command: 'true' }, io),
          stepTask({ type: THREE[1]!, command: 'echo "npm ERR! missing script: build" >&2; exit 3' }, io),
          {
            type: THREE[2]!,
            run: async () => {
              thirdRan = true;
            },
          },
        ]);
        assert.equal(thirdRan, false);
        assert.equal(outcome.outcome, 'failed');
        assert.equal(outcome.exitCode, 1);
        assert.deepEqual(outcome.build.status, { stage: 'Errored', pod: POD });
        assert.deepEqual(writes(requests).map((w) => w.status), [
          { conditions: writes(requests)[0]!.status.conditions },
          { stage: 'Errored' },
        ]);
        const last = eventsSent(requests).at(-1)!;
        assert.equal(`${last.type} ${last.reason}`, 'Warning StepFailed');
        assert.match(last.message, /exit code 3; last stderr lines:\nnpm ERR! missing script: build$/);
      },
      OPTIONS,
    );
  });
});

describe('published Spot CRD: fields the schema prunes', () => {
  test('image.metadata pruned from one write is not sent again; each pruned field is said once', async () => {
    const { log, lines: logged } = capture();
    await withFixture(
      'run-spot-pruned-fields',
      async (client, { requests }) => {
        const outcome = await runTasks(
          client,
          ref,
          [
            { type: 'Building Image', run: async () => ({ status: { image: { url: 'registry.example.com/team/app:1.0.0', metadata: { builder: 'buildkit' } } } }) },
            { type: 'Pushing Image', run: async () => ({ status: { image: { url: 'registry.example.com/team/app:1.0.0', digest: DIGEST } } }) },
          ],
          { log },
        );
        assert.equal(outcome.outcome, 'done');
        assert.deepEqual(outcome.build.status, { stage: 'Done', pod: POD, image: { url: 'registry.example.com/team/app:1.0.0', digest: DIGEST } });
        assert.equal(writes(requests).length, 3, 'N+1 writes for 2 steps: the image changed in the middle one');
        assert.deepEqual(client.prunedFields, ['conditions', 'image.metadata']);
        const said = logged.filter((l) => l.includes('does not store'));
        assert.deepEqual(said, [
          "DEBUG this Build's CRD does not store status.conditions: left out of later writes",
          `INFO  ${CONDITIONS_LINE}`,
          "INFO  this Build's CRD does not store status.image.metadata: left out of later writes",
        ]);
      },
      { ...OPTIONS, client: { ...OPTIONS.client, logger: log } },
    );
  });

  test('a conflict on a pruned Build re-reads and re-applies once, without re-sending pruned fields or looping', async () => {
    const base = replyBody<Build>(loadFixture('run-spot-three-steps'), 0);
    const fresh = structuredClone(base);
    fresh.metadata.resourceVersion = '3005';
    const stored = structuredClone(fresh);
    stored.metadata.resourceVersion = '3006';
    stored.status = { ...stored.status, stage: 'Done' };
    const conflict = {
      kind: 'Status',
      apiVersion: 'v1',
      status: 'Failure',
      message: 'Operation cannot be fulfilled on builds.spot.release.com "sample-build": the object has been modified; please apply your changes to the latest version and try again',
      reason: 'Conflict',
      details: { name: 'sample-build', group: 'spot.release.com', kind: 'builds' },
      code: 409,
    };
    const exchanges: Exchange[] = [
      { comment: 'write 1: the conditions, pruned', request: { method: 'PATCH', path: STATUS, body: { status: { conditions: '<any>' }, metadata: { resourceVersion: '3001' } } }, reply: { status: 200, body: base } },
      { comment: 'write 2 meets the operator\'s write in between', request: { method: 'PATCH', path: STATUS, body: { status: { stage: 'Done' }, metadata: { resourceVersion: '3001' } } }, reply: { status: 409, body: conflict } },
      { comment: 're-read', request: { method: 'GET', path: BUILD }, reply: { status: 200, body: fresh } },
      { comment: 'the same change again, on the fresh resourceVersion: no conditions', request: { method: 'PATCH', path: STATUS, body: { status: { stage: 'Done' }, metadata: { resourceVersion: '3005' } } }, reply: { status: 200, body: stored } },
    ];
    await withFixture(
      exchanges,
      async (client) => {
        const b1 = await client.updateBuildStatus(ref, (b) => applyCondition(b.status!, { type: 'Testing', status: 'In Progress' }, undefined, undefined, 'stage'), { base });
        const b2 = await client.updateBuildStatus(ref, (b) => applyCondition(b.status!, { type: 'Testing', status: 'Success' }, undefined, undefined, 'stage'), { base: b1 });
        assert.equal(b2.status?.stage, 'Done', 'the remembered condition made the phase Done, though the server holds none');
        const b3 = await client.updateBuildStatus(ref, (b) => applyCondition(b.status!, { type: 'Testing', status: 'Success' }, undefined, undefined, 'stage'), { base: b2 });
        assert.equal(b3, b2, 'nothing the CRD keeps changed: no request, the Build as it was');
      },
      OPTIONS,
    );
  });
});

describe('the phase field', () => {
  const fresh = (): Build => {
    const b = replyBody<Build>(loadFixture('run-spot-three-steps'), 0);
    delete b.status;
    return b;
  };

  test('forced to stage on a Build with no status yet: stage Running, then Done', async () => {
    const running = { ...fresh(), status: { stage: 'Running' as const } };
    running.metadata = { ...running.metadata, resourceVersion: '3002' };
    const done = { ...running, status: { stage: 'Done' as const }, metadata: { ...running.metadata, resourceVersion: '3003' } };
    await withFixture(
      [
        { request: { method: 'GET', path: BUILD }, reply: { status: 200, body: fresh() } },
        { comment: 'stage, as forced; conditions pruned', request: { method: 'PATCH', path: STATUS, body: { status: { conditions: '<any>', stage: 'Running' }, metadata: { resourceVersion: '3001' } } }, reply: { status: 200, body: running } },
        { request: { method: 'PATCH', path: STATUS, body: { status: { stage: 'Done' }, metadata: { resourceVersion: '3002' } } }, reply: { status: 200, body: done } },
      ],
      async (client) => {
        const outcome = await runTasks(client, ref, [{ type: 'Testing', run: async () => {} }], { events: false, phaseField: 'stage' });
        assert.equal(outcome.build?.status?.stage, 'Done');
      },
      OPTIONS,
    );
  });

  test('the client option works the same (monitorCondition); without it a Build with no status gets phase', async () => {
    const at = (rv: string, status: Build['status']): Build => ({ ...fresh(), metadata: { ...fresh().metadata, resourceVersion: rv }, status });
    const failing = async () => {
      throw new Error('tests failed');
    };
    await withFixture(
      [
        { request: { method: 'GET', path: BUILD }, reply: { status: 200, body: fresh() } },
        { comment: 'the CRD keeps stage only', request: { method: 'PATCH', path: STATUS, body: { status: { conditions: '<any>', stage: 'Running' }, metadata: { resourceVersion: '3001' } } }, reply: { status: 200, body: at('3002', { stage: 'Running' }) } },
        { comment: 'the Error condition is remembered, not re-sent', request: { method: 'PATCH', path: STATUS, body: { status: { stage: 'Errored' }, metadata: { resourceVersion: '3002' } } }, reply: { status: 200, body: at('3003', { stage: 'Errored' }) } },
      ],
      async (client) => {
        assert.equal(client.phaseField, 'stage');
        const result = await monitorCondition(client, ref, 'Testing', failing);
        assert.equal(result.ok, false);
        assert.deepEqual(result.build.status, { stage: 'Errored' });
      },
      { ...OPTIONS, client: { ...OPTIONS.client, phaseField: 'stage' } },
    );
    await withFixture(
      [
        { request: { method: 'GET', path: BUILD }, reply: { status: 200, body: fresh() } },
        { comment: 'no status to tell from: phase', request: { method: 'PATCH', path: STATUS, body: { status: { conditions: '<any>', phase: 'Running' }, metadata: { resourceVersion: '3001' } } }, reply: { status: 200, body: at('3002', { phase: 'Running', conditions: [{ type: 'Testing', status: 'In Progress', lastTransitionTime: '2025-06-01T10:00:01Z' }] }) } },
        { request: { method: 'PATCH', path: STATUS, body: { status: { conditions: '<any>', phase: 'Errored' }, metadata: { resourceVersion: '3002' } } }, reply: { status: 200, body: at('3003', { phase: 'Errored', conditions: [{ type: 'Testing', status: 'Error', lastTransitionTime: '2025-06-01T10:00:02Z', reason: 'Failed', message: 'tests failed' }] }) } },
      ],
      async (client) => {
        assert.equal(client.phaseField, undefined);
        const result = await monitorCondition(client, ref, 'Testing', failing);
        assert.equal(result.build.status?.phase, 'Errored');
        assert.deepEqual(client.prunedFields, []);
      },
      OPTIONS,
    );
  });

  test('forcing phase on a Build whose CRD keeps stage: the dropped phase is a warning that names the fix', async () => {
    const base = replyBody<Build>(loadFixture('run-spot-three-steps'), 0);
    const { log, lines: logged } = capture();
    await withFixture(
      [
        { request: { method: 'GET', path: BUILD }, reply: { status: 200, body: base } },
        { request: { method: 'PATCH', path: STATUS, body: { status: { conditions: '<any>', phase: 'Running' }, metadata: { resourceVersion: '3001' } } }, reply: { status: 200, body: base } },
      ],
      async (client) => {
        const outcome = await runTasks(client, ref, [{ type: 'Testing', run: async () => {} }], { events: false, phaseField: 'phase', log });
        // Nothing the CRD keeps changed after the first write, so nothing more was sent: the warning is all there is.
        assert.equal(outcome.outcome, 'done');
        assert.ok(
          logged.includes("WARN  this Build's CRD does not store status.phase: the build's phase is lost; use the phase field stage (phaseField: 'stage', spot-run --phase-field stage)"),
          logged.join('\n'),
        );
      },
      { ...OPTIONS, client: { ...OPTIONS.client, logger: log } },
    );
  });
});

describe('another custom resource (the Go NewClient(ctx, groupVersion))', () => {
  test('paths, the answer check and the events follow the resource; the kind is read from the answer', async () => {
    await withFixture(
      'custom-resource',
      async (client) => {
        const r = buildRef('ns', 'b1');
        const build = await client.getBuild(r);
        assert.equal(build.kind, 'PipelineBuild');
        const stored = await client.updateBuildStatus(r, (b) => applyCondition(b.status!, { type: 'Testing', status: 'In Progress' }), { base: build });
        const event = await client.recordEvent(stored, { type: 'Normal', reason: 'TestsStarted', message: 'running the tests' });
        assert.equal(event.ok, true);
      },
      { client: { resource: { group: 'ci.example.com', version: 'v1beta1', plural: 'pipelinebuilds' }, events: { instance: 'b1-build-pod' } } },
    );
  });

  test('with a kind given, an answer of another kind is refused', async () => {
    const exchanges = loadFixture('custom-resource').slice(0, 1);
    await withFixture(
      exchanges,
      async (client) => {
        const err = await rejection(() => client.getBuild(buildRef('ns', 'b1')));
        assert.ok(isSpotError(err) && err.code === 'ERR_SPOT_RESPONSE', String(err));
        assert.match(err.message, /^the answer is not a Build \(apiVersion "ci\.example\.com\/v1beta1", kind "PipelineBuild"\) \(GET /);
      },
      { client: { resource: { group: 'ci.example.com', version: 'v1beta1', plural: 'pipelinebuilds', kind: 'Build' } } },
    );
  });
});

describe('getBuild from the already split parts (the Go GetBuild)', () => {
  test('two parts: the same GET as a BuildRef', async () => {
    await withFixture('get-build', async (client) => {
      const build = await client.getBuild(['ns', 'b1']);
      assert.equal(build.metadata.name, 'b1');
    });
  });

  test('another count: refused with the Go wording, nothing sent', async () => {
    await withFixture([], async (client) => {
      for (const [parts, message] of [
        [['ns', 'b1', 'x'], 'BUILD_REFERENCE is expected to have 2 components, had 3: "ns/b1/x"'],
        [['b1'], 'BUILD_REFERENCE is expected to have 2 components, had 1: "b1"'],
        [[], 'BUILD_REFERENCE is expected to have 2 components, had 0: ""'],
      ] as const) {
        const err = await rejection(() => client.getBuild(parts));
        assert.ok(isSpotError(err) && err.code === 'ERR_SPOT_INVALID_NAME', String(err));
        assert.equal(err.message, message);
      }
      const err = await rejection(() => client.getBuild(['ns', '..']));
      assert.match(err.message, /^invalid Build name "\.\."/);
    });
  });
});
