/**
 * client/collections.js: what the data client keeps per collection (its copy, cursors, ETags,
 * write log, listeners' state, usage), the small operations on that copy, its mode, and its
 * requests to the collection's function.
 *
 * Every module of the client shares one context `ctx` (built by client/data-client.js):
 * `states` (name -> the state below), `opts`, `transport`, `fetch`, `store` (client/idb-store.js),
 * `cacheOwner` and `cacheEpoch` (client/cache.js), `now`,
 * `random`, `setTimeout`, `clearTimeout`, `document`, `httpCache`, `started`, `live`
 * (`{ sdk, db }` once the SDK is there), `liveError`, `probe` (client/mode.js), `client` and
 * `target` (where events go), `afterRun(state)` (after a load or poll: listen or poll again).
 */

import { compareTimestamps } from './timestamps.js';

export const CACHE_FORMAT = 2; // of a saved copy (client/cache.js); another one is dropped

/** The states of the configured collections: `collections` as names or `{ name: url }`. */
export function createCollectionStates(baseUrl, collections) {
  const base = String(baseUrl).replace(/\/+$/, '');
  const entries = Array.isArray(collections)
    ? collections.map((name) => [name, `${base}/${encodeURIComponent(name)}`])
    : Object.entries(collections).map(([name, url]) => [name, String(url).replace(/\/+$/, '')]);
  if (entries.length === 0) throw new TypeError('createDataClient: no collections');
  const states = new Map();
  for (const [name, url] of entries) {
    if (!/^[A-Za-z][A-Za-z0-9_-]*$/.test(name)) {
      throw new TypeError(`createDataClient: invalid collection name ${JSON.stringify(name)}`);
    }
    states.set(name, newState(name, url));
  }
  return states;
}

function newState(name, url) {
  return {
    name,
    url,
    cacheKey: `dashboard-data:v${CACHE_FORMAT}:${url}`,
    items: new Map(), // id -> item
    loaded: false, // has data (from the server or the cached copy)
    source: null, // 'firestore' | 'snapshot' | 'cache'
    serverSource: null, // the last source the server reported
    stale: false,
    asOf: null, // the server's asOf of the data
    checkedAt: null, // client time the server last confirmed the data
    freshAt: null, // client time the data is known current as of
    savedAt: 0, // client time of the last save of the copy (client/cache.js)
    saving: null, // the save under way
    copyInfo: null, // { savedAt, count, asOf } of the saved copy, when known
    cachedAt: null, // when the copy shown was saved, while it is the saved one
    cursor: null, // updatedSince of the next poll
    deltaEtag: null, // ETag of the last empty delta at `cursor`
    listEtag: null, // ETag of the last full load when it was a single page
    reportsDeletions: null, // whether delta answers carry `deleted`
    lastFullLoad: 0,
    failures: 0,
    timer: null,
    paused: false,
    busy: null, // the running load or poll
    docEtags: new Map(), // id -> ETag of the version we hold (from writes and fetchOne)
    writeSeq: 0,
    writeLog: [], // { seq, at, id, item|null, version }
    error: null,
    live: {
      stops: [], // unsubscribe functions of the two listeners
      current: { docs: false, tombstones: false }, // last answer was the server's
      answered: { docs: false, tombstones: false },
      up: false, // both current (a short "from cache" spell tolerated)
      graceTimer: null,
      retryTimer: null,
      generation: 0, // of the running listeners
      failures: 0,
      error: null,
    },
    usage: { calls: 0, pollReads: 0, listenReads: 0 },
  };
}

/** The state of a configured collection (a TypeError for any other name). */
export function stateOf(ctx, name) {
  const state = ctx.states.get(name);
  if (!state) throw new TypeError(`unknown collection ${JSON.stringify(name)}`);
  return state;
}

export function sameItem(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

export function byId(a, b) {
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** Live when both listeners answer from the server and Firestore is known reachable. */
export function isLive(ctx, state) {
  return state.live.up && !ctx.probe.down;
}

/** 'live' | 'polling' | 'snapshot' | 'cache', or null before any data. */
export function modeOf(ctx, state) {
  if (!state.loaded) return null;
  if (isLive(ctx, state)) return 'live';
  if (state.source === 'cache' || state.source === 'snapshot') return state.source;
  return 'polling';
}

/**
 * The detail of a collection's `<name>DataChanged` event (client/events.js names its fields):
 * `state` shown in `mode` (modeOf's) at `now` (ms). The data client's events and the demo
 * page's early start (page/early.js, before the client has loaded) both build it here.
 */
export function collectionDetail(state, mode, now, cacheLabelAgeMs) {
  const confirmed = mode === 'live' ? now : null; // current listeners confirm the copy all the time
  return {
    collection: state.name,
    items: [...state.items.values()].sort(byId),
    source: state.source,
    stale: state.stale,
    asOf: state.asOf,
    checkedAt: confirmed ?? state.checkedAt,
    freshAt: confirmed ?? state.freshAt,
    mode,
    cachedAt: state.source === 'cache' ? state.cachedAt : null, // the saved copy's save time
    // stale, and older than `cacheLabelAgeMs`: say so louder
    outdated: state.stale && state.freshAt !== null && now - state.freshAt > cacheLabelAgeMs,
  };
}

/** The server (or the listeners) just confirmed the copy, as of `source`'s time. */
export function markFresh(ctx, state, source) {
  const now = ctx.now();
  state.source = source || 'firestore';
  state.stale = false;
  state.cachedAt = null;
  state.checkedAt = now;
  const asOfMs = Date.parse(state.asOf ?? '');
  state.freshAt = state.source === 'snapshot' && !Number.isNaN(asOfMs) ? Math.min(asOfMs, now)
    : now;
}

/** The URL of one document of the collection. */
export function docUrl(state, id) {
  if (typeof id !== 'string' || id === '') throw new TypeError('a document id is required');
  return `${state.url}/${encodeURIComponent(id)}`;
}

/** One request to the collection's function (counted in its usage), through the transport. */
export function collectionRequest(ctx, state, url, { method, body, ifNoneMatch = null, ifMatch = null }) {
  const headers = {};
  if (ifNoneMatch) headers['If-None-Match'] = ifNoneMatch;
  if (ifMatch) headers['If-Match'] = ifMatch;
  return ctx.transport.send(url, {
    method,
    body,
    headers,
    // Reads in a browser go through its HTTP cache, which revalidates every answer (they
    // are `private, no-cache` with an ETag) with an If-None-Match of its own; elsewhere we
    // send If-None-Match ourselves and keep nothing.
    cache: method === 'GET' && ctx.httpCache && !ifNoneMatch ? 'default' : 'no-store',
    onAttempt: () => { state.usage.calls += 1; },
  });
}

/** Upsert one item unless the local copy is newer; true when something changed. */
export function mergeItem(state, item) {
  if (!item || typeof item.id !== 'string') return false;
  const known = state.items.get(item.id);
  if (known && sameItem(known, item)) return false;
  if (known && known.updatedAt && item.updatedAt
      && compareTimestamps(item.updatedAt, known.updatedAt) < 0) return false;
  state.items.set(item.id, item);
  state.docEtags.delete(item.id);
  return true;
}
