import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import { ApiError, isSpotError, NetworkError, ResponseError, TimeoutError } from '../lib/errors.js';
import { buildRef } from '../lib/names.js';
import { StaticTokenSource } from '../lib/token.js';
import { createTransport } from '../lib/transport.js';
import { VERSION } from '../lib/version.js';
import { createLogger } from '../lib/log.js';
import type { Build } from '../lib/types.js';
import { createFixture, FAST_RETRY, loadFixture, rejection, replyBody, TEST_SERVER, withFixture, type Exchange } from './support/fixtures.js';

const ref = buildRef('ns', 'b1');
const BUILDS = '/apis/spot.release.com/v1alpha1/namespaces/ns/builds/b1';
const STATUS = `${BUILDS}/status`;

/** Milliseconds `fn` took. */
async function timed(fn: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await fn();
  return performance.now() - start;
}

describe('headers', () => {
  test('every request names the client and accepts JSON; writes say what they send', async () => {
    await withFixture(
      [...loadFixture('get-build'), ...loadFixture('patch-build-status-merge-unconditional')],
      async (client, { requests }) => {
        await client.getBuild(ref);
        await client.patchBuildStatus(ref, { status: { phase: 'Running' } }, { type: 'merge' });
        for (const r of requests) {
          assert.equal(r.headers['user-agent'], `spot-runtime/${VERSION} (node ${process.version})`);
          assert.equal(r.headers.accept, 'application/json');
        }
        assert.equal(requests[0]!.headers['content-type'], undefined);
        assert.equal(requests[1]!.headers['content-type'], 'application/merge-patch+json');
      },
    );
  });

  test('no authorization header without a token source (kubectl proxy)', async () => {
    const exchanges: Exchange[] = [
      { request: { method: 'GET', path: BUILDS, headers: { authorization: null } }, reply: loadFixture('get-build')[0]!.reply! },
    ];
    await withFixture(exchanges, async (client) => {
      await client.getBuild(ref);
    }, { config: { tokenSource: undefined } });
  });
});

describe('Retry-After', () => {
  // The policy caps Retry-After at 50 ms, so "1 second" costs 50 ms here; the backoff alone would be ~1 ms.
  const policy = { retry: { ...FAST_RETRY, maxRetryAfterMs: 50 } };

  test('429 text/plain (max-inflight, priority and fairness): waits Retry-After, then retries', async () => {
    await withFixture('retry-429-text', async (client, { requests }) => {
      const build = await client.getBuild(ref);
      assert.equal(build.metadata.name, 'b1');
      const waited = requests[1]!.at - requests[0]!.at;
      assert.ok(waited >= 45, `waited ${waited} ms, expected the capped Retry-After of 50 ms`);
      assert.ok(waited < 1000, `waited ${waited} ms: the cap was not applied`);
    }, { client: policy });
  });

  test('429 Status with details.retryAfterSeconds: waits, and retries even an unconditional patch', async () => {
    await withFixture('retry-429-status', async (client, { requests }) => {
      await client.patchBuildStatus(ref, { status: { phase: 'Running' } }, { type: 'merge' });
      const waited = requests[1]!.at - requests[0]!.at;
      assert.ok(waited >= 45 && waited < 1000, `waited ${waited} ms`);
    }, { client: policy });
  });

  test('429 Status without the header: details.retryAfterSeconds is used', async () => {
    await withFixture('retry-429-status-no-header', async (client, { requests }) => {
      await client.getBuild(ref);
      const waited = requests[1]!.at - requests[0]!.at;
      assert.ok(waited >= 45 && waited < 1000, `waited ${waited} ms`);
    }, { client: policy });
  });

  test('a 429 that cannot be retried any more keeps the server\'s wish in the error', async () => {
    const [first] = loadFixture('retry-429-text');
    await withFixture([first!], async (client) => {
      const err = await rejection(() => client.getBuild(ref));
      assert.ok(err instanceof ApiError, String(err));
      assert.equal(err.statusCode, 429);
      assert.equal(err.reason, 'TooManyRequests');
      assert.equal(err.retryAfterSeconds, 1);
      assert.equal(err.bodySnippet, 'Too many requests, please try again later.');
    }, { client: { retry: { maxRetries: 0 } } });
  });
});

