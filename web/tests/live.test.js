// Live mode of data-client.js: Firestore listeners after the first answer, polling as the
// fallback in both directions, and what a tab costs. The Firebase Web SDK is a fake here
// (tests/fakes.js FakeFirestoreSdk: the SDK boundary) over the same fake backend as the other
// tests; the real SDK against Google's emulator runs in tests/browser/test_live.py.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  LIVE_PROBE_MS, LIVE_RETRY_MS, RECONNECT_AGAIN_MS, TOMBSTONES, createDataClient, encodeFirestoreDocument,
  encodeFirestoreValue,
} from '../data-client.js';
import {
  FakeBackend, FakeBytes, FakeClock, FakeDocument, FakeDocumentReference, FakeFirestoreSdk,
  FakeGeoPoint, FakeStorage, FakeTimestamp, flush, testToken,
} from './fakes.js';

const BASE = 'http://api.test';
const PROBE = 'https://firestore.test/';

function setup({ live = true, clientOptions = {} } = {}) {
  const clock = new FakeClock();
  const backend = new FakeBackend(clock, { pageSize: 100 });
  const sdk = new FakeFirestoreSdk(backend);
  const net = { firestoreUp: true, probes: 0 };
  const fetch = (url, init) => {
    if (String(url) === PROBE) {
      net.probes += 1;
      return net.firestoreUp ? Promise.resolve(new Response('Ok'))
        : Promise.reject(new TypeError('Failed to fetch'));
    }
    return backend.fetch(url, init);
  };
  const events = [];
  const target = new EventTarget();
  for (const type of ['usersDataChanged', 'dataError']) {
    target.addEventListener(type, (event) => events.push({ type, detail: event.detail }));
  }
  const doc = new FakeDocument();
  const storage = new FakeStorage();
  const make = () => createDataClient({
    baseUrl: BASE, collections: ['users'], pollMs: 5000, fetch, storage,
    getIdToken: async () => testToken('u-live'), // a user: the saved copy is per user
    eventTarget: target, document: doc, now: clock.now, setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout, random: () => 0.5,
    live: live === true ? { sdk, db: sdk.db } : live, ...clientOptions,
  });
  const client = make();
  const calls = () => backend.requests.length;
  const last = () => events.filter((e) => e.type === 'usersDataChanged').at(-1)?.detail;
  return { clock, backend, sdk, net, events, doc, client, calls, last, make };
}

async function started(env) {
  env.backend.seed('users', 3);
  env.clock.time += 60_000; // written a while ago: outside the listeners' slack
  await env.client.start();
  await flush();
  return env;
}

const ids = (detail) => detail.items.map((item) => item.id);

/** Live, and no function call for a while: polling has stopped. */
async function assertLiveAndQuiet({ client, clock, calls }) {
  assert.equal(client.state('users').mode, 'live');
  const now = calls();
  await clock.advance(20_000);
  assert.equal(calls(), now, 'polling stopped');
}

