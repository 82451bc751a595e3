/**
 * The benchmark job on spot-runtime, written the way the README tells a user to: in-cluster
 * client, the runner with four no-op tasks (the last one returns the image), one event, close.
 *
 * The relative import is what lets one source serve three contenders: under tsx it is
 * lib/index.ts; compiled to dist/bench/jobs/ it is dist/lib/index.js; bundled it is inlined.
 */
import { createClient, parseBuildReference, preferLowMemoryWasm, runTasks, type Task } from '../../lib/index.js';
import { EVENT, IMAGE_URL, STEPS } from './common.js';
import { mark } from './report.js';

mark('imported'); // every static import above has been loaded and evaluated

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
