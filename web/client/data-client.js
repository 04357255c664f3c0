/**
 * client/data-client.js: the `DataClient` class, which wires the client's parts together over
 * one shared context (see client/collections.js): the transport (client/transport.js), reads
 * and polling (reads.js, polling.js), writes (writes.js), the saved copy (cache.js), live mode
 * (live.js, mode.js), events (events.js) and the page's signals (visibility.js). Pages import
 * it through web/data-client.js, which documents the options.
 */

import {
  CACHE_LABEL_AGE_MS, MAX_CACHE_AGE_MS, MAX_CACHE_BYTES, adoptCopy, clearCopies, copyInfo, showCopy,
  storeFor,
} from './cache.js';
import { createCollectionStates, modeOf, stateOf } from './collections.js';
import { detailOf } from './events.js';
import { LIVE_RETRY_MS, liveProblem, maybeListen, stopLive, useLive } from './live.js';
import { LIVE_PROBE_MS, newProbe, stopProbe } from './mode.js';
import { watchPage } from './visibility.js';
import {
  DEFAULT_POLL_MS, DEFAULT_RESYNC_MS, MAX_BACKOFF_MS, pollLater, run, unschedule,
} from './polling.js';
import { load, poll } from './reads.js';
import { REQUEST_TIMEOUT_MS, createTransport } from './transport.js';
import {
  createDocument, fetchOne, removeDocument, writeDocument,
} from './writes.js';

/** The client's shared context from `createDataClient`'s options (documented there). */
function contextOf(client, options) {
  const {
    baseUrl = '', collections = ['users', 'jobs'], getIdToken = null,
    pollMs = DEFAULT_POLL_MS, resyncMs = DEFAULT_RESYNC_MS, cacheTtlMs = MAX_CACHE_AGE_MS,
    maxCacheAgeMs = cacheTtlMs, cacheLabelAgeMs = CACHE_LABEL_AGE_MS,
    maxCacheBytes = MAX_CACHE_BYTES, pageSize = null, maxBackoffMs = MAX_BACKOFF_MS, requestTimeoutMs = REQUEST_TIMEOUT_MS,
    liveProbeMs = LIVE_PROBE_MS, liveRetryMs = LIVE_RETRY_MS,
  } = options;
  const fetchImpl = options.fetch ?? globalThis.fetch;
  if (typeof fetchImpl !== 'function') throw new TypeError('createDataClient: no fetch available');
  const fetch = (...args) => fetchImpl(...args);
  const setTimeout = options.setTimeout ?? ((fn, ms) => globalThis.setTimeout(fn, ms));
  const clearTimeout = options.clearTimeout ?? ((id) => globalThis.clearTimeout(id));
  return {
    client,
    states: createCollectionStates(baseUrl, collections),
    opts: {
      pollMs, resyncMs, maxCacheAgeMs, cacheLabelAgeMs, maxCacheBytes, pageSize, maxBackoffMs,
      requestTimeoutMs, liveProbeMs, liveRetryMs,
    },
    fetch,
    transport: createTransport({ fetch, getIdToken, auth: options.auth, timeoutMs: requestTimeoutMs, setTimeout,
      clearTimeout }),
    store: storeFor(options), // where the saved copies live (client/cache.js)
    cacheOwner: null, // the user the saved copies belong to
    cacheEpoch: 0, // bumped by every clear
    target: 'eventTarget' in options ? options.eventTarget
      : (typeof window !== 'undefined' ? window : null),
    document: 'document' in options ? options.document : (globalThis.document ?? null),
    now: options.now ?? (() => Date.now()),
    random: options.random ?? Math.random,
    setTimeout,
    clearTimeout,
    // Conditional reads: by the browser's HTTP cache in a browser, by this client elsewhere.
    // Chromium never serves a request carrying a script-set If-None-Match from its CORS
    // preflight cache, so doing it ourselves in a browser would cost a preflight per poll.
    httpCache: 'httpCache' in options ? Boolean(options.httpCache)
      : typeof window !== 'undefined' && typeof window.document !== 'undefined',
    started: false,
    live: null, // { sdk, db } once the injected SDK is there
    liveError: null,
    probe: newProbe(),
    afterRun: null,
  };
}

/** A client of the dashboard backend (made by `createDataClient`; an EventTarget). */
export class DataClient extends EventTarget {
  #ctx;
  #startPromise = null;
  #listeners = [];
  #shownCopies;

  constructor(options = {}) {
    super();
    const ctx = contextOf(this, options);
    ctx.afterRun = (state) => {
      maybeListen(ctx, state);
      pollLater(ctx, state);
    };
    this.#ctx = ctx;
    this.#shownCopies = { ...options.shownCopies };
    ctx.store?.warm?.(); // the saved copies are read first thing in start()
    if (options.live) useLive(ctx, options.live, options.liveProbeUrl ?? null);
  }

