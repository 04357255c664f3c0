// Unit tests of data-client.js with node's test runner: `node --test web/tests/` (or `npm test`
// in web/). Nothing real is used: `fetch` is a fake backend (tests/fakes.js) that plays the
// functions' read and write API, `sessionStorage` is an in-memory fake, and time (`now`,
// `setTimeout`) is a fake clock the tests move by hand.

import assert from 'node:assert/strict';
import { beforeEach, describe, test } from 'node:test';

import {
  ApiError, CACHE_TTL_MS, ValidationError, compareTimestamps, createDataClient,
} from '../data-client.js';
import {
  FakeBackend, FakeClock, FakeDocument, FakeStorage, flush, testToken,
} from './fakes.js';

const BASE = 'http://api.test';
const USER_TOKEN = testToken('u-test');
const TOK1 = testToken('u-tok', { admin: true, n: 1 });
const TOK2 = testToken('u-tok', { admin: true, n: 2 });

function setup({ backend: backendOptions = {}, client: clientOptions = {} } = {}) {
  const clock = new FakeClock();
  const backend = new FakeBackend(clock, backendOptions);
  const storage = clientOptions.storage ?? new FakeStorage();
  const doc = new FakeDocument();
  const target = new EventTarget();
  const events = [];
  for (const type of ['usersDataChanged', 'jobsDataChanged', 'dataError']) {
    target.addEventListener(type, (event) => events.push({ type, detail: event.detail }));
  }
  const make = (extra = {}) => createDataClient({
    baseUrl: BASE,
    collections: ['users', 'jobs'],
    pollMs: 5000,
    fetch: backend.fetch,
    storage,
    eventTarget: target,
    document: doc,
    now: clock.now,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    random: () => 0.5,
    getIdToken: async () => USER_TOKEN, // a user: the saved copy is per user
    ...clientOptions,
    ...extra,
  });
  return { clock, backend, storage, doc, target, events, make };
}

const ids = (items) => items.map((item) => item.id);
const changes = (events, type = 'usersDataChanged') => events.filter((e) => e.type === type);
const lastChange = (events, type = 'usersDataChanged') => changes(events, type).at(-1)?.detail;
const lists = (backend, collection = 'users') => backend.requests.filter(
  (r) => r.method === 'GET' && r.path === `/${collection}`);