describe('5xx', () => {
  test('a GET is retried after 500 and 503', async () => {
    await withFixture('retry-5xx-get', async (client) => {
      const build = await client.getBuild(ref);
      assert.equal(build.metadata.resourceVersion, '1001');
    });
  });

  test('an unconditional patch is not retried after a 503 without Retry-After', async () => {
    await withFixture('retry-503-unsafe-write', async (client) => {
      const err = await rejection(() => client.patchBuildStatus(ref, { status: { phase: 'Running' } }, { type: 'merge' }));
      assert.ok(err instanceof ApiError, String(err));
      assert.equal(err.statusCode, 503);
      assert.equal(err.reason, 'ServiceUnavailable');
    });
  });

  test('an unconditional patch is retried when the 503 carries Retry-After', async () => {
    await withFixture('retry-503-retry-after-unsafe-write', async (client) => {
      await client.patchBuildStatus(ref, { status: { phase: 'Running' } }, { type: 'merge' });
    });
  });

  test('no retry once the retries are used up', async () => {
    const exchanges = loadFixture('retry-5xx-get').slice(0, 2);
    await withFixture(exchanges, async (client) => {
      const err = await rejection(() => client.getBuild(ref));
      assert.ok(err instanceof ApiError, String(err));
      assert.equal(err.statusCode, 503);
    }, { client: { retry: { maxRetries: 1 } } });
  });
});

describe('connection failures', () => {
  test('an unconditional patch is not retried after a connection reset', async () => {
    await withFixture('reset-unsafe-write', async (client) => {
      const err = await rejection(() => client.patchBuildStatus(ref, { status: { phase: 'Running' } }, { type: 'merge' }));
      assert.ok(err instanceof NetworkError, String(err));
      assert.equal(err.causeCode, 'ECONNRESET');
      assert.equal(err.message, `cannot reach the API server at ${TEST_SERVER}: read ECONNRESET (PATCH ${STATUS})`);
    });
  });

  test('a GET is retried after a reset and after the other side closed', async () => {
    await withFixture('reset-get-retried', async (client) => {
      assert.equal((await client.getBuild(ref)).metadata.name, 'b1');
    });
  });

  test('a patch conditional on a resourceVersion is retried after a reset', async () => {
    await withFixture('reset-conditional-write-retried', async (client) => {
      await client.patchBuildStatus(ref, { status: { phase: 'Running' } }, { type: 'merge', resourceVersion: '1001' });
    });
  });

  test('connection refused: nothing was sent, so even an unconditional patch is retried', async () => {
    await withFixture('refused-unsafe-write-retried', async (client) => {
      await client.patchBuildStatus(ref, { status: { phase: 'Running' } }, { type: 'merge' });
    });
  });
});

