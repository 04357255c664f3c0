// Unit tests of the admin views' logic (admin/: api.js, migration/, status-page.js; ui/) and
// of data-client.js's `cachedCopy`, with node's test runner. No browser: only the pure parts
// are tested here (the DOM parts run in Chromium in tests/browser/); `fetch` is a small fake.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { createAdminApi, tokenClaims } from '../admin/api.js';
import { accountRows } from '../admin/migration/report.js';
import {
  newRunId, nextStep, progressOf, progressText, runIdFromHash,
} from '../admin/migration/run.js';
import { sourceProblem } from '../admin/migration/source-form.js';
import {
  cacheRow, liveRow, readRow, serverRows, statusText, userRow,
} from '../admin/status-page.js';
import { viewOf } from '../admin/tools.js';
import { ApiError, createDataClient } from '../data-client.js';
import { explain } from '../ui/explain.js';
import { formatAge, formatBytes, formatDuration } from '../ui/format.js';
import { FakeBackend, FakeClock, FakeStorage, testToken } from './fakes.js';

function jsonResponse(status, body, headers = {}) {
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json', ...headers } });
}

function token(claims) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${part({ alg: 'none' })}.${part(claims)}.`;
}

describe('createAdminApi', () => {
  test('sends the token, parses JSON, and throws ApiError with the function\'s error', async () => {
    const seen = [];
    const api = createAdminApi({
      baseUrl: 'http://api.test/',
      getIdToken: async () => 'tok',
      fetch: async (url, init) => {
        seen.push({ url, init });
        return url.includes('/bad') ? jsonResponse(400, { error: { code: 'invalid_json', message: 'bad', details: { line: 2 } } })
          : jsonResponse(200, { ok: true });
      },
    });
    const answer = await api.call('GET', '/migrate/runs', { query: { limit: 5, skip: undefined } });
    assert.equal(seen[0].url, 'http://api.test/migrate/runs?limit=5');
    assert.equal(seen[0].init.headers.Authorization, 'Bearer tok');
    assert.equal(seen[0].init.credentials, 'omit');
    assert.deepEqual(answer.body, { ok: true });
    await assert.rejects(api.call('GET', '/bad'), (error) => error instanceof ApiError
      && error.status === 400 && error.code === 'invalid_json' && error.details.line === 2);
  });

  test('retries a 401 once with a refreshed token', async () => {
    const forced = [];
    const api = createAdminApi({
      baseUrl: 'http://api.test',
      getIdToken: async (force) => { forced.push(force); return force ? 'new' : 'old'; },
      fetch: async (url, init) => (init.headers.Authorization === 'Bearer new'
        ? jsonResponse(200, {}) : jsonResponse(401, { error: { code: 'expired_token', message: 'expired' } })),
    });
    assert.equal((await api.call('GET', '/migrate/status')).status, 200);
    assert.deepEqual(forced, [false, true]);
  });

  test('an unreachable function or a deadline is status 0', async () => {
    const down = createAdminApi({ baseUrl: 'http://api.test', fetch: async () => { throw new TypeError('Failed to fetch'); } });
    await assert.rejects(down.call('GET', '/x'), (error) => error.status === 0 && error.code === 'unreachable');
    const hung = createAdminApi({
      baseUrl: 'http://api.test',
      fetch: (url, init) => new Promise((resolve, reject) => {
        init.signal.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError')));
      }),
    });
    await assert.rejects(hung.call('GET', '/x', { timeoutMs: 20 }),
      (error) => error.status === 0 && error.code === 'timeout' && /within/.test(error.message));
  });
});

describe('explain', () => {
  const error = (status, code, message = 'm', details = undefined) => new ApiError(message, { status, code, details });

  test('says what happened and what to do, and whether anything was written', () => {
    const json = explain(error(400, 'invalid_json', 'invalid JSON at line 3', { line: 3, column: 10 }), { written: false });
    assert.match(json.what, /not valid JSON/);
    assert.match(json.todo, /line 3, column 10/);
    assert.match(json.todo, /Nothing was written/);
    assert.match(explain(error(403, 'not_admin')).todo, /python -m ops admin grant YOUR_EMAIL/);
    assert.match(explain(error(404, 'unknown_collection')).todo, /COLLECTIONS/);
    assert.match(explain(error(413, 'payload_too_large')).todo, /gs:\/\//);
    const down = explain(error(0, 'unreachable', 'the request failed'), { url: 'http://x/migrate', written: true });
    assert.match(down.what, /http:\/\/x\/migrate cannot be reached/);
    assert.match(down.todo, /ALLOWED_ORIGINS/);
    assert.match(down.todo, /Resume continues/);
    assert.doesNotMatch(explain(error(0, 'unreachable')).todo, /written/);
    assert.match(explain(error(503, 'unavailable'), { written: true }).todo, /kept/);
  });
});

describe('formatting', () => {
  test('bytes, durations, ages and token claims', () => {
    assert.equal(formatBytes(10 * 1024 * 1024), '10.5 MB');
    assert.equal(formatBytes(512), '512 bytes');
    assert.equal(formatDuration(3725), '1:02:05');
    assert.equal(formatDuration(null), '—');
    assert.equal(formatAge(30_000), '30 s');
    assert.equal(formatAge(10 * 60_000), '10 min');
    assert.deepEqual(tokenClaims(token({ sub: 'u1', admin: true, name: 'Zoë' })), { sub: 'u1', admin: true, name: 'Zoë' });
    assert.equal(tokenClaims('not a token'), null);
  });
});

describe('migration panel logic', () => {
  test('run ids are valid, unique and read back from the URL', () => {
    const id = newRunId(new Date('2025-06-01T12:00:00.123Z'), () => 0.5);
    assert.equal(id, 'web-20250601T120000Z-7fffffff');
    assert.match(newRunId(), /^web-\d{8}T\d{6}Z-[0-9a-f]{8}$/);
    assert.equal(runIdFromHash(`#migrate/${id}`), id);
    assert.equal(runIdFromHash('#migrate'), '');
    assert.equal(runIdFromHash('#migrate/a/b'), null);
    assert.equal(runIdFromHash('#status'), null);
  });

  test('sources are checked before anything is sent', () => {
    const file = (size, name = 'users.json') => ({ name, size });
    assert.match(sourceProblem({ kind: 'file', file: null }, 100), /Choose a legacy JSON file/);
    assert.match(sourceProblem({ kind: 'file', file: file(0) }, 100), /users.json is empty/);
    assert.match(sourceProblem({ kind: 'file', file: file(2_000_000) }, 1_000_000), /2.0 MB.*at most 1.0 MB.*gs:\/\//);
    assert.equal(sourceProblem({ kind: 'file', file: file(10) }, 1000), null);
    assert.equal(sourceProblem({ kind: 'file', file: file(10) }, null), null); // limit not known yet
    assert.match(sourceProblem({ kind: 'gcs', uri: 'users.json' }), /gs:\/\/my-bucket/);
    assert.equal(sourceProblem({ kind: 'gcs', uri: 'gs://my-bucket/legacy/users.json' }), null);
  });

  test('progress, account and next step come from the run document', () => {
    const running = { state: 'running', total: 4000, rate: 149.6, etaSeconds: 20,
      counts: { read: 1000, failed: 3, written: 997 } };
    const progress = progressOf(running);
    assert.deepEqual([progress.done, progress.total, progress.percent, progress.failed], [1000, 4000, 25, 3]);
    assert.equal(progressText(progress), '1,000 of 4,000 records · 25% · 150 records/s · ETA 0:00:20 · 3 failed so far');
    assert.equal(nextStep(running), 'poll');
    assert.equal(nextStep({ ...running, state: 'paused' }), 'resume');
    assert.equal(nextStep({ ...running, stalled: true }), 'resume');
    assert.equal(progressOf({ ...running, stalled: true }).state, 'stalled');
    assert.equal(nextStep({ ...running, state: 'completed' }), 'done');
    assert.equal(nextStep(null), 'wait');
    const rows = accountRows({ dryRun: true, total: 129,
      counts: { written: 120, created: 120, updated: 0, unchanged: 0, skipped: 0, failed: 9, read: 129 } });
    assert.deepEqual(rows.map(([name, count]) => [name, count]),
      [['written', 120], ['unchanged', 0], ['skipped', 0], ['failed', 9], ['read', 129]]);
    assert.match(rows[0][2], /would be created 120/);
  });
});

