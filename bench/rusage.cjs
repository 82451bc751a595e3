// Preloaded into spot-run by the step-output benchmark (`node --require bench/rusage.cjs ...`):
// at exit, writes this process's own resource usage (CPU and peak RSS, not its steps') to the
// file named by BENCH_RUSAGE_FILE. spot-run ends by itself, so 'exit' comes after everything.
'use strict';
const { writeFileSync } = require('node:fs');

const file = process.env.BENCH_RUSAGE_FILE;
if (file) {
  process.on('exit', () => {
    const usage = process.resourceUsage();
    writeFileSync(file, JSON.stringify({ userMicros: usage.userCPUTime, systemMicros: usage.systemCPUTime, maxRssKiB: usage.maxRSS }));
  });
}