describe('time limits', () => {
  test('a Retry-After beyond the deadline fails at once instead of sleeping past it', async () => {
    await withFixture('retry-after-beyond-deadline', async (client) => {
      let err: Error | undefined;
      const took = await timed(async () => {
        err = await rejection(() => client.getBuild(ref));
      });
      assert.ok(err instanceof ApiError && err.statusCode === 503, String(err));
      assert.ok(took < 800, `took ${took} ms: it slept for the Retry-After`);
    }, { client: { retry: { maxRetryAfterMs: 5_000, deadlineMs: 200 } } });
  });

  test('a retry that would leave less than minAttemptMs of the deadline is not made: the answer that says why is kept', async () => {
    // Retry-After 1 s fits in a 1.05 s deadline, but the attempt after it would have 50 ms: with
    // minAttemptMs 100 the client gives up now and reports the 503, not a TimeoutError of a squeezed attempt.
    await withFixture('retry-after-beyond-deadline', async (client) => {
      let err: Error | undefined;
      const took = await timed(async () => {
        err = await rejection(() => client.getBuild(ref));
      });
      assert.ok(err instanceof ApiError && err.statusCode === 503, String(err));
      assert.ok(took < 800, `took ${took} ms: it slept for the Retry-After`);
    }, { client: { retry: { maxRetryAfterMs: 5_000, deadlineMs: 1_050, minAttemptMs: 100 } } });
  });

  test('an attempt over its timeout is a TimeoutError, cut at the timeout from the attempt\'s start', async () => {
    const slow = loadFixture('timeout-get-retried')[0]!; // the answer takes 2 s
    await withFixture([slow], async (client) => {
      let err: Error | undefined;
      const took = await timed(async () => {
        err = await rejection(() => client.getBuild(ref));
      });
      assert.ok(err instanceof TimeoutError, String(err));
      assert.equal(err.message, `no answer within 30 ms (GET ${BUILDS})`);
      // Never before the timeout (timers may fire a millisecond early); far before the answer.
      assert.ok(took >= 29 && took < 1_500, `gave up after ${took} ms: the timeout is 30 ms, the answer takes 2 s`);
    }, { client: { timeoutMs: 30, retry: { maxRetries: 0 } } });
  });

  test('a GET whose attempt timed out is retried, and the retry names the TimeoutError', async () => {
    const logged: Array<Record<string, unknown>> = [];
    const logger = createLogger({ format: 'json', level: 'debug', write: (line) => logged.push(JSON.parse(line) as Record<string, unknown>) });
    await withFixture('timeout-get-retried', async (client, { requests }) => {
      const build = await client.getBuild(ref);
      assert.equal(build.metadata.name, 'b1');
      assert.equal(requests.length, 2, 'the first attempt, cut, and the retry that was answered');
      const retries = logged.filter((l) => l.msg === 'retrying request');
      assert.deepEqual(
        retries.map((l) => [l.method, l.retry, l.error]),
        [['GET', 1, `no answer within 30 ms (GET ${BUILDS})`]],
        JSON.stringify(logged),
      );
    }, { client: { timeoutMs: 30, logger } });
  });

  test('an unconditional patch that timed out is not retried', async () => {
    await withFixture('timeout-unsafe-write', async (client) => {
      const err = await rejection(() => client.patchBuildStatus(ref, { status: { phase: 'Running' } }, { type: 'merge' }));
      assert.ok(err instanceof TimeoutError, `${err.name}: ${err.message}`);
      assert.equal(err.message, `no answer within 30 ms (PATCH ${STATUS})`);
    }, { client: { timeoutMs: 30 } });
  });

  test('the deadline bounds the whole call, retries included', async () => {
    const slow = loadFixture('timeout-get-retried')[0]!;
    await withFixture([slow, slow, slow], async (client, { fixture }) => {
      let err: Error | undefined;
      const took = await timed(async () => {
        err = await rejection(() => client.getBuild(ref));
      });
      assert.ok(err instanceof TimeoutError, String(err));
      assert.ok(took < 1500, `took ${took} ms with a 100 ms deadline (each answer takes 2 s)`);
      // Three slow answers were offered; how many attempts fit into 100 ms depends on the timers.
      assert.ok(fixture.used >= 1 && fixture.used < 3, `${fixture.used} attempts`);
      fixture.dropUnused();
    }, { client: { timeoutMs: 60, retry: { deadlineMs: 100 } } });
  });

  test('an aborted call ends with an AbortedError and is not retried', async () => {
    const slow = loadFixture('timeout-get-retried')[0]!;
    await withFixture([slow], async (client) => {
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 10);
      const err = await rejection(() => client.getBuild(ref, { signal: controller.signal }));
      assert.equal(err.name, 'AbortedError');
      assert.ok(err.message.endsWith(`(GET ${BUILDS})`), err.message);
    });
  });
});