describe('loading', () => {
  test('pages through nextPageToken and emits <collection>DataChanged on the client and window', async () => {
    const { backend, events, make } = setup();
    backend.seed('users', 5);
    backend.seed('jobs', 1, 'j');
    const client = make();
    const own = [];
    client.addEventListener('usersDataChanged', (e) => own.push(e.detail));
    await client.start();
    assert.equal(lists(backend).length, 3, 'five users in pages of two');
    assert.deepEqual(lists(backend).map((r) => r.params.get('pageToken')), [null, 'u1', 'u3']);
    const detail = lastChange(events);
    assert.deepEqual(ids(detail.items), ['u0', 'u1', 'u2', 'u3', 'u4']);
    assert.equal(detail.source, 'firestore');
    assert.equal(detail.stale, false);
    assert.match(detail.asOf, /^\d{4}-\d\d-\d\dT/);
    assert.equal(detail.collection, 'users');
    assert.equal(own.length, 1);
    assert.deepEqual(ids(own[0].items), ids(detail.items));
    assert.deepEqual(ids(lastChange(events, 'jobsDataChanged').items), ['j0']);
    assert.deepEqual(ids(client.items('users')), ids(detail.items));
    client.stop();
  });

  test('asOf is the earliest of the pages, so changes made while paging come with the next poll', async () => {
    const { backend, make } = setup();
    backend.seed('users', 5);
    const client = make({ collections: ['users'] });
    await client.start();
    assert.equal(backend.listAsOfs.length, 3);
    assert.equal(client.state('users').asOf, backend.listAsOfs[0]);
    client.stop();
  });

  test('passes the page size as limit when one is set', async () => {
    const { backend, make } = setup();
    backend.seed('users', 3);
    const client = make({ pageSize: 500 });
    await client.start();
    assert.equal(lists(backend)[0].params.get('limit'), '500');
    assert.equal(lists(backend).length, 1);
    client.stop();
  });

  test('falls back to the server\'s page size when ours is above its MAX_LIMIT', async () => {
    const { backend, make } = setup();
    backend.seed('users', 3);
    backend.maxLimit = 100;
    const client = make({ pageSize: 500, collections: ['users'] });
    await client.start();
    assert.deepEqual(ids(client.items('users')), ['u0', 'u1', 'u2']);
    assert.equal(lists(backend)[0].params.get('limit'), '500');
    assert.equal(lists(backend).at(-1).params.get('limit'), null);
    client.stop();
  });

  test('reports the snapshot source the read function answered from', async () => {
    const { backend, events, make } = setup();
    backend.seed('users', 1);
    backend.mode = 'snapshot';
    const client = make();
    await client.start();
    assert.equal(lastChange(events).source, 'snapshot');
    assert.equal(lastChange(events).stale, false);
    client.stop();
  });

  test('collections may be given as { name: url } for functions with URLs of their own', async () => {
    const { backend, make } = setup();
    backend.seed('users', 1);
    const client = make({ collections: { users: 'http://api.test/users/' } });
    await client.start();
    assert.deepEqual(client.collections, ['users']);
    assert.deepEqual(ids(client.items('users')), ['u0']);
    assert.equal(backend.requests[0].url.href, 'http://api.test/users');
    client.stop();
  });

  test('requests never send cookies; outside a browser they skip the HTTP cache', async () => {
    const { backend, make } = setup();
    const client = make();
    await client.start();
    assert.equal(backend.requests[0].init.credentials, 'omit');
    assert.equal(backend.requests[0].init.cache, 'no-store');
    client.stop();
  });
});

describe('the saved copy (in a Storage here)', () => {
  test('an unreachable backend shows the last good copy, badged stale, within maxCacheAgeMs', async () => {
    const env = setup();
    env.backend.seed('users', 3);
    const first = env.make();
    await first.start();
    first.stop();

    env.clock.time += CACHE_TTL_MS - 1000; // a reload just within maxCacheAgeMs
    env.backend.mode = 'down';
    env.events.length = 0;
    const second = env.make();
    await second.start();
    const detail = lastChange(env.events);
    assert.deepEqual(ids(detail.items), ['u0', 'u1', 'u2']);
    assert.equal(detail.source, 'cache');
    assert.equal(detail.stale, true);
    assert.ok(detail.asOf, 'the copy keeps the asOf of its data');
    assert.ok(env.events.some((e) => e.type === 'dataError' && e.detail.error.code === 'network_error'));
    second.stop();
  });

  test('a copy older than maxCacheAgeMs is not used (and is dropped)', async () => {
    const env = setup();
    env.backend.seed('users', 3);
    const first = env.make();
    await first.start();
    first.stop();
    assert.equal(env.storage.map.size, 2);

    env.clock.time += CACHE_TTL_MS + 1000;
    env.backend.mode = 'down';
    env.events.length = 0;
    const second = env.make();
    await second.start();
    assert.equal(changes(env.events).length, 0);
    assert.equal(second.state('users').source, null);
    assert.ok(env.events.some((e) => e.type === 'dataError'));
    assert.equal(env.storage.map.size, 0);
    second.stop();
  });

  test('a 503 from the read function (Firestore and snapshot both down) uses the copy too', async () => {
    const env = setup();
    env.backend.seed('users', 2);
    const first = env.make();
    await first.start();
    first.stop();
    env.backend.mode = 'unavailable';
    const second = env.make();
    await second.start();
    assert.equal(second.state('users').source, 'cache');
    assert.equal(second.state('users').stale, true);
    second.stop();
  });

  test('an auth refusal takes the copy shown before the answer away, and deletes it', async () => {
    // Changed by issue 22: the copy is now shown before the read answers (it used to wait for
    // a failure), so a refusal can no longer "not show" it: it takes it back at once.
    const env = setup();
    env.backend.seed('users', 2);
    const first = env.make();
    await first.start();
    first.stop();
    await flush();
    env.backend.token = 'needed';
    env.events.length = 0;
    const second = env.make();
    await second.start();
    const shown = changes(env.events).map((e) => [e.detail.source, e.detail.items.length]);
    assert.deepEqual(shown, [['cache', 2], [null, 0]]);
    assert.equal(second.state('users').source, null);
    const error = env.events.find((e) => e.type === 'dataError').detail.error;
    assert.equal(error.status, 401);
    assert.ok(![...env.storage.map.keys()].some((key) => key.endsWith('/users')), 'deleted');
    second.stop();
  });

  test('a full storage is not an error', async () => {
    const env = setup({ client: { storage: new FakeStorage({ full: true }) } });
    env.backend.seed('users', 2);
    const client = env.make();
    await client.start();
    assert.deepEqual(ids(client.items('users')), ['u0', 'u1']);
    client.stop();
  });

  test('storage: null keeps no copy', async () => {
    const env = setup();
    const client = env.make({ storage: null });
    await client.start();
    assert.equal(env.storage.map.size, 0);
    client.stop();
  });
});

