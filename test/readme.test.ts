/**
 * The README stays true: its TypeScript snippets compile under strict TypeScript against lib/
 * (as `spot-runtime`), every name lib/index.ts exports is documented in it, and what it says
 * about `npm test` holds (the summary reporter, what the suite needs on the machine).
 */
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import ts from 'typescript';
import { startApiServer } from '../scripts/apiserver/server.js';
import { ROOT } from './support/cli.js';

let readme: string;
let scratch: string;
let exportsOfIndex: string[];

before(async () => {
  readme = await readFile(join(ROOT, 'README.md'), 'utf8');
  scratch = await mkdtemp(join(tmpdir(), 'spot-readme-'));
  // What lib/index.ts exports, values and types alike, as the compiler sees it.
  const program = ts.createProgram([join(ROOT, 'lib/index.ts')], { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, noEmit: true, skipLibCheck: true });
  const checker = program.getTypeChecker();
  const source = program.getSourceFile(join(ROOT, 'lib/index.ts'));
  assert.ok(source, 'lib/index.ts was not loaded');
  const symbol = checker.getSymbolAtLocation(source);
  assert.ok(symbol, 'lib/index.ts has no module symbol');
  exportsOfIndex = checker.getExportsOfModule(symbol).map((s) => s.getName());
});
after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

/** The ```ts blocks of the README, in order, with the line each starts on. */
function tsBlocks(text: string): Array<{ line: number; code: string }> {
  const blocks: Array<{ line: number; code: string }> = [];
  const re = /^```ts\n([\s\S]*?)^```$/gm;
  for (let m = re.exec(text); m; m = re.exec(text)) blocks.push({ line: text.slice(0, m.index).split('\n').length, code: m[1]! });
  return blocks;
}

/** Helpers the snippets call that are the reader's own code, not the library's. */
const READER_GLOBALS = `import type { BuildRef, SpotClient } from 'spot-runtime';
declare global {
  /** A client and a Build, as the earlier snippets made them. */
  const client: SpotClient;
  const ref: BuildRef;
  function runTests(signal: AbortSignal): Promise<void>;
  function scan(signal: AbortSignal): Promise<void>;
}
export {};
`;

describe('README', () => {
  test('every ```ts snippet compiles under strict TypeScript against lib/ as `spot-runtime`', async () => {
    const blocks = tsBlocks(readme);
    assert.ok(blocks.length >= 5, `found only ${blocks.length} ts blocks`);
    const files = [join(scratch, 'globals.d.mts')];
    await writeFile(files[0]!, READER_GLOBALS);
    for (const [i, block] of blocks.entries()) {
      // A snippet without an import gets one for the library names it uses, as a reader would add.
      let code = block.code;
      if (!/from 'spot-runtime'/.test(code)) {
        const used = exportsOfIndex.filter((name) => new RegExp(`\\b${name}\\b`).test(code));
        code = `${used.length ? `import { ${used.join(', ')} } from 'spot-runtime';\n` : ''}${code}\nexport {};\n`;
      }
      const file = join(scratch, `snippet-${i + 1}-line-${block.line}.mts`);
      files.push(file);
      await writeFile(file, code);
    }
    const options: ts.CompilerOptions = {
      strict: true,
      noUncheckedIndexedAccess: true,
      target: ts.ScriptTarget.ES2022,
      lib: ['lib.es2023.d.ts'],
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      types: ['node'],
      typeRoots: [join(ROOT, 'node_modules/@types')],
      noEmit: true,
      skipLibCheck: true,
      baseUrl: ROOT,
      paths: { 'spot-runtime': [join(ROOT, 'lib/index.ts')] },
    };
    const program = ts.createProgram(files, options);
    const problems = ts
      .getPreEmitDiagnostics(program)
      .filter((d) => d.file === undefined || d.file.fileName.startsWith(scratch))
      .map((d) => {
        const where = d.file && d.start !== undefined ? `${d.file.fileName.slice(scratch.length + 1)}:${d.file.getLineAndCharacterOfPosition(d.start).line + 1}` : '';
        return `${where} ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`;
      });
    assert.deepEqual(problems, [], `README snippets that do not compile:\n${problems.join('\n')}`);
  });

  test('every name lib/index.ts exports is documented (in backticks) in the README', () => {
    assert.ok(exportsOfIndex.length > 50, `found only ${exportsOfIndex.length} exports`);
    const spans = [...readme.matchAll(/`([^`\n]+)`/g)].map((m) => m[1]!).join(' ');
    const missing = exportsOfIndex.filter((name) => !new RegExp(`\\b${name}\\b`).test(spans));
    assert.deepEqual(missing, [], `exported but not in the README: ${missing.join(', ')}`);
  });

  test('the library example prints what the README says it prints', async () => {
    const example = tsBlocks(readme).find((b) => b.code.includes("from 'spot-runtime'") && b.code.includes('runTasks('));
    assert.ok(example, 'no library example');
    const after = readme.slice(readme.indexOf(example.code) + example.code.length);
    const printed = /^It prints[^\n]*:\n\n```\n([\s\S]*?)^```$/m.exec(after);
    assert.ok(printed && after.indexOf(printed[0]) < 10, 'the example is not followed by "It prints ...:" and its output');
    const file = join(scratch, 'example.mts');
    await writeFile(file, example.code.replace("'spot-runtime'", `'${pathToFileURL(join(ROOT, 'lib/index.ts')).href}'`));
    const server = await startApiServer();
    try {
      server.createBuild({ name: 'readme-example' });
      const { stdout, stderr } = await promisify(execFile)(process.execPath, ['--import', 'tsx', file], {
        cwd: ROOT,
        env: { PATH: process.env.PATH, ...server.env(), BUILD_REFERENCE: 'default/readme-example' },
        timeout: 30_000,
      });
      assert.equal(stdout, '');
      // Time stamps and durations vary; the lines do not.
      const normalise = (text: string) => text.trim().split('\n').map((l) => l.replace(/^\S+ /, '… ').replace(/\d+\.\ds\b/g, 'N.Ns'));
      assert.deepEqual(normalise(stderr), normalise(printed[1]!));
      assert.equal(server.getBuild('default', 'readme-example')?.status?.phase, 'Done');
    } finally {
      await server.stop();
    }
  });

  test('npm test ends with a summary a person can read (the spec reporter), keeping its flags', async () => {
    const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    const script = pkg.scripts.test!;
    for (const flag of ['--import tsx', '--test', '--test-concurrency=2', '--test-timeout=180000', '--test-force-exit', '--test-reporter=spec']) {
      assert.ok(script.includes(flag), `npm test lost ${flag}: ${script}`);
    }
    // The quick start says what the suite needs on the machine.
    const quickStart = readme.slice(readme.indexOf('## Quick start'), readme.indexOf('\n## ', readme.indexOf('## Quick start') + 1));
    for (const need of ['kubectl', 'openssl']) assert.match(quickStart, new RegExp(`\`${need}\``), `the quick start does not name ${need}`);
  });
});