describe('bodies', () => {
  const big = replyBody<Build>(loadFixture('get-build'), 0);
  big.metadata.annotations = { note: 'x'.repeat(2048) };
  const limit = { bodyLimitBytes: 1024 };

  test('a reply over bodyLimitBytes (declared by content-length) is a ResponseError', async () => {
    const text = JSON.stringify(big);
    const exchanges: Exchange[] = [
      {
        request: { method: 'GET', path: BUILDS },
        reply: { status: 200, headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)) }, body: big },
      },
    ];
    await withFixture(exchanges, async (client) => {
      const err = await rejection(() => client.getBuild(ref));
      assert.ok(err instanceof ResponseError, `${err.name}: ${err.message}`);
      assert.match(err.message, /response body of \d+ bytes exceeds the 1024-byte limit/);
    }, { client: limit });
  });

  test('a reply over bodyLimitBytes (streamed, no content-length) is a ResponseError', async () => {
    const exchanges: Exchange[] = [{ request: { method: 'GET', path: BUILDS }, reply: { status: 200, body: big } }];
    await withFixture(exchanges, async (client) => {
      const err = await rejection(() => client.getBuild(ref));
      assert.ok(err instanceof ResponseError, `${err.name}: ${err.message}`);
      assert.match(err.message, /response body exceeds the 1024-byte limit/);
    }, { client: limit });
  });

  test('an error body over the limit is cut off too (not parsed, not retried)', async () => {
    const exchanges: Exchange[] = [
      { request: { method: 'GET', path: BUILDS }, reply: { status: 500, body: 'x'.repeat(4096) } },
    ];
    await withFixture(exchanges, async (client) => {
      const err = await rejection(() => client.getBuild(ref));
      assert.ok(err instanceof ResponseError, `${err.name}: ${err.message}`);
      assert.equal(err.statusCode, 500);
    }, { client: limit });
  });

  test('terminal control characters in an error body never reach the message', async () => {
    const exchanges: Exchange[] = [
      { request: { method: 'GET', path: BUILDS }, reply: { status: 400, body: '\u001b[2J\u001b[31mboom\u0007\u0000done' } },
    ];
    await withFixture(exchanges, async (client) => {
      const err = await rejection(() => client.getBuild(ref));
      assert.ok(err instanceof ApiError, String(err));
      assert.equal(err.bodySnippet, '[2J [31mboom done');
      assert.doesNotMatch(err.message, /[\u0000-\u001f\u007f]/);
    });
  });

  test('an HTML 502 is an ApiError with the status code and a short, sanitised snippet', async () => {
    await withFixture('html-502', async (client) => {
      const err = await rejection(() => client.getBuild(ref));
      assert.ok(err instanceof ApiError, String(err));
      assert.equal(err.statusCode, 502);
      assert.equal(err.reason, 'InternalError');
      assert.equal(err.serverMessage, 'the server reported a bad gateway');
      const snippet = err.bodySnippet!;
      assert.ok(snippet.startsWith('<html> <head><title>502 Bad Gateway</title></head> <body>'), snippet);
      assert.ok(snippet.length <= 160, `snippet of ${snippet.length} characters`);
      assert.ok(snippet.endsWith('...'), snippet);
      assert.doesNotMatch(snippet, /[\r\n\t]/);
      assert.ok(err.message.startsWith('502 InternalError: the server reported a bad gateway: "<html>'), err.message);
      assert.ok(err.message.endsWith(`(GET ${BUILDS})`), err.message);
    }, { client: { retry: { maxRetries: 0 } } });
  });
});

