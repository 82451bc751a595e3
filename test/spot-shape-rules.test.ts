/**
 * Issue 11's pure rules: the phase field, what a pruned write lacks and how it is stripped, the
 * image digest, the custom resource, the 2-part reference, and spot-run's --phase-field and
 * --resource flags. No I/O beyond a results folder for one step.
 */
import { strict as assert } from 'node:assert';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { asBuild, buildPath } from '../lib/builds.js';
import { applyCondition, phaseFieldOf } from '../lib/conditions.js';
import { TaskFailure } from '../lib/errors.js';
import { makeEvent } from '../lib/events.js';
import { silentLogger } from '../lib/log.js';
import { buildRef, buildRefFromParts } from '../lib/names.js';
import { droppedFields, formatFieldPath, removeFields } from '../lib/pruning.js';
import { DEFAULT_RESOURCE, formatResource, parseResource, validateResource } from '../lib/resource.js';
import { imageDigest, runStep } from '../lib/steps.js';
import type { Build, BuildStatus } from '../lib/types.js';
import { parseOptions, type Options } from '../scripts/spot-run/options.js';

const DIGEST = 'sha256:11c8d96f1ece6ebe0983ec43843f9174dd9bc3b94fe33ded894f5d9dbb6b0f78';

describe('phaseFieldOf', () => {
  test('stage when the status has stage and no phase; phase otherwise, including no status at all', () => {
    assert.equal(phaseFieldOf({ stage: 'Running', pod: { name: 'p', namespace: 'spot-system' } }), 'stage');
    assert.equal(phaseFieldOf({ stage: '' }), 'stage', 'an empty stage is still the field the Build uses');
    assert.equal(phaseFieldOf({ phase: 'Running', stage: 'Running' }), 'phase');
    assert.equal(phaseFieldOf({ phase: 'Running' }), 'phase');
    assert.equal(phaseFieldOf({}), 'phase');
    assert.equal(phaseFieldOf(undefined), 'phase');
  });
});

describe('applyCondition with a phase field', () => {
  test('stage: the derived phase goes to status.stage, status.phase is left alone', () => {
    const status: BuildStatus = { stage: 'Running' };
    applyCondition(status, { type: 'Building Image', status: 'Success' }, new Date(0), undefined, 'stage');
    assert.equal(status.stage, 'Done');
    assert.equal('phase' in status, false);
  });

  test('the default stays phase', () => {
    const status: BuildStatus = {};
    applyCondition(status, { type: 'Building Image', status: 'Error' }, new Date(0));
    assert.equal(status.phase, 'Errored');
    assert.equal('stage' in status, false);
  });
});

describe('droppedFields and removeFields', () => {
  const sent = {
    stage: 'Running',
    pod: { name: 'p', namespace: 'spot-system' },
    conditions: [{ type: 'A', status: 'In Progress', lastTransitionTime: 't' }],
    image: { url: 'u', digest: 'd', metadata: { builder: 'kaniko' } },
  };

  test('what the answer lacks: whole fields and fields of nested objects', () => {
    const stored = { stage: 'Running', pod: { name: 'p', namespace: 'spot-system' }, image: { url: 'u', digest: 'd' } };
    assert.deepEqual(droppedFields(sent, stored).map(formatFieldPath), ['conditions', 'image.metadata']);
  });

  test('fields of list items are reported once, under []', () => {
    const twoConditions = { conditions: [{ type: 'A', status: 'Error', reason: 'Failed', message: 'm' }, { type: 'B', status: '', reason: 'X' }] };
    const stored = { conditions: [{ type: 'A', status: 'Error' }, { type: 'B', status: '' }] };
    assert.deepEqual(droppedFields(twoConditions, stored).map(formatFieldPath), ['conditions[].reason', 'conditions[].message']);
  });

  test('a value the answer changed is not pruning; a null sent is a deletion; nothing lacking gives nothing', () => {
    assert.deepEqual(droppedFields({ stage: 'Done', image: null }, { stage: 'Errored' }), []);
    assert.deepEqual(droppedFields(sent, structuredClone(sent)), []);
    assert.deepEqual(droppedFields({ image: { url: 'u' } }, { image: 'not an object' }), [], 'a type change is not pruning');
  });

  test('removeFields strips exactly those fields, in place, list items included', () => {
    const status = structuredClone({ ...sent, conditions: [{ type: 'A', status: 'Error', reason: 'Failed' }] });
    removeFields(status, [['image', 'metadata'], ['conditions', '*', 'reason'], ['not', 'there']]);
    assert.deepEqual(status, { stage: 'Running', pod: sent.pod, conditions: [{ type: 'A', status: 'Error' }], image: { url: 'u', digest: 'd' } });
    removeFields(status, [['conditions']]);
    assert.equal('conditions' in status, false);
  });
});

