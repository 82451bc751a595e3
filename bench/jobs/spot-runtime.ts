/**
 * The benchmark job on spot-runtime, written the way the README tells a user to: in-cluster
 * client, the runner with four no-op tasks (the last one returns the image), one event, close.
 *
 * The relative import is what lets one source serve four contenders: under tsx it is
 * lib/index.ts; compiled to dist/bench/jobs/ it is dist/lib/index.js; bundled it is inlined; and
 * bundled as CommonJS it is what `node --build-snapshot` loads into a V8 startup snapshot, as
 * dist/spot-run.cjs is (bench/workspace.ts).
 */
import { startupSnapshot } from 'node:v8';
import { createClient, parseBuildReference, preferLowMemoryWasm, runTasks, type Task } from '../../lib/index.js';
import { EVENT, IMAGE_URL, STEPS } from './common.js';
import { mark } from './report.js';

async function job(): Promise<void> {
  // As the README advises a program that owns its process (and as spot-run does): V8's baseline
  // WebAssembly compiler only, for undici's HTTP parser.
  preferLowMemoryWasm();

  const client = await createClient();
  const ref = parseBuildReference(process.env.BUILD_REFERENCE ?? '');
  const tasks: Task[] = STEPS.map((type, i) => ({
    type,
    async run() {
      // The runner starts a task only once the write marking it In Progress was acknowledged.
      if (i === 0) mark('firstWrite');
      return i === STEPS.length - 1 ? { status: { image: { url: IMAGE_URL } } } : {};
    },
  }));
  const outcome = await runTasks(client, ref, tasks, { events: false });
  const event = await client.recordEvent(outcome.build, EVENT);
  await client.close();
  mark('done');
  if (!event.ok) throw event.error;
  process.exitCode = outcome.exitCode;
}

if (startupSnapshot.isBuildingSnapshot()) {
  // The imports above are loaded while the blob is built (report.ts's exit hook with them, so it
  // is part of the snapshot); each process started from the blob begins here.
  startupSnapshot.setDeserializeMainFunction(() => {
    mark('imported');
    void job();
  });
} else {
  mark('imported'); // every static import above has been loaded and evaluated
  void job();
}