describe('error messages', () => {
  const token = 'test-token-do-not-print';

  /** One of each error kind, from a server that echoes the token wherever it can. */
  async function collect(): Promise<Error[]> {
    const echo = `Authorization: Bearer ${token}`;
    const exchanges: Exchange[] = [
      { comment: 'a Status whose message echoes the token', request: { method: 'GET', path: BUILDS }, reply: { status: 401, body: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: `invalid bearer token (${echo})`, reason: 'Unauthorized', code: 401 } } },
      { comment: 'an HTML page that echoes the request', request: { method: 'GET', path: BUILDS }, reply: { status: 400, headers: { 'content-type': 'text/html' }, body: `<pre>${echo}</pre>` } },
      { comment: '2xx that is not JSON, echoing the token', request: { method: 'GET', path: BUILDS }, reply: { status: 200, headers: { 'content-type': 'text/plain' }, body: echo } },
      { comment: 'a network failure whose text carries the token', request: { method: 'PATCH', path: STATUS }, error: `EPROTO ${echo}` },
      { request: { method: 'PUT', path: STATUS }, reply: { status: 409, body: loadFixture('replace-build-status-conflict')[0]!.reply!.body } },
    ];
    const f = createFixture(exchanges);
    const transport = createTransport({
      server: TEST_SERVER,
      dispatcher: f.agent,
      tokenSource: new StaticTokenSource(token),
      retry: { maxRetries: 0 },
    });
    const errors: Error[] = [];
    errors.push(await rejection(() => transport.request({ method: 'GET', path: BUILDS })));
    errors.push(await rejection(() => transport.request({ method: 'GET', path: BUILDS })));
    errors.push(await rejection(() => transport.request({ method: 'GET', path: BUILDS })));
    errors.push(await rejection(() => transport.request({ method: 'PATCH', path: STATUS, body: undefined })));
    errors.push(await rejection(() => transport.request({ method: 'PUT', path: STATUS })));
    await f.close();
    f.assertDone();
    return errors;
  }

  test('every request error ends with (METHOD /path)', async () => {
    const errors = await collect();
    assert.deepEqual(errors.map((e) => e.name), ['ApiError', 'ApiError', 'ResponseError', 'NetworkError', 'ApiError']);
    for (const err of errors) {
      assert.ok(isSpotError(err), String(err));
      assert.match(err.message, /\((GET|PUT|PATCH|POST) \/[^\s()]+\)$/, err.message);
    }
    assert.ok(errors[4]!.message.endsWith(`(PUT ${STATUS})`), errors[4]!.message);
  });

  test('the token appears in no error message', async () => {
    const errors = await collect();
    for (const err of errors) {
      assert.ok(!err.message.includes(token), `token in ${err.name}: ${err.message}`);
      const snippet = (err as ApiError).bodySnippet;
      if (snippet) assert.ok(!snippet.includes(token), `token in the snippet of ${err.name}`);
      const server = (err as ApiError).serverMessage;
      if (server) assert.ok(!server.includes(token), `token in the server message of ${err.name}`);
    }
  });
});

describe('server text that echoes the token', () => {
  test('a 422 whose causes repeat the Authorization header keeps the token out of the error', async () => {
    const token = 'test-token-echoed-by-a-webhook';
    const exchange: Exchange = {
      comment: 'an admission webhook that quotes the request back in its causes',
      request: { method: 'GET', path: '/apis/spot.release.com/v1alpha1/namespaces/ns/builds/b1' },
      reply: {
        status: 422,
        body: {
          kind: 'Status',
          apiVersion: 'v1',
          metadata: {},
          status: 'Failure',
          message: `denied: Authorization: Bearer ${token}`,
          reason: 'Invalid',
          details: { name: 'b1', kind: 'builds', causes: [{ reason: 'FieldValueInvalid', field: 'metadata', message: `header was Bearer ${token}` }] },
          code: 422,
        },
      },
    };
    await withFixture([exchange], async (client) => {
      const err = await rejection(() => client.getBuild(ref));
      assert.ok(err instanceof ApiError, String(err));
      assert.ok(!JSON.stringify({ message: err.message, details: err.details }).includes(token), 'the token is in the error');
      assert.equal(err.details?.causes?.[0]?.message, 'header was Bearer [REDACTED]');
    }, { config: { tokenSource: new StaticTokenSource(token) } });
  });
});