describe('imageDigest', () => {
  const pinned = `registry.example.com/team/app:1.0.0@${DIGEST}`;

  test('the image-digest file wins; else the url pinned by @sha256:<64 hex>; else none', () => {
    assert.equal(imageDigest(pinned, 'sha512:abcdef\n', 'Push'), 'sha512:abcdef');
    assert.equal(imageDigest(`${pinned}\n`, undefined, 'Push'), DIGEST);
    assert.equal(imageDigest(pinned, '  \n', 'Push'), DIGEST, 'an empty file is no digest');
    assert.equal(imageDigest('registry.example.com/team/app:1.0.0', undefined, 'Push'), undefined);
    assert.equal(imageDigest('registry.example.com/team/app@sha256:9b2f0c4e', undefined, 'Push'), undefined, 'not 64 hex');
    assert.equal(imageDigest(`${pinned}x`, undefined, 'Push'), undefined, 'not at the end');
    assert.equal(imageDigest(undefined, undefined, 'Push'), undefined);
  });

  test('a file that is not a digest fails the step with InvalidResult', () => {
    assert.throws(
      () => imageDigest(pinned, 'latest', 'Pushing Image'),
      (err: unknown) => err instanceof TaskFailure && err.reason === 'InvalidResult' && /Pushing Image wrote image-digest, which must be a digest/.test(err.message),
    );
  });

  test('runStep: image-url pinned by digest fills status.image.digest', async () => {
    const parent = await mkdtemp(join(tmpdir(), 'spot-digest-'));
    try {
      const result = await runStep(
        { type: 'Pushing Image', command: `echo '${pinned}' > "$SPOT_RESULTS_DIR/image-url"` },
        new AbortController().signal,
        silentLogger,
        { resultsParent: parent, stdout: () => {}, stderr: () => {} },
      );
      assert.deepEqual(result, { status: { image: { url: pinned, digest: DIGEST } } });
      const withFile = await runStep(
        { type: 'Pushing Image', command: `echo registry.example.com/team/app:1.0.0 > "$SPOT_RESULTS_DIR/image-url"; echo ${DIGEST} > "$SPOT_RESULTS_DIR/image-digest"` },
        new AbortController().signal,
        silentLogger,
        { resultsParent: parent, stdout: () => {}, stderr: () => {} },
      );
      assert.deepEqual(withFile, { status: { image: { url: 'registry.example.com/team/app:1.0.0', digest: DIGEST } } });
    } finally {
      await rm(parent, { recursive: true, force: true });
    }
  });
});

