/** Helpers for tests of spot-run's pure option parser (scripts/spot-run/options.ts). */
import { strict as assert } from 'node:assert';
import { CommandFailure, ExitCodes } from '../../scripts/spot-run/exit-codes.js';
import { parseOptions, type Options } from '../../scripts/spot-run/options.js';

export const ENV = { BUILD_REFERENCE: 'default/b1' };

/** The usage error `fn` throws: exit 2, its message ending with the pointer to --help (returned without it). */
export function usage(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof CommandFailure, `not a CommandFailure: ${String(err)}`);
    assert.equal(err.exitCode, ExitCodes.Usage);
    assert.ok(err.message.endsWith(' (see spot-run --help)'), err.message);
    return err.message.slice(0, -' (see spot-run --help)'.length);
  }
  assert.fail('no usage error');
}

/** The options of a run command (failing when argv asks for --help or --version). */
export function options(argv: string[], env: Record<string, string | undefined> = ENV): Options {
  const command = parseOptions(argv, env);
  assert.equal(command.action, 'run');
  return (command as { options: Options }).options;
}