describe('live mode', () => {
  test('listens from the first answer\'s asOf; then a quiet minute costs no call and no read', async () => {
    const env = await started(setup());
    const { client, sdk, clock, calls } = env;
    assert.equal(client.state('users').mode, 'live');
    assert.equal(env.last().mode, 'live');
    const queries = [...sdk.listeners].map((listener) => listener.query);
    assert.deepEqual(queries.map((q) => [q.path, q.filter.field]).sort(),
      [[`${TOMBSTONES}/users/ids`, 'recordedAt'], ['users', 'updatedAt']]);
    // From the read's asOf, less a slack for commits whose server time precedes the read.
    const anchor = Date.parse(client.state('users').asOf);
    for (const { filter } of queries) {
      assert.equal(filter.value.seconds * 1000 + filter.value.nanoseconds / 1e6, anchor - 2000);
    }
    const after = calls();
    const reads = client.usage('users').listenReads;
    assert.equal(reads, 2, 'one read for each empty first answer');
    await clock.advance(60_000);
    assert.equal(calls(), after, 'no function call in a quiet minute');
    assert.equal(client.usage('users').listenReads, reads, 'no read either');
    assert.equal(client.usage('users').calls, after);
    assert.equal(client.state('users').freshAt, clock.now(), 'live data is fresh as of now');
    client.stop();
    assert.equal(sdk.listeners.size, 0, 'stop() ends the listeners');
  });

  test('changes made elsewhere arrive through the listeners, one billed read each', async () => {
    const env = await started(setup());
    const { client, backend, calls, last } = env;
    const before = calls();
    const reads = () => client.usage('users').listenReads;
    const start = reads();

    backend.put('users', { id: 'u9', name: 'New', email: 'new@example.com' });
    await flush();
    assert.ok(ids(last()).includes('u9'));
    assert.equal(reads(), start + 1);

    backend.put('users', { id: 'u1', name: 'Renamed', email: 'n1@example.com' });
    await flush();
    assert.equal(last().items.find((item) => item.id === 'u1').name, 'Renamed');
    assert.equal(reads(), start + 2);

    backend.delete('users', 'u0'); // never changed since the load: only its tombstone says so
    await flush();
    assert.deepEqual(ids(last()), ['u1', 'u2', 'u9']);
    assert.equal(reads(), start + 3);

    backend.delete('users', 'u9'); // leaves the listener's result, and gets a tombstone
    await flush();
    assert.deepEqual(ids(last()), ['u1', 'u2']);
    assert.equal(reads(), start + 4, 'a deleted document is not billed; its tombstone is');
    assert.equal(calls(), before, 'no function call for any of it');
    assert.equal(last().mode, 'live');
    client.stop();
  });

  test('the event detail keeps its shape and adds mode', async () => {
    const env = await started(setup());
    assert.deepEqual(Object.keys(env.last()).sort(), ['asOf', 'cachedAt', 'checkedAt', 'collection',
      'freshAt', 'items', 'mode', 'outdated', 'source', 'stale']);
    assert.equal(env.last().source, 'firestore');
    env.client.stop();
  });

  test('a listener error (a rules denial) drops to polling at once and retries live later', async () => {
    const env = await started(setup());
    const { client, sdk, clock, backend, events, calls } = env;
    const before = calls();
    sdk.fail('permission-denied');
    await clock.advance(1);
    assert.equal(client.state('users').mode, 'polling');
    const error = events.filter((e) => e.type === 'dataError').at(-1).detail.error;
    assert.equal(error.code, 'live_permission_denied');
    assert.equal(error.status, 403);
    assert.equal(client.usage('users').liveError, error);
    assert.equal(calls(), before + 1, 'one poll at once');
    await clock.advance(10_000);
    assert.equal(calls(), before + 3, 'then every pollMs');
    backend.put('users', { id: 'u7', name: 'By poll', email: 'p@example.com' });
    await clock.advance(5_000);
    assert.ok(ids(env.last()).includes('u7'), 'polling delivers');
    const cursor = client.state('users').asOf; // later empty polls keep it (304s)

    await clock.advance(LIVE_RETRY_MS);
    assert.equal(client.state('users').mode, 'live', 'the retry listens again');
    const anchor = [...sdk.listeners][0].query.filter.value;
    assert.equal(anchor.seconds * 1000 + anchor.nanoseconds / 1e6, Date.parse(cursor) - 2000,
      'from the last answer that brought changes');
    await assertLiveAndQuiet(env);
    client.stop();
  });

  test('a denied retry waits twice as long', async () => {
    const env = await started(setup());
    const { client, sdk, clock } = env;
    sdk.deny = 'permission-denied';
    sdk.fail('permission-denied');
    await flush();
    await clock.advance(LIVE_RETRY_MS + 5_000);
    assert.equal(client.state('users').mode, 'polling');
    assert.equal(client.usage('users').liveError.code, 'live_permission_denied');
    sdk.deny = null;
    await clock.advance(LIVE_RETRY_MS);
    assert.equal(client.state('users').mode, 'polling', 'not before 2 x liveRetryMs');
    await clock.advance(LIVE_RETRY_MS + 5_000);
    assert.equal(client.state('users').mode, 'live');
    client.stop();
  });

  test('a short "from cache" spell (the emulator\'s RESET) keeps live; a long one polls', async () => {
    const env = await started(setup());
    const { client, sdk, clock, calls } = env;
    const before = calls();
    sdk.offline();
    await clock.advance(4000);
    sdk.online();
    await clock.advance(5000);
    assert.equal(client.state('users').mode, 'live');
    assert.equal(calls(), before);

    sdk.offline();
    await clock.advance(5500);
    assert.equal(client.state('users').mode, 'polling');
    assert.equal(calls(), before + 1);
    sdk.online();
    await flush();
    await assertLiveAndQuiet(env);
    client.stop();
  });

  test('Firestore unreachable (the probe fails): polling within liveProbeMs; back: reconnect, live', async () => {
    const env = await started(setup());
    const { client, sdk, clock, net, calls } = env;
    await clock.advance(1);
    assert.equal(net.probes, 1, 'a first probe as soon as live');
    await clock.advance(LIVE_PROBE_MS);
    assert.equal(net.probes, 2, 'then every liveProbeMs');
    const before = calls();
    net.firestoreUp = false; // the SDK itself has not noticed (it takes ~30 s in Chromium)
    await clock.advance(LIVE_PROBE_MS);
    assert.equal(client.state('users').mode, 'live', 'one failed probe may be a busy moment');
    await clock.advance(1000);
    assert.equal(net.probes, 4, 'tried again a second later');
    assert.equal(client.state('users').mode, 'polling');
    assert.equal(calls(), before + 1);
    await clock.advance(10_000);
    assert.equal(calls(), before + 3);

    net.firestoreUp = true;
    await clock.advance(LIVE_PROBE_MS);
    assert.deepEqual(sdk.calls, ['disableNetwork', 'enableNetwork'], 'reconnects at once');
    await assertLiveAndQuiet(env);
    client.stop();
  });

  test('back, but the listeners do not answer after the reconnection: it reconnects again', async () => {
    const env = await started(setup());
    const { client, sdk, clock, net } = env;
    await clock.advance(1);
    net.firestoreUp = false;
    await clock.advance(LIVE_PROBE_MS + 1000);
    assert.equal(client.state('users').mode, 'polling');
    net.firestoreUp = true;
    sdk.enablesIgnored = 1; // the first reconnection finds the backend still starting
    await clock.advance(LIVE_PROBE_MS);
    assert.deepEqual(sdk.calls, ['disableNetwork', 'enableNetwork']);
    assert.notEqual(client.state('users').mode, 'live');
    await clock.advance(RECONNECT_AGAIN_MS - LIVE_PROBE_MS);
    assert.equal(sdk.calls.length, 2, 'not before RECONNECT_AGAIN_MS');
    await clock.advance(LIVE_PROBE_MS);
    assert.deepEqual(sdk.calls, ['disableNetwork', 'enableNetwork', 'disableNetwork', 'enableNetwork']);
    await assertLiveAndQuiet(env);
    await clock.advance(RECONNECT_AGAIN_MS * 2);
    assert.equal(sdk.calls.length, 4, 'live again: no more reconnections');
    client.stop();
  });

  test('a probe that never answered is dropped: the SDK alone decides', async () => {
    const env = setup();
    env.net.firestoreUp = false;
    await started(env);
    await env.clock.advance(1);
    assert.equal(env.client.state('users').mode, 'live');
    await env.clock.advance(LIVE_PROBE_MS * 3);
    assert.equal(env.net.probes, 1);
    env.client.stop();
  });

  test('probes pause while the tab is hidden', async () => {
    const env = await started(setup());
    await env.clock.advance(1);
    assert.equal(env.net.probes, 1);
    env.doc.setHidden(true);
    await env.clock.advance(LIVE_PROBE_MS * 4);
    assert.equal(env.net.probes, 1);
    env.doc.setHidden(false);
    await env.clock.advance(1);
    assert.equal(env.net.probes, 2);
    env.client.stop();
  });

  test('no SDK (blocked, misconfigured): polling as before, and usage() says why', async () => {
    for (const live of [Promise.reject(new Error('blocked by the network')), { sdk: {}, db: {} }]) {
      const env = await started(setup({ live }));
      assert.equal(env.client.state('users').mode, 'polling');
      const before = env.calls();
      await env.clock.advance(5000);
      assert.equal(env.calls(), before + 1);
      assert.match(String(env.client.usage('users').liveError), /blocked|live needs/);
      env.client.stop();
    }
  });

  test('an SDK that arrives later (a promise) takes over after the next answer', async () => {
    let resolve;
    const env = setup({ live: new Promise((done) => { resolve = done; }) });
    await started(env);
    assert.equal(env.client.state('users').mode, 'polling');
    resolve({ sdk: env.sdk, db: env.sdk.db });
    await flush();
    assert.equal(env.client.state('users').mode, 'live');
    env.client.stop();
  });

  test('from a snapshot answer: listens from its asOf less a minute (the publisher\'s lag)', async () => {
    const env = setup();
    env.backend.mode = 'snapshot';
    await started(env);
    assert.equal(env.client.state('users').mode, 'live');
    const anchor = [...env.sdk.listeners][0].query.filter.value;
    assert.equal(anchor.seconds * 1000 + anchor.nanoseconds / 1e6,
      Date.parse(env.client.state('users').asOf) - 60_000);
    env.client.stop();
  });

  test('from the tab\'s saved copy while the functions are down: live keeps the data fresh', async () => {
    const env = await started(setup());
    env.client.stop();
    env.backend.mode = 'down';
    const again = env.make();
    await again.start();
    await flush();
    assert.equal(again.state('users').mode, 'live');
    assert.equal(again.state('users').stale, false);
    env.backend.put('users', { id: 'u8', name: 'Meanwhile', email: 'm@example.com' });
    await flush();
    assert.ok(again.items('users').some((item) => item.id === 'u8'));
    again.stop();
  });

  test('the copy is not undone: a local write newer than a listener version, a re-created document', async () => {
    const env = await started(setup());
    const { client, backend, last } = env;
    const created = await client.create('users', { id: 'u5', name: 'Mine', email: 'm@example.com' });
    await flush();
    assert.equal(last().items.find((item) => item.id === 'u5').updatedAt, created.updatedAt);
    // Deleted and created again: the tombstone (older) must not remove the new version.
    backend.delete('users', 'u2');
    backend.tombstones.get('users').set('u2', backend.stamp());
    const recreated = backend.put('users', { id: 'u2', name: 'Back', email: 'b@example.com' });
    backend.tombstones.get('users').set('u2', '2000-01-01T00:00:00Z'); // an old deletion
    backend.changed();
    await flush();
    assert.equal(last().items.find((item) => item.id === 'u2')?.updatedAt, recreated.updatedAt);
    client.stop();
  });

  test('a listener answer older than this tab\'s own delete does not bring the row back', async () => {
    const env = setup();
    env.backend.seed('users', 3);
    env.clock.time += 60_000;
    const { client, backend, sdk } = env;
    // Hold the listeners' answers, as a slow connection does.
    const held = [];
    const listen = sdk.listen.bind(sdk);
    sdk.onSnapshot = (query, options, next, error) => listen(query, options,
      (snapshot) => held.push(() => next(snapshot)), error);
    backend.put('users', { id: 'u1', name: 'Changed', email: 'n1@example.com' }); // in the slack
    await client.start();
    await flush();
    const fromBefore = held.length; // the first answers, which hold u1
    assert.equal(fromBefore, 2);
    await client.remove('users', 'u1');
    assert.ok(!client.items('users').some((item) => item.id === 'u1'));
    for (const deliver of held.slice(0, fromBefore)) deliver();
    await flush();
    assert.ok(!client.items('users').some((item) => item.id === 'u1'), 'not back, not even a moment');
    client.stop();
  });
});