describe('status page logic', () => {
  test('rows of the backend, the read functions, live mode, the cached copy and the user', () => {
    const body = { checks: [{ name: 'fresh users', status: 'FAIL', detail: 'stale by 3 s', latencyMs: 12.5 },
      { name: 'rules', status: 'skip', detail: 'emulator', latencyMs: 0.1 }] };
    assert.deepEqual(serverRows(body).map((row) => [row.id, row.state]), [['fresh-users', 'fail'], ['rules', 'skip']]);
    assert.equal(readRow('users', { ms: 30, status: 200, source: 'firestore' }).state, 'ok');
    const fallback = readRow('users', { ms: 30, status: 200, source: 'snapshot' });
    assert.equal(fallback.state, 'warn');
    assert.match(fallback.text, /snapshot/);
    const failed = readRow('jobs', { error: new ApiError('x', { status: 0, code: 'unreachable' }), url: 'http://a/jobs' });
    assert.equal(failed.state, 'fail');
    assert.match(failed.text, /cannot be reached/);
    assert.equal(liveRow([{ collection: 'users', mode: 'polling' }]).state, 'off');
    assert.match(liveRow([{ collection: 'users', mode: 'polling' }]).text, /not configured/);
    const live = liveRow([{ collection: 'users', mode: 'live' }, { collection: 'jobs', mode: 'live' }]);
    assert.deepEqual([live.state, live.text], ['ok', 'listening to Firestore directly for users, jobs']);
    const lost = liveRow([{ collection: 'users', mode: 'polling', liveError: new Error('Firestore cannot be reached') },
      { collection: 'jobs', mode: 'live' }]);
    assert.equal(lost.state, 'warn');
    assert.match(lost.text, /not live for users \(polling\): Firestore cannot be reached; live for jobs/);
    assert.equal(liveRow([{ collection: 'users', mode: 'live' }, { collection: 'jobs', mode: 'polling' }]).state, 'warn');
    assert.equal(cacheRow('users', null).state, 'off');
    assert.match(cacheRow('users', { count: 240, ageMs: 12_000 }).text, /240 documents saved 12 s ago/);
    assert.equal(userRow(null, {}).state, 'fail');
    const claims = { sub: 'u1', email: 'a@example.com', admin: true };
    assert.equal(userRow(claims, { principal: { uid: 'u1', email: 'a@example.com', admin: true } }).state, 'ok');
    assert.equal(userRow(claims, { error: new ApiError('no', { status: 403, code: 'not_admin' }) }).state, 'warn');
    assert.equal(userRow(claims, { error: new ApiError('down', { status: 0 }) }).state, 'skip');
  });

  test('the copy for a support request has one line per row', () => {
    const text = statusText([
      { link: 'backend', name: 'firestore', state: 'fail', latencyMs: 1001.4, text: 'does not answer' },
      { link: 'this tab', name: 'cached copy users', state: 'ok', latencyMs: null, text: '240 documents' },
    ], { at: '2025-06-01T12:00:00Z', page: 'http://page/', api: 'http://api' });
    assert.equal(text, 'Dashboard status 2025-06-01T12:00:00Z · page http://page/ · API http://api\n'
      + 'FAIL backend / firestore: does not answer [1001 ms]\n'
      + 'ok   this tab / cached copy users: 240 documents');
  });

  test('the tabs follow the hash', () => {
    assert.equal(viewOf('#migrate/web-1'), 'migrate');
    assert.equal(viewOf('#migrate'), 'migrate');
    assert.equal(viewOf('#status'), 'status');
    assert.equal(viewOf(''), 'data');
    assert.equal(viewOf('#migrated'), 'data');
  });
});

describe('DataClient.cachedCopy', () => {
  test('reports this tab\'s saved copy, and none once it has expired', async () => {
    const clock = new FakeClock();
    const backend = new FakeBackend(clock);
    backend.seed('users', 3);
    const storage = new FakeStorage();
    const options = { baseUrl: 'http://api.test', collections: ['users'], pollMs: 0, fetch: backend.fetch,
      storage, now: clock.now, setTimeout: clock.setTimeout, clearTimeout: clock.clearTimeout,
      eventTarget: null, document: null, httpCache: false,
      getIdToken: async () => testToken('u-admin'), maxCacheAgeMs: 5 * 60_000 };
    const client = createDataClient(options);
    assert.equal(client.cachedCopy('users'), null);
    await client.start();
    await clock.advance(30_000);
    const copy = client.cachedCopy('users');
    assert.equal(copy.count, 3);
    assert.equal(copy.ageMs, 30_000);
    await clock.advance(5 * 60_000);
    assert.equal(client.cachedCopy('users'), null);
  });
});