describe('the custom resource', () => {
  test('parseResource reads PLURAL.VERSION.GROUP without a kind; formatResource is its inverse', () => {
    const r = parseResource('pipelinebuilds.v1beta1.ci.example.com');
    assert.deepEqual(r, { plural: 'pipelinebuilds', version: 'v1beta1', group: 'ci.example.com' });
    assert.equal(formatResource(r), 'pipelinebuilds.v1beta1.ci.example.com');
    assert.equal(formatResource(DEFAULT_RESOURCE), 'builds.v1alpha1.spot.release.com');
  });

  test('bad resources are refused before they become a path', () => {
    for (const [text, message] of [
      ['builds', /expected PLURAL\.VERSION\.GROUP/],
      ['builds.v1alpha1', /expected PLURAL\.VERSION\.GROUP/],
      ['builds..spot.release.com', /expected PLURAL\.VERSION\.GROUP/],
      ['builds.alpha.spot.release.com', /invalid resource version "alpha"/],
      ['Builds.v1.spot.release.com', /invalid resource plural "Builds"/],
      ['builds.v1.spot..release.com', /invalid resource group "spot\.\.release\.com"/],
      ['builds.v1.spot.release.com%2F..', /invalid resource group/],
    ] as const) {
      assert.throws(() => parseResource(text), message, text);
    }
    assert.throws(() => validateResource({ ...DEFAULT_RESOURCE, kind: 'Build/../x' }), /invalid resource kind/);
    assert.throws(() => buildPath(buildRef('ns', 'b1'), undefined, { group: 'x', version: 'v1', plural: '../../api' }), /invalid resource plural/);
  });

  test('buildPath follows the resource; the default is unchanged', () => {
    const ref = buildRef('ns', 'b1');
    assert.equal(buildPath(ref), '/apis/spot.release.com/v1alpha1/namespaces/ns/builds/b1');
    assert.equal(buildPath(ref, 'status', parseResource('pipelinebuilds.v1beta1.ci.example.com')), '/apis/ci.example.com/v1beta1/namespaces/ns/pipelinebuilds/b1/status');
  });

  test('asBuild: the apiVersion must match; the kind too when the resource names one', () => {
    const ref = buildRef('ns', 'b1');
    const target = { method: 'GET', path: '/x' };
    const answer = { apiVersion: 'ci.example.com/v1beta1', kind: 'PipelineBuild', metadata: { name: 'b1', namespace: 'ns', resourceVersion: '1' } };
    const noKind = parseResource('pipelinebuilds.v1beta1.ci.example.com');
    assert.equal(asBuild(answer, ref, target, noKind).kind, 'PipelineBuild');
    assert.throws(() => asBuild({ ...answer, kind: '' }, ref, target, noKind), /not a ci\.example\.com\/v1beta1 object/);
    assert.throws(() => asBuild(answer, ref, target), { message: /^the answer is not a Build \(apiVersion "ci\.example\.com\/v1beta1", kind "PipelineBuild"\)/ });
    assert.throws(() => asBuild({ ...answer, apiVersion: 'ci.example.com/v1' }, ref, target, noKind), /apiVersion "ci\.example\.com\/v1"/);
  });

  test('an event names the object as read', () => {
    const build = { apiVersion: 'ci.example.com/v1beta1', kind: 'PipelineBuild', metadata: { name: 'b1', namespace: 'workspace-a', uid: 'u1', resourceVersion: '4' } } as Build;
    const event = makeEvent(build, { type: 'Normal', reason: 'R', message: 'm' }, { name: 'b1.1', component: 'c', instance: 'i', now: new Date(0) });
    assert.deepEqual(event.involvedObject, { apiVersion: 'ci.example.com/v1beta1', kind: 'PipelineBuild', name: 'b1', namespace: 'workspace-a', uid: 'u1', resourceVersion: '4' });
    assert.equal(event.metadata.namespace, 'workspace-a', 'the event lives in the object\'s namespace');
  });
});

describe('buildRefFromParts', () => {
  test('two valid parts make a reference; another count is refused in the Go wording', () => {
    assert.deepEqual(buildRefFromParts(['workspace-a', 'sample-build']), { namespace: 'workspace-a', name: 'sample-build' });
    assert.throws(() => buildRefFromParts(['a', 'b', 'c']), { name: 'InvalidNameError', message: 'BUILD_REFERENCE is expected to have 2 components, had 3: "a/b/c"' });
    assert.throws(() => buildRefFromParts(['Upper', 'b']), /invalid Build namespace "Upper"/);
  });
});

describe('spot-run --phase-field and --resource', () => {
  const run = (argv: string[]): Options => {
    const command = parseOptions([...argv, '--step', 'A=true'], { BUILD_REFERENCE: 'workspace-a/b1' });
    assert.equal(command.action, 'run');
    return (command as { options: Options }).options;
  };
  const usage = (argv: string[]): string => {
    try {
      run(argv);
    } catch (err) {
      return (err as Error).message;
    }
    assert.fail(`${argv.join(' ')} was accepted`);
  };

  test('absent: both undefined (the phase field is told from the Build, the resource is the default)', () => {
    const o = run([]);
    assert.equal(o.phaseField, undefined);
    assert.equal(o.resource, undefined);
  });

  test('given: read and checked', () => {
    assert.equal(run(['--phase-field', 'stage']).phaseField, 'stage');
    assert.equal(run(['--phase-field', 'phase']).phaseField, 'phase');
    assert.deepEqual(run(['--resource', 'builds.v1alpha1.spot.release.com']).resource, { plural: 'builds', version: 'v1alpha1', group: 'spot.release.com' });
  });

  test('bad values: one usage line naming the flag', () => {
    const HINT = ' (see spot-run --help)';
    assert.equal(usage(['--phase-field', 'Stage']), `--phase-field must be phase or stage, got "Stage"${HINT}`);
    assert.equal(usage(['--resource', 'builds.spot.release.com']), `--resource: invalid resource version "spot": expected a Kubernetes API version such as v1 or v1alpha1${HINT}`);
    assert.equal(usage(['--resource', 'builds']), `--resource: invalid resource "builds": expected PLURAL.VERSION.GROUP, e.g. builds.v1alpha1.spot.release.com${HINT}`);
  });
});
