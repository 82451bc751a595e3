#!/usr/bin/env node
/**
 * spot-run: the build pod's entrypoint. Runs shell steps one after another, each wrapped in a
 * status condition of the Build, and reports to the API server. No TypeScript needed by its user.
 * The command lives in scripts/spot-run/: options (flags, --help, the plan), run (the plan carried
 * out), exit-codes (what each ending exits with) and ending (the failure line and the termination
 * message).
 */
import { startupSnapshot } from 'node:v8';
import { VERSION } from '../lib/version.js';
import { endWithFailure } from './spot-run/ending.js';
import { CommandFailure, ExitCodes } from './spot-run/exit-codes.js';
import { HELP, parseOptions, planRun } from './spot-run/options.js';
import { run } from './spot-run/run.js';

async function main(argv: string[], env: Record<string, string | undefined>): Promise<number> {
  const command = parseOptions(argv, env);
  if (command.action === 'help') {
    process.stdout.write(HELP);
    return ExitCodes.Done;
  }
  if (command.action === 'version') {
    process.stdout.write(`spot-run ${VERSION}\n`);
    return ExitCodes.Done;
  }
  return run(await planRun(command.options));
}

function start(argv: string[]): void {
  main(argv, process.env).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      // A usage error (with where the output goes, once the flags that say so are parsed) or a bug.
      process.exitCode = endWithFailure(err, err instanceof CommandFailure ? err.output : undefined);
    },
  );
}

// Built into a V8 startup snapshot (dist/spot-run.cjs with `node --build-snapshot`), everything
// above is loaded now, once, and the command runs in each process started from the snapshot. Such
// a process has no script in its argv: `node --snapshot-blob spot-run.blob -- ARGS` gives
// [node, ...ARGS].
if (startupSnapshot.isBuildingSnapshot()) startupSnapshot.setDeserializeMainFunction(() => start(process.argv.slice(1)));
else start(process.argv.slice(2));
