// Unit tests of the data client's saved copy (web/client/cache.js, issue 22): shown at once on
// start (stale-while-revalidate), per user, bounded, versioned, cleared on sign-out and when the
// admin claim goes, harmless when the store fails; and writes refused offline. Node has no
// IndexedDB: the store here is an in-memory one of the same async shape (`MemoryStore`); the
// browser tests (tests/browser/test_offline.py) run the real IndexedDB store.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { MAX_CACHE_AGE_MS, createDataClient } from '../data-client.js';
import { parseCopy } from '../client/cache.js';
import { CACHE_FORMAT } from '../client/collections.js';
import { copyDetail } from '../client/copy-format.js';
import { tokenIdentity } from '../client/transport.js';
import { FakeBackend, FakeClock, FakeDocument, flush, testToken } from './fakes.js';

const BASE = 'http://api.test';
const ADA = testToken('ada');
const BOB = testToken('bob');

/** The IndexedDB store's shape (client/idb-store.js), in memory; `failing`: every call rejects. */
class MemoryStore {
  constructor({ failing = false } = {}) {
    this.map = new Map();
    this.failing = failing;
  }

  async #ok() {
    if (this.failing) throw Object.assign(new Error('quota exceeded'), { name: 'QuotaExceededError' });
  }

  async get(key) { await this.#ok(); return this.map.get(key) ?? null; }

  async set(key, text) { await this.#ok(); this.map.set(key, text); }

  async delete(key) { await this.#ok(); this.map.delete(key); }

  async clear() { await this.#ok(); this.map.clear(); }

  copy(name = 'users') {
    const entry = [...this.map.entries()].find(([key]) => key.endsWith(`/${name}`));
    return entry ? JSON.parse(entry[1]) : null;
  }
}

function setup({ store = new MemoryStore(), token = ADA } = {}) {
  const clock = new FakeClock();
  const backend = new FakeBackend(clock, { pageSize: 100 });
  backend.seed('users', 3);
  const events = [];
  const target = new EventTarget();
  for (const type of ['usersDataChanged', 'dataError']) {
    target.addEventListener(type, (event) => events.push({ type, detail: event.detail }));
  }
  const env = { clock, backend, store, events, token };
  env.make = (extra = {}) => createDataClient({
    baseUrl: BASE, collections: ['users'], pollMs: 0, fetch: backend.fetch, storage: store,
    eventTarget: target, document: new FakeDocument(), now: clock.now,
    setTimeout: clock.setTimeout, clearTimeout: clock.clearTimeout, random: () => 0.5,
    getIdToken: async () => env.token, ...extra,
  });
  env.visit = async (extra) => {
    const client = env.make(extra);
    await client.start();
    await flush();
    client.stop();
    return client;
  };
  env.shown = () => events.filter((e) => e.type === 'usersDataChanged').map((e) => e.detail);
  return env;
}

/** Start a client whose reads are held: what it shows before any network answer. */
async function startHeld(env, extra) {
  let release;
  env.backend.gate = new Promise((resolve) => { release = resolve; });
  env.events.length = 0;
  const client = env.make(extra);
  const started = client.start();
  await flush();
  const before = env.shown();
  env.backend.gate = null;
  release();
  await started;
  await flush();
  return { client, before };
}

describe('stale-while-revalidate', () => {
  test("the early start's detail of a saved copy is the one the client announces", async () => {
    const env = setup();
    await env.visit();
    env.clock.time += 10 * 60_000; // older than CACHE_LABEL_AGE_MS: outdated
    const [[, text]] = [...env.store.map.entries()];
    const record = parseCopy(text, tokenIdentity(ADA), env.clock.now());
    const early = copyDetail('users', record, env.clock.now()); // page/early.js's, before any client
    const { before } = await startHeld(env);
    assert.deepEqual(early, before[0]);
    assert.equal(early.outdated, true);
  });

  test('a repeat visit shows the saved copy before the read answers, then the answer', async () => {
    const env = setup();
    await env.visit();
    env.backend.put('users', { id: 'u9', name: 'Added meanwhile', email: 'n9@example.com' });
    env.clock.time += 3 * 60_000;
    const { client, before } = await startHeld(env);
    assert.equal(before.length, 1, 'the copy, with no answer yet');
    const [copy] = before;
    assert.deepEqual(copy.items.map((item) => item.id), ['u0', 'u1', 'u2']);
    assert.equal(copy.source, 'cache');
    assert.equal(copy.stale, true);
    assert.equal(copy.mode, 'cache');
    assert.ok(copy.asOf, 'the asOf of its data');
    assert.equal(copy.cachedAt, env.clock.now() - 3 * 60_000);
    assert.equal(copy.outdated, false, 'younger than cacheLabelAgeMs');
    const now = env.shown().at(-1);
    assert.equal(now.source, 'firestore');
    assert.equal(now.stale, false);
    assert.equal(now.cachedAt, null);
    assert.ok(now.items.some((item) => item.id === 'u9'));
    assert.equal(client.cachedCopy('users').count, 4, 'and the answer is saved');
  });

  test('a copy older than cacheLabelAgeMs is labelled outdated; older than maxCacheAgeMs, dropped', async () => {
    const env = setup();
    await env.visit();
    env.clock.time += 2 * 60 * 60_000;
    const { before } = await startHeld(env, { cacheLabelAgeMs: 60 * 60_000 });
    assert.equal(before[0].outdated, true);
    env.clock.time += MAX_CACHE_AGE_MS + 1;
    const late = await startHeld(env);
    assert.equal(late.before.length, 0);
  });

  test('the functions unreachable: the copy stays, stale, with the error', async () => {
    const env = setup();
    await env.visit();
    env.backend.mode = 'down';
    env.events.length = 0;
    const client = await env.visit();
    assert.equal(client.state('users').source, 'cache');
    assert.ok(env.events.some((e) => e.type === 'dataError'));
  });
});

describe('a copy the page already showed (shownCopies, web/page/early.js)', () => {
  test('is taken on without a second event, then the answer replaces it', async () => {
    const env = setup();
    await env.visit();
    const record = env.store.copy('users');
    env.clock.time += 60_000;
    const { client, before } = await startHeld(env, { shownCopies: { users: record } });
    assert.equal(before.length, 0, 'the page announced it already: no second cache event');
    const [answer] = env.shown();
    assert.equal(answer.source, 'firestore');
    assert.equal(env.shown().length, 1);
    assert.equal(client.cachedCopy('users').count, 3);
  });

  test('held reads: the client reports the copy taken on as its state', async () => {
    const env = setup();
    await env.visit();
    const record = env.store.copy('users');
    env.backend.gate = new Promise(() => {}); // never answered
    const client = env.make({ shownCopies: { users: record } });
    client.start();
    await flush();
    const state = client.state('users');
    assert.equal(state.source, 'cache');
    assert.equal(state.mode, 'cache');
    assert.deepEqual(state.items.map((item) => item.id), ['u0', 'u1', 'u2']);
    client.stop();
  });
});

describe('parseCopy: who may be shown a saved copy', () => {
  const text = (fields) => JSON.stringify({ v: CACHE_FORMAT, uid: 'ada', admin: true, savedAt: 1000,
    asOf: null, items: [{ id: 'u1' }], ...fields });
  test('its owner, with the claim it was saved with, within its age', () => {
    assert.ok(parseCopy(text({}), { uid: 'ada', admin: true }, 2000));
    assert.ok(parseCopy(text({ admin: false }), { uid: 'ada', admin: false }, 2000));
  });
  test('nobody else, no lost claim, nothing too old, broken or of another format', () => {
    assert.equal(parseCopy(text({}), { uid: 'bob', admin: true }, 2000), null);
    assert.equal(parseCopy(text({}), { uid: 'ada', admin: false }, 2000), null);
    assert.equal(parseCopy(text({}), null, 2000), null);
    assert.equal(parseCopy(text({}), { uid: 'ada', admin: true }, 1000 + MAX_CACHE_AGE_MS + 1), null);
    assert.equal(parseCopy(text({ v: CACHE_FORMAT + 1 }), { uid: 'ada', admin: true }, 2000), null);
    assert.equal(parseCopy('{"v":', { uid: 'ada', admin: true }, 2000), null);
    assert.equal(parseCopy(null, { uid: 'ada', admin: true }, 2000), null);
  });
});

describe('whose copy', () => {
  test('another user sees none of the first user\'s data, and the first one\'s copy is gone', async () => {
    const env = setup();
    await env.visit();
    assert.equal(env.store.copy().uid, 'ada');
    env.token = BOB;
    env.backend.mode = 'down'; // even with nothing else to show
    const { before } = await startHeld(env);
    assert.equal(before.length, 0);
    assert.equal(env.shown().length, 0);
    assert.equal(env.store.copy(), null, 'deleted unread');
  });

  test('no token: no copy read or written', async () => {
    const env = setup({ token: null });
    await env.visit();
    assert.equal(env.store.map.size, 0);
    env.token = ADA;
    await env.visit();
    env.token = null;
    const { before } = await startHeld(env);
    assert.equal(before.length, 0);
  });

  test('clearCache() deletes every copy (sign-out)', async () => {
    const env = setup();
    const client = await env.visit();
    assert.ok(client.cachedCopy('users'));
    await client.clearCache();
    assert.equal(env.store.map.size, 0);
    assert.equal(client.cachedCopy('users'), null);
  });

  test('the admin claim gone from the token: every copy is deleted', async () => {
    const env = setup();
    const client = env.make({ pollMs: 5000 });
    await client.start();
    await flush();
    assert.equal(env.store.copy().admin, true);
    env.token = testToken('ada', {}); // the same user, no admin claim
    env.backend.put('users', { id: 'u5', name: 'Five', email: 'n5@example.com' });
    await env.clock.advance(5000);
    await flush();
    const copy = env.store.copy();
    assert.ok(copy === null || copy.admin === false, 'never the admin\'s copy');
    client.stop();
    env.events.length = 0;
    env.store.map.clear();
    env.token = ADA;
    await env.visit();
    env.token = testToken('ada', {});
    const { before } = await startHeld(env);
    assert.equal(before.length, 0, 'an admin copy is not shown to the same user without the claim');
  });
});

describe('a copy that cannot be trusted is dropped, never shown', () => {
  const cases = {
    'does not parse': (text) => text.slice(0, -5),
    'has another format version': (text) => JSON.stringify({ ...JSON.parse(text), v: CACHE_FORMAT + 1 }),
    'is from the future': (text) => JSON.stringify({ ...JSON.parse(text), savedAt: Date.parse('2100-01-01') }),
  };
  for (const [what, spoil] of Object.entries(cases)) {
    test(what, async () => {
      const env = setup();
      await env.visit();
      const [key, text] = [...env.store.map.entries()][0];
      env.store.map.set(key, spoil(text));
      const { before } = await startHeld(env);
      assert.equal(before.length, 0);
      assert.notEqual(env.store.map.get(key), spoil(text));
    });
  }

  test('exceeds maxCacheBytes: not saved, and one saved under a larger bound is not shown', async () => {
    const env = setup();
    await env.visit({ maxCacheBytes: 100 });
    assert.equal(env.store.map.size, 0);
    await env.visit();
    assert.equal(env.store.map.size, 1);
    const { before } = await startHeld(env, { maxCacheBytes: 100 });
    assert.equal(before.length, 0);
    assert.equal(env.store.map.size, 0, 'and the answer, as big, is not saved either');
  });
});

describe('a store that fails', () => {
  test('full or disabled: the client works as without one, with no error', async () => {
    const env = setup({ store: new MemoryStore({ failing: true }) });
    const client = await env.visit();
    assert.equal(client.state('users').source, 'firestore');
    assert.equal(env.events.filter((e) => e.type === 'dataError').length, 0);
    assert.equal(client.cachedCopy('users'), null);
  });

  test('a sessionStorage-like Storage still works as the store', async () => {
    const map = new Map();
    const storage = { getItem: (k) => map.get(k) ?? null, setItem: (k, v) => map.set(k, v),
      removeItem: (k) => map.delete(k), key: (i) => [...map.keys()][i] ?? null,
      get length() { return map.size; } };
    map.set('someone-else', 'kept');
    const env = setup({ store: storage });
    const client = await env.visit();
    assert.equal(map.size, 2);
    await client.clearCache();
    assert.deepEqual([...map.keys()], ['someone-else'], 'only the client\'s own keys');
  });
});

describe('offline writes', () => {
  test('are refused at once with a sentence, nothing sent, nothing queued', async () => {
    const env = setup();
    const client = await env.visit();
    const sent = env.backend.requests.length;
    Object.defineProperty(globalThis, 'navigator', { value: { onLine: false }, configurable: true });
    try {
      await assert.rejects(client.create('users', { name: 'Ada', email: 'a@example.com' }), (error) => {
        assert.equal(error.code, 'offline');
        assert.equal(error.status, 0);
        assert.match(error.message, /offline: nothing was sent and nothing was saved/);
        return true;
      });
    } finally {
      delete globalThis.navigator;
    }
    assert.equal(env.backend.requests.length, sent);
    await env.clock.advance(60_000);
    assert.equal(env.backend.requests.length, sent, 'and never sent later');
  });
});

describe('tokenIdentity', () => {
  test('reads sub and the admin claim, and nothing else passes for a user', () => {
    assert.deepEqual(tokenIdentity(ADA), { uid: 'ada', admin: true });
    assert.deepEqual(tokenIdentity(testToken('zoë', {})), { uid: 'zoë', admin: false });
    for (const bad of [null, '', 'opaque', 'a.b.c', testToken('', {}), `x.${btoa('[1]')}.`]) {
      assert.equal(tokenIdentity(bad), null, String(bad));
    }
  });
});