  /** The configured collection names. */
  get collections() {
    return [...this.#ctx.states.keys()];
  }

  /** Load every collection, then keep them fresh. Resolves once each has data or failed. */
  start() {
    if (this.#startPromise) return this.#startPromise;
    const ctx = this.#ctx;
    ctx.started = true;
    this.#listeners = watchPage(ctx);
    this.#startPromise = Promise.all(this.collections.map(async (name) => {
      const state = stateOf(ctx, name);
      // Stale-while-revalidate: the saved copy as soon as the store answers, the read at once;
      // or the copy the page already showed for this very user (`shownCopies`), taken on.
      const shown = this.#shownCopies[name];
      delete this.#shownCopies[name];
      state.restoring = shown ? Promise.resolve(adoptCopy(ctx, state, shown)) : showCopy(ctx, state);
      await run(state, () => load(ctx, state));
      ctx.afterRun(state);
    })).then(() => undefined);
    return this.#startPromise;
  }

  /** Stop polling, the Firestore listeners and the page listeners; the copies stay readable. */
  stop() {
    const ctx = this.#ctx;
    ctx.started = false;
    this.#startPromise = null;
    for (const state of ctx.states.values()) {
      unschedule(ctx, state);
      stopLive(ctx, state);
    }
    stopProbe(ctx);
    for (const [target, type, handler] of this.#listeners) target.removeEventListener(type, handler);
    this.#listeners = [];
  }

  /**
   * What this tab has spent on a collection: `calls` (HTTP requests to its function),
   * `pollReads` (document reads the function's Firestore answers cost at most: one per
   * document listed or deleted, one for an empty answer, none from the snapshot or the
   * function's cache), `listenReads` (reads of the Firestore listeners as Firestore bills
   * them: one per document added or changed, one for an empty first answer), and the `mode`,
   * with `liveError` when the listeners failed last.
   */
  usage(name) {
    const state = stateOf(this.#ctx, name);
    return {
      ...state.usage, mode: modeOf(this.#ctx, state), liveError: liveProblem(this.#ctx, state),
    };
  }

  /** The current state of a collection (the detail of its last event, with fresh times). */
  state(name) {
    return detailOf(this.#ctx, stateOf(this.#ctx, name));
  }

  /** The current items of a collection, sorted by id. */
  items(name) {
    return this.state(name).items;
  }

  /**
   * The saved copy of a collection (what a reload shows before the read answers, and offline):
   * `{ savedAt, ageMs, count, asOf }`, or null when there is none (or it is too old).
   */
  cachedCopy(name) {
    return copyInfo(this.#ctx, stateOf(this.#ctx, name));
  }

  /**
   * Delete every saved copy of this client's store (call it on sign-out). The data on screen
   * stays until the page drops it; nothing is saved again while no token names a user.
   */
  async clearCache() {
    await clearCopies(this.#ctx);
  }

  /** Load the whole collection again now (with the fallback chain). */
  async reload(name) {
    const state = stateOf(this.#ctx, name);
    await run(state, () => load(this.#ctx, state));
    this.#ctx.afterRun(state);
    return this.state(name);
  }

  /** Poll the collection now (a delta since the last answer, or a load when there is none). */
  async refresh(name) {
    const state = stateOf(this.#ctx, name);
    await run(state, () => poll(this.#ctx, state));
    this.#ctx.afterRun(state);
    return this.state(name);
  }

  /** One document straight from the server, with its ETag (for `update(..., { ifMatch })`). */
  async fetchOne(name, id) {
    return fetchOne(this.#ctx, stateOf(this.#ctx, name), id);
  }

  /** `POST /<collection>`: create a document (`id` optional); resolves to the stored document. */
  async create(name, data) {
    return createDocument(this.#ctx, stateOf(this.#ctx, name), data);
  }

  /**
   * `PATCH /<collection>/<id>`: change some fields. `ifMatch`: an ETag, `false` for none, or
   * unset to send the ETag of the version this client holds when it knows one.
   */
  async update(name, id, patch, { ifMatch } = {}) {
    return writeDocument(this.#ctx, stateOf(this.#ctx, name), 'PATCH', id, patch, ifMatch);
  }

  /** `PUT /<collection>/<id>`: replace (or create) the whole document. */
  async replace(name, id, data, { ifMatch } = {}) {
    return writeDocument(this.#ctx, stateOf(this.#ctx, name), 'PUT', id, data, ifMatch);
  }

  /** `DELETE /<collection>/<id>`; resolves to false when it was already gone. */
  async remove(name, id, { ifMatch } = {}) {
    return removeDocument(this.#ctx, stateOf(this.#ctx, name), id, ifMatch);
  }
}
