/**
 * The runner's one status write: the client's conflict-safe update, with the published Spot CRD's
 * required `status.stage` learned from its refusal. monitorCondition, reportFatalError and runTasks
 * all write through it.
 */
import type { UpdateOptions } from './builds.js';
import type { Logger } from './log.js';
import type { BuildClient } from './runner.js';
import { requiresStage, type Mutation, type Rules } from './task-rules.js';
import type { Build, BuildRef } from './types.js';

/**
 * A status write. A Build with no phase or stage yet gets `phase`, a guess; the published Spot CRD
 * requires `status.stage`, so kube-apiserver prunes the phase and refuses the whole write (422
 * "status.stage: Required value"). Then the phase goes to `stage`, for this write and the rest of
 * the run (mutations read `rules` when applied), and the write is made once more.
 */
export async function writeStatus(client: BuildClient, ref: BuildRef, mutation: Mutation, options: UpdateOptions, rules: Rules, log: Logger): Promise<Build> {
  try {
    return await client.updateBuildStatus(ref, mutation, options);
  } catch (err) {
    if (!rules.guessed || rules.phaseField === 'stage' || !requiresStage(err)) throw err;
    rules.phaseField = 'stage';
    rules.guessed = false;
    log.info("this Build's CRD requires status.stage: the phase is written there");
    return client.updateBuildStatus(ref, mutation, options);
  }
}