describe('encodeFirestoreValue: the read API\'s JSON (shared/encoding.py)', () => {
  const sdk = new FakeFirestoreSdk(new FakeBackend(new FakeClock()));

  test('timestamps, geopoints, references, bytes, numbers, nesting', () => {
    assert.equal(encodeFirestoreValue(new FakeTimestamp(1714564800, 0), sdk), '2024-05-01T12:00:00Z');
    assert.equal(encodeFirestoreValue(new FakeTimestamp(1714564800, 123000000), sdk),
      '2024-05-01T12:00:00.123Z');
    assert.equal(encodeFirestoreValue(new FakeTimestamp(1714564800, 5), sdk),
      '2024-05-01T12:00:00.000000005Z');
    assert.deepEqual(encodeFirestoreValue(new FakeGeoPoint(1.5, -2), sdk), { latitude: 1.5, longitude: -2 });
    assert.equal(encodeFirestoreValue(new FakeDocumentReference('users/u1'), sdk), 'users/u1');
    assert.equal(encodeFirestoreValue(new FakeBytes('AAE='), sdk), 'AAE=');
    assert.deepEqual([NaN, Infinity, -Infinity, 3, 2.5, null, true].map((v) => encodeFirestoreValue(v, sdk)),
      ['NaN', 'Infinity', '-Infinity', 3, 2.5, null, true]);
    assert.deepEqual(encodeFirestoreValue({ a: [new FakeTimestamp(0, 0)], b: { c: 'x' } }, sdk),
      { a: ['1970-01-01T00:00:00Z'], b: { c: 'x' } });
  });

  test('documents: id first, then the fields by name', () => {
    const item = encodeFirestoreDocument('u1', { name: 'Ada', email: 'a@b.c', id: 'ignored' }, sdk);
    assert.deepEqual(Object.keys(item), ['id', 'email', 'name']);
    assert.equal(JSON.stringify(item), '{"id":"u1","email":"a@b.c","name":"Ada"}');
  });
});