describe('polling', () => {
  let env;
  let client;

  beforeEach(async () => {
    env = setup();
    env.backend.seed('users', 3);
    client = env.make();
    await client.start();
    env.events.length = 0;
    env.backend.requests.length = 0;
  });

  test('asks for changes since asOf, then revalidates with If-None-Match (304)', async () => {
    const asOf = client.state('users').asOf;
    await env.clock.advance(5000);
    const first = env.backend.last((r) => r.path === '/users');
    assert.equal(first.params.get('updatedSince'), asOf);
    assert.equal(first.headers.get('If-None-Match'), null);
    await env.clock.advance(5000);
    const second = env.backend.last((r) => r.path === '/users');
    assert.equal(second.params.get('updatedSince'), asOf, 'an empty delta keeps the cursor');
    assert.match(second.headers.get('If-None-Match'), /^W\/"/);
    assert.equal(changes(env.events).length, 0, 'nothing changed: no event');
    assert.equal(client.state('users').checkedAt, env.clock.now());
    client.stop();
  });

  test('merges changed documents and applies deletions without a reload', async () => {
    env.backend.put('users', { id: 'u1', name: 'Renamed', email: 'n1@example.com' });
    env.backend.put('users', { id: 'u9', name: 'New', email: 'n9@example.com' });
    env.backend.delete('users', 'u0');
    await env.clock.advance(5000);
    const detail = lastChange(env.events);
    assert.deepEqual(ids(detail.items), ['u1', 'u2', 'u9']);
    assert.equal(detail.items[0].name, 'Renamed');
    const cursor = client.state('users').asOf;
    await env.clock.advance(5000);
    assert.equal(env.backend.last((r) => r.path === '/users').params.get('updatedSince'), cursor);
    assert.equal(changes(env.events).length, 1);
    assert.equal(lists(env.backend).filter((r) => !r.params.get('updatedSince')).length, 0,
      'the server reports deletions: no full reload needed');
    client.stop();
  });

  test('the saved copy follows the merged data', async () => {
    env.backend.put('users', { id: 'u7', name: 'Seven', email: 's@example.com' });
    await env.clock.advance(5000);
    const saved = JSON.parse([...env.storage.map.entries()]
      .find(([key]) => key.endsWith('/users'))[1]);
    assert.ok(saved.items.some((item) => item.id === 'u7'));
    client.stop();
  });

  test('without `deleted` in the answers, a full reload every resyncMs catches deletions', async () => {
    client.stop();
    env = setup({ backend: { reportDeletions: false } });
    env.backend.seed('users', 3);
    client = env.make({ resyncMs: 30000 });
    await client.start();
    env.backend.delete('users', 'u2');
    await env.clock.advance(25000);
    assert.deepEqual(ids(client.items('users')), ['u0', 'u1', 'u2'], 'not seen by deltas');
    await env.clock.advance(10000);
    assert.deepEqual(ids(client.items('users')), ['u0', 'u1']);
    client.stop();
  });

  test('pauses while the tab is hidden and catches up when it is shown', async () => {
    env.doc.setHidden(true);
    await env.clock.advance(60000);
    assert.equal(env.backend.requests.length, 0, 'no request while hidden');
    env.backend.put('users', { id: 'u5', name: 'Five', email: 'f@example.com' });
    env.doc.setHidden(false);
    await env.clock.advance(0);
    assert.ok(ids(client.items('users')).includes('u5'));
    assert.deepEqual(new Set(env.backend.requests.map((r) => r.path)), new Set(['/users', '/jobs']),
      'both collections polled on showing');
    client.stop();
  });

  test('backs off exponentially with jitter on errors, honours Retry-After, and recovers', async () => {
    env.backend.mode = 'down';
    await env.clock.advance(5000); // first failed poll
    assert.equal(client.state('users').stale, true);
    assert.equal(client.state('users').source, 'cache');
    assert.deepEqual(ids(lastChange(env.events).items), ['u0', 'u1', 'u2'], 'the data stays shown');
    // random() = 0.5 gives three quarters of the ceiling: 5 s, 10 s, 20 s, 40 s, then the 60 s cap.
    const delays = [];
    for (let i = 0; i < 5; i += 1) {
      const before = env.backend.requests.length;
      let waited = 0;
      while (env.backend.requests.length === before) {
        await env.clock.advance(250);
        waited += 250;
      }
      delays.push(waited);
    }
    assert.deepEqual(delays, [3750, 7500, 15000, 30000, 45000]);
    env.backend.mode = 'unavailable';
    env.backend.retryAfter = '120';
    await env.clock.advance(45000);
    const before = env.backend.requests.length;
    await env.clock.advance(119000);
    assert.equal(env.backend.requests.length, before, 'Retry-After is longer than the backoff');
    env.backend.mode = 'firestore';
    env.backend.put('users', { id: 'u3', name: 'Back', email: 'b@example.com' });
    await env.clock.advance(2000);
    const detail = lastChange(env.events);
    assert.equal(detail.stale, false);
    assert.equal(detail.source, 'firestore');
    assert.ok(ids(detail.items).includes('u3'));
    // Healthy again: the normal interval.
    const count = env.backend.requests.length;
    await env.clock.advance(5000);
    assert.equal(env.backend.requests.length, count + 2);
    client.stop();
  });

  test('a source change shows even when the data did not change (304 from the snapshot)', async () => {
    await env.clock.advance(5000); // an empty delta: the next poll revalidates
    env.backend.mode = 'snapshot';
    await env.clock.advance(5000);
    assert.equal(lastChange(env.events).source, 'snapshot');
    client.stop();
  });

  test('in a browser, reads leave If-None-Match to the HTTP cache (keeps CORS preflights cached)', async () => {
    client.stop();
    env = setup();
    env.backend.seed('users', 1);
    client = env.make({ httpCache: true });
    await client.start();
    await env.clock.advance(10000);
    const reads = env.backend.requests.filter((r) => r.method === 'GET');
    assert.ok(reads.length >= 4);
    for (const read of reads) {
      assert.equal(read.headers.get('If-None-Match'), null);
      assert.equal(read.init.cache, 'default');
    }
    await client.create('users', { name: 'W', email: 'w@example.com' });
    assert.equal(env.backend.last().init.cache, 'no-store');
    client.stop();
  });

  test('a full reload that brings the same data emits nothing', async () => {
    client.stop();
    env = setup({ backend: { reportDeletions: false } });
    env.backend.seed('users', 3);
    client = env.make({ resyncMs: 10000, collections: ['users'] });
    await client.start();
    env.events.length = 0;
    await env.clock.advance(30000);
    assert.ok(lists(env.backend).filter((r) => !r.params.get('updatedSince')).length >= 3,
      'full reloads happened');
    assert.equal(changes(env.events).length, 0);
    client.stop();
  });

  test('stop() stops polling', async () => {
    client.stop();
    await env.clock.advance(60000);
    assert.equal(env.backend.requests.length, 0);
  });

  test('pollMs: 0 turns polling off; refresh() polls on demand', async () => {
    client.stop();
    env = setup();
    client = env.make({ pollMs: 0 });
    await client.start();
    env.backend.requests.length = 0;
    await env.clock.advance(60000);
    assert.equal(env.backend.requests.length, 0);
    env.backend.put('users', { id: 'x', name: 'X', email: 'x@example.com' });
    await client.refresh('users');
    assert.deepEqual(ids(client.items('users')), ['x']);
  });
});

describe('writes', () => {
  let env;
  let client;
  const tokens = [];

  beforeEach(async () => {
    env = setup({ backend: { token: TOK1 } });
    env.backend.seed('users', 2);
    tokens.length = 0;
    client = env.make({
      pollMs: 0,
      getIdToken: async (force) => {
        tokens.push(force);
        return TOK1;
      },
    });
    await client.start();
    env.events.length = 0;
    env.backend.requests.length = 0;
  });

  test('create() posts JSON with the Bearer token and shows the new document at once', async () => {
    const created = await client.create('users', { name: 'Ada', email: 'ada@example.com' });
    const request = env.backend.last();
    assert.equal(request.method, 'POST');
    assert.equal(request.url.href, `${BASE}/users`);
    assert.equal(request.headers.get('Authorization'), `Bearer ${TOK1}`);
    assert.equal(request.headers.get('Content-Type'), 'application/json');
    assert.deepEqual(request.body, { name: 'Ada', email: 'ada@example.com' });
    assert.equal(created.id, 'gen3');
    assert.ok(created.createdAt && created.updatedAt, 'server timestamps come back');
    assert.equal(changes(env.events).length, 1, 'the local copy changed without a poll');
    assert.ok(ids(lastChange(env.events).items).includes('gen3'));
    await flush(); // the copy is saved in the background
    const saved = [...env.storage.map.entries()].find(([key]) => key.endsWith('/users'))[1];
    assert.ok(saved.includes('gen3'), 'and so did the saved copy');
  });

  test('every read sends the token too', async () => {
    await client.refresh('users');
    assert.equal(env.backend.last().headers.get('Authorization'), `Bearer ${TOK1}`);
  });

  test('a 401 asks getIdToken for a fresh token once', async () => {
    env.backend.token = TOK2;
    let calls = 0;
    const refreshing = env.make({
      pollMs: 0,
      getIdToken: async (force) => {
        calls += 1;
        return force ? TOK2 : TOK1;
      },
    });
    const created = await refreshing.create('users', { name: 'B', email: 'b@example.com' });
    assert.equal(created.name, 'B');
    assert.equal(calls, 2);
  });

  test('field errors come back as a ValidationError with .fields, and nothing changes locally', async () => {
    await assert.rejects(client.create('users', { name: '', email: 'nope' }), (error) => {
      assert.ok(error instanceof ValidationError);
      assert.ok(error instanceof ApiError);
      assert.equal(error.status, 400);
      assert.equal(error.code, 'validation_failed');
      assert.deepEqual(error.fields, [
        { field: 'name', message: 'must not be empty' },
        { field: 'email', message: 'must be an email address' },
      ]);
      assert.deepEqual(error.byField, { name: 'must not be empty', email: 'must be an email address' });
      return true;
    });
    assert.equal(changes(env.events).length, 0);
  });

  test('a taken id is a 409 ApiError with code conflict', async () => {
    await assert.rejects(client.create('users', { id: 'u0', name: 'X', email: 'x@example.com' }),
      (error) => error instanceof ApiError && error.status === 409 && error.code === 'conflict');
  });

  test('update() sends If-Match with the ETag of the version it holds; 412 when it changed meanwhile', async () => {
    const { etag } = await client.fetchOne('users', 'u1');
    await client.update('users', 'u1', { name: 'Mine' });
    assert.equal(env.backend.last().method, 'PATCH');
    assert.equal(env.backend.last().url.pathname, '/users/u1');
    assert.equal(env.backend.last().headers.get('If-Match'), etag);
    assert.equal(client.items('users').find((u) => u.id === 'u1').name, 'Mine');
    // Someone else changes it: our next update (with the ETag of our write) is refused.
    env.backend.put('users', { ...env.backend.collections.get('users').get('u1'), name: 'Theirs' });
    await assert.rejects(client.update('users', 'u1', { name: 'Mine again' }),
      (error) => error.status === 412 && error.code === 'precondition_failed');
    // ifMatch: false overrides the precondition.
    const forced = await client.update('users', 'u1', { name: 'Forced' }, { ifMatch: false });
    assert.equal(forced.name, 'Forced');
    assert.equal(env.backend.last().headers.get('If-Match'), null);
  });

  test('an ETag seen before a polled change is not sent (the poll brought a newer version)', async () => {
    await client.fetchOne('users', 'u1');
    env.backend.put('users', { ...env.backend.collections.get('users').get('u1'), name: 'Theirs' });
    await client.refresh('users');
    const updated = await client.update('users', 'u1', { name: 'After' });
    assert.equal(env.backend.last().headers.get('If-Match'), null);
    assert.equal(updated.name, 'After');
  });

  test('fetchOne() gives the ETag but never puts an older version into the list', async () => {
    const newer = env.backend.put('users', { id: 'u1', name: 'Newer', email: 'n@example.com' });
    await client.refresh('users');
    // An instance's read cache still answers the older version for a moment.
    const older = { ...newer, name: 'Older', updatedAt: '2001-01-01T00:00:00Z' };
    env.backend.collections.get('users').set('u1', older);
    const { item, etag } = await client.fetchOne('users', 'u1');
    assert.equal(item.name, 'Older');
    assert.equal(client.items('users').find((u) => u.id === 'u1').name, 'Newer');
    // An update based on what fetchOne returned carries its ETag.
    await client.update('users', 'u1', { name: 'Edited' });
    assert.equal(env.backend.last().headers.get('If-Match'), etag);
  });

  test('replace() PUTs the whole document (201 when it creates one)', async () => {
    const stored = await client.replace('users', 'new id/é', { name: 'N', email: 'n@example.com' });
    assert.equal(env.backend.last().method, 'PUT');
    assert.equal(env.backend.last().url.pathname, '/users/new%20id%2F%C3%A9');
    assert.equal(stored.id, 'new id/é');
    assert.ok(ids(client.items('users')).includes('new id/é'));
  });

  test('remove() deletes, drops the document at once, and is idempotent', async () => {
    assert.equal(await client.remove('users', 'u0'), true);
    assert.equal(env.backend.last().method, 'DELETE');
    assert.deepEqual(ids(lastChange(env.events).items), ['u1']);
    assert.equal(await client.remove('users', 'u0'), false, 'already gone');
  });

  test('a poll answer computed before a write does not undo it', async () => {
    let release;
    env.backend.gate = new Promise((resolve) => {
      release = resolve;
    });
    const polling = client.refresh('users'); // held in flight, its answer predates the writes
    await flush();
    env.backend.gate = null;
    await client.create('users', { id: 'late', name: 'Late', email: 'l@example.com' });
    await client.remove('users', 'u1');
    // The held poll now answers with data from before the writes... (the fake answers at
    // release time, so make it older by hand: put u1 back and hide `late` from the answer)
    env.backend.collections.get('users').set('u1', { id: 'u1', name: 'Old', updatedAt: '2000-01-01T00:00:00Z' });
    const late = env.backend.collections.get('users').get('late');
    env.backend.collections.get('users').delete('late');
    release();
    await polling;
    env.backend.collections.get('users').set('late', late);
    assert.deepEqual(ids(client.items('users')), ['late', 'u0']);
  });

  test('a snapshot answer older than our writes does not undo them (no vanishing users)', async () => {
    const snapshotTime = env.backend.stamp(); // the snapshot was published before the writes
    const mine = await client.update('users', 'u0', { name: 'Newest' });
    const added = await client.create('users', { name: 'Added', email: 'added@example.com' });
    await client.remove('users', 'u1');
    // Firestore fails: the read function answers from the snapshot, which predates the writes.
    const docs = env.backend.collections.get('users');
    docs.set('u0', { ...mine, name: 'Older', updatedAt: snapshotTime });
    docs.set('u1', { id: 'u1', name: 'Deleted', email: 'd@example.com', updatedAt: snapshotTime });
    docs.delete(added.id);
    env.backend.mode = 'snapshot';
    env.backend.snapshotAsOf = snapshotTime;
    await client.reload('users');
    assert.equal(client.state('users').source, 'snapshot');
    assert.equal(client.items('users').find((u) => u.id === 'u0').name, 'Newest');
    assert.deepEqual(ids(client.items('users')), [added.id, 'u0']);
    // A newer answer from Firestore is the truth again.
    docs.set('u0', { ...mine, name: 'Changed later' });
    env.backend.put('users', docs.get('u0'));
    env.backend.mode = 'firestore';
    await client.reload('users');
    assert.equal(client.items('users').find((u) => u.id === 'u0').name, 'Changed later');
  });

  test('an older version from a delta never replaces a newer local one', async () => {
    const mine = await client.update('users', 'u0', { name: 'Newest' });
    await client.refresh('users'); // the cursor moves past our write
    env.backend.collections.get('users').set('u0', { ...mine, name: 'Older', updatedAt: '2001-01-01T00:00:00Z' });
    env.backend.put('users', { id: 'u9', name: 'Nine', email: 'n9@example.com' });
    const cursor = client.state('users').asOf;
    // A delta that (wrongly) carries the older version: it must not win.
    env.backend.collections.get('users').get('u0').updatedAt = '2001-01-01T00:00:00Z';
    const original = env.backend.list.bind(env.backend);
    env.backend.list = (collection, params, headers) => {
      const response = original(collection, params, headers);
      return response.json().then((body) => new Response(JSON.stringify({
        ...body, items: [...body.items, { ...mine, name: 'Older', updatedAt: '2001-01-01T00:00:00Z' }],
      }), { status: 200, headers: response.headers }));
    };
    await client.refresh('users');
    assert.notEqual(client.state('users').asOf, cursor);
    assert.equal(client.items('users').find((u) => u.id === 'u0').name, 'Newest');
    assert.ok(ids(client.items('users')).includes('u9'));
  });

  test('writes need a document id where the path has one', async () => {
    await assert.rejects(client.update('users', '', { name: 'x' }), TypeError);
  });
});

describe('compareTimestamps', () => {
  test('orders RFC 3339 timestamps with any number of fraction digits', () => {
    assert.equal(compareTimestamps('2025-01-01T00:00:00.5Z', '2025-01-01T00:00:00.123456789Z'), 1);
    assert.equal(compareTimestamps('2025-01-01T00:00:00Z', '2025-01-01T00:00:00.000000001Z'), -1);
    assert.equal(compareTimestamps('2025-01-01T00:00:01Z', '2025-01-01T00:00:00.999999Z'), 1);
    assert.equal(compareTimestamps('2025-01-01T00:00:00.100Z', '2025-01-01T00:00:00.1Z'), 0);
    assert.equal(compareTimestamps('2025-01-01T01:00:00+01:00', '2025-01-01T00:00:00Z'), 0);
    assert.equal(compareTimestamps(null, '2025-01-01T00:00:00Z'), -1);
  });
});

describe('construction', () => {
  test('refuses odd collection names and unknown collections', () => {
    const { make } = setup();
    assert.throws(() => make({ collections: ['../x'] }), TypeError);
    assert.throws(() => make().state('nope'), TypeError);
  });
});
