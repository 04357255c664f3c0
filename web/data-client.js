/**
 * data-client.js: the browser client of the dashboard backend.
 *
 * One ES module, no build step, no runtime dependency. Any static page can use it:
 *
 *   import { createDataClient, ValidationError } from './data-client.js';
 *   const client = createDataClient({
 *     baseUrl: 'https://REGION-PROJECT.cloudfunctions.net',
 *     collections: ['users', 'jobs'],
 *     getIdToken: () => firebase.auth().currentUser?.getIdToken(),   // optional
 *     pollMs: 5000,
 *   });
 *   window.addEventListener('usersDataChanged', (e) => render(e.detail.items));
 *   await client.start();
 *
 * What it does, per collection:
 * - Loads the whole collection (following `nextPageToken`). The read function falls back to
 *   the Cloud Storage snapshot by itself (`source: 'snapshot'`); when the function cannot be
 *   reached either, the client shows the last good copy kept in `sessionStorage` (at most
 *   `cacheTtlMs`, 5 minutes) with `source: 'cache', stale: true`.
 * - Keeps the copy fresh by polling `?updatedSince=<asOf>` with `If-None-Match` (sent by the
 *   browser's HTTP cache in a browser, by this module elsewhere), merging the changed
 *   documents and removing the `deleted` ids. Polling pauses while `document.hidden`
 *   and backs off exponentially (with jitter, honouring `Retry-After`) on errors. When the
 *   server does not report deletions, a full reload every `resyncMs` catches them.
 * - Emits `<collection>DataChanged` (`usersDataChanged`, `jobsDataChanged`) CustomEvents on the
 *   client (an EventTarget) and on `window` when there is one, with
 *   `detail = { collection, items, source, stale, asOf, checkedAt, freshAt }`.
 * - `create`, `update`, `replace`, `remove` call the write API (admin only) and update the local
 *   copy as soon as the server answers. A 400 with field errors throws a `ValidationError`
 *   whose `.fields` is `[{ field, message }]`; other failures throw an `ApiError` with
 *   `.status`, `.code` (`precondition_failed` for a 412, `conflict` for a 409, ...).
 * - Sends `Authorization: Bearer <ID token>` on every request when `getIdToken` is given.
 */

export const CACHE_TTL_MS = 5 * 60 * 1000;
export const DEFAULT_POLL_MS = 5000;
export const DEFAULT_RESYNC_MS = 60 * 1000;
export const MAX_BACKOFF_MS = 60 * 1000;
export const REQUEST_TIMEOUT_MS = 15 * 1000;
const CACHE_FORMAT = 1;
const CACHE_REFRESH_MS = 60 * 1000; // re-save an unchanged copy at most this often
const WRITE_LOG_MS = 5 * 60 * 1000; // local writes replayed over responses older than them

/** A failed call to the backend: HTTP status (0 when unreachable), error code and message. */
export class ApiError extends Error {
  constructor(message, { status = 0, code = 'error', details = undefined, retryAfterMs = undefined,
    cause = undefined } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.details = details;
    this.retryAfterMs = retryAfterMs;
  }

  /** Worth trying again later: unreachable, timed out, rate-limited or a server error. */
  get retryable() {
    return this.status === 0 || this.status === 408 || this.status === 429 || this.status >= 500;
  }
}

/** A 400 `validation_failed`: `.fields` lists every field error as `{ field, message }`. */
export class ValidationError extends ApiError {
  constructor(message, options = {}) {
    super(message, options);
    this.name = 'ValidationError';
    const fields = options.details && Array.isArray(options.details.fields)
      ? options.details.fields : [];
    this.fields = fields
      .filter((entry) => entry && typeof entry === 'object')
      .map((entry) => ({ field: String(entry.field ?? ''), message: String(entry.message ?? '') }));
  }

  /** `{ field: message }`, the first message of each field. */
  get byField() {
    const out = {};
    for (const { field, message } of this.fields) {
      if (!(field in out)) out[field] = message;
    }
    return out;
  }
}

/**
 * Compare two RFC 3339 timestamps as the backend writes them (UTC, `Z`, up to nanoseconds):
 * negative, zero or positive. Unparseable values sort first.
 */
export function compareTimestamps(a, b) {
  const pa = splitTimestamp(a);
  const pb = splitTimestamp(b);
  if (pa === null || pb === null) return (pa === null ? 0 : 1) - (pb === null ? 0 : 1);
  if (pa.ms !== pb.ms) return pa.ms < pb.ms ? -1 : 1;
  return pa.frac < pb.frac ? -1 : pa.frac > pb.frac ? 1 : 0;
}

function splitTimestamp(text) {
  if (typeof text !== 'string') return null;
  const match = /^(.*?:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/i.exec(text.trim());
  if (!match) {
    const ms = Date.parse(text);
    return Number.isNaN(ms) ? null : { ms, frac: '000000000' };
  }
  const ms = Date.parse(match[1] + match[3]);
  if (Number.isNaN(ms)) return null;
  return { ms, frac: (match[2] || '').padEnd(9, '0').slice(0, 9) };
}

function defaultStorage() {
  try {
    return globalThis.sessionStorage ?? null;
  } catch {
    return null; // sessionStorage throws where storage is disabled (sandboxed frames, ...)
  }
}

function retryAfterMs(response) {
  const raw = response.headers.get('Retry-After');
  if (!raw) return undefined;
  const seconds = Number(raw);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(raw);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

async function errorFromResponse(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const error = body && typeof body.error === 'object' && body.error ? body.error : {};
  const code = typeof error.code === 'string' ? error.code : `http_${response.status}`;
  const message = typeof error.message === 'string' && error.message
    ? error.message : `HTTP ${response.status}`;
  const options = {
    status: response.status, code, details: error.details, retryAfterMs: retryAfterMs(response),
  };
  if (response.status === 400 && (code === 'validation_failed'
      || (error.details && Array.isArray(error.details.fields)))) {
    return new ValidationError(message, options);
  }
  return new ApiError(message, options);
}

function sameItem(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

function byId(a, b) {
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/**
 * A client of the dashboard backend. Options:
 * - `baseUrl`: where the functions answer (`https://REGION-PROJECT.cloudfunctions.net`, or
 *   `http://127.0.0.1:8080` for the local stack); each collection is at `<baseUrl>/<name>`.
 * - `collections`: names (`['users', 'jobs']`, the default), or `{ name: url }` when the
 *   functions have URLs of their own (Cloud Run style).
 * - `getIdToken(forceRefresh)`: async, returns a Firebase ID token (or nothing); asked before
 *   every request, and once more with `forceRefresh = true` after a 401.
 * - `pollMs` (5000; 0 turns polling off), `resyncMs` (60000), `cacheTtlMs` (5 minutes),
 *   `pageSize` (the server's default when unset), `maxBackoffMs`, `requestTimeoutMs`.
 * - `storage`: a Storage for the last good copy (`sessionStorage` by default; `null`: none).
 * - `httpCache`: conditional reads by the browser's HTTP cache (default in a browser), or
 *   (`false`) by this client setting `If-None-Match` itself (default elsewhere).
 * - For tests and unusual hosts: `fetch`, `eventTarget` (`window` by default), `document`,
 *   `now`, `random`, `setTimeout`, `clearTimeout`.
 */
export function createDataClient(options = {}) {
  return new DataClient(options);
}

export class DataClient extends EventTarget {
  #states = new Map();
  #fetch;
  #getIdToken;
  #storage;
  #target;
  #document;
  #now;
  #random;
  #setTimeout;
  #clearTimeout;
  #opts;
  #httpCache;
  #started = false;
  #startPromise = null;
  #listeners = [];

  constructor(options = {}) {
    super();
    const {
      baseUrl = '', collections = ['users', 'jobs'], getIdToken = null,
      pollMs = DEFAULT_POLL_MS, resyncMs = DEFAULT_RESYNC_MS, cacheTtlMs = CACHE_TTL_MS,
      pageSize = null, maxBackoffMs = MAX_BACKOFF_MS, requestTimeoutMs = REQUEST_TIMEOUT_MS,
    } = options;
    const fetchImpl = options.fetch ?? globalThis.fetch;
    if (typeof fetchImpl !== 'function') throw new TypeError('createDataClient: no fetch available');
    this.#fetch = (...args) => fetchImpl(...args);
    this.#getIdToken = typeof getIdToken === 'function' ? getIdToken : null;
    this.#storage = 'storage' in options ? options.storage : defaultStorage();
    this.#target = 'eventTarget' in options ? options.eventTarget
      : (typeof window !== 'undefined' ? window : null);
    this.#document = 'document' in options ? options.document : (globalThis.document ?? null);
    this.#now = options.now ?? (() => Date.now());
    this.#random = options.random ?? Math.random;
    this.#setTimeout = options.setTimeout ?? ((fn, ms) => globalThis.setTimeout(fn, ms));
    this.#clearTimeout = options.clearTimeout ?? ((id) => globalThis.clearTimeout(id));
    this.#opts = { pollMs, resyncMs, cacheTtlMs, pageSize, maxBackoffMs, requestTimeoutMs };
    // Conditional reads: by the browser's HTTP cache in a browser, by this client elsewhere.
    // Chromium never serves a request carrying a script-set If-None-Match from its CORS
    // preflight cache, so doing it ourselves in a browser would cost a preflight per poll.
    this.#httpCache = 'httpCache' in options ? Boolean(options.httpCache)
      : typeof window !== 'undefined' && typeof window.document !== 'undefined';

    const base = String(baseUrl).replace(/\/+$/, '');
    const entries = Array.isArray(collections)
      ? collections.map((name) => [name, `${base}/${encodeURIComponent(name)}`])
      : Object.entries(collections).map(([name, url]) => [name, String(url).replace(/\/+$/, '')]);
    if (entries.length === 0) throw new TypeError('createDataClient: no collections');
    for (const [name, url] of entries) {
      if (!/^[A-Za-z][A-Za-z0-9_-]*$/.test(name)) {
        throw new TypeError(`createDataClient: invalid collection name ${JSON.stringify(name)}`);
      }
      this.#states.set(name, {
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
        savedAt: 0,
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
        writeLog: [], // { seq, at, id, item|null }
        error: null,
      });
    }
  }

  /** The configured collection names. */
  get collections() {
    return [...this.#states.keys()];
  }

  /** Load every collection, then keep them fresh. Resolves once each has data or failed. */
  start() {
    if (this.#startPromise) return this.#startPromise;
    this.#started = true;
    this.#listen();
    this.#startPromise = Promise.all(this.collections.map(async (name) => {
      const state = this.#state(name);
      await this.#run(state, () => this.#load(state));
      this.#scheduleAfterRun(state);
    })).then(() => undefined);
    return this.#startPromise;
  }

  /** Stop polling and remove listeners; the local copies stay readable. */
  stop() {
    this.#started = false;
    this.#startPromise = null;
    for (const state of this.#states.values()) {
      if (state.timer !== null) this.#clearTimeout(state.timer);
      state.timer = null;
    }
    for (const [target, type, handler] of this.#listeners) target.removeEventListener(type, handler);
    this.#listeners = [];
  }

  /** The current state of a collection (the detail of its last event, with fresh times). */
  state(name) {
    return this.#detail(this.#state(name));
  }

  /** The current items of a collection, sorted by id. */
  items(name) {
    return this.#detail(this.#state(name)).items;
  }

  /**
   * This tab's saved copy of a collection (what a reload shows when the functions cannot be
   * reached): `{ savedAt, ageMs, count, asOf }`, or null when there is none (or it expired).
   */
  cachedCopy(name) {
    const record = this.#restore(this.#state(name));
    if (!record) return null;
    return { savedAt: record.savedAt, ageMs: this.#now() - record.savedAt,
      count: record.items.length, asOf: record.asOf ?? null };
  }

  /** Load the whole collection again now (with the fallback chain). */
  async reload(name) {
    const state = this.#state(name);
    await this.#run(state, () => this.#load(state));
    this.#scheduleAfterRun(state);
    return this.state(name);
  }

  /** Poll the collection now (a delta since the last answer, or a load when there is none). */
  async refresh(name) {
    const state = this.#state(name);
    await this.#run(state, () => this.#poll(state));
    this.#scheduleAfterRun(state);
    return this.state(name);
  }

  /** One document straight from the server, with its ETag (for `update(..., { ifMatch })`). */
  async fetchOne(name, id) {
    const state = this.#state(name);
    const response = await this.#request(this.#docUrl(state, id), { method: 'GET' });
    if (!response.ok) throw await errorFromResponse(response);
    const item = await response.json();
    const etag = response.headers.get('ETag');
    const known = state.items.get(item.id);
    const older = known && known.updatedAt && item.updatedAt
      && compareTimestamps(item.updatedAt, known.updatedAt) < 0;
    if (!known || (!older && !sameItem(known, item))) {
      this.#applyWrite(state, item.id, item, etag);
    } else if (etag) {
      // The ETag of the version the caller now holds: an update based on it is checked
      // against it (a 412 if the document has changed since).
      state.docEtags.set(item.id, etag);
    }
    return { item, etag };
  }

  /** `POST /<collection>`: create a document (`id` optional); resolves to the stored document. */
  async create(name, data) {
    const state = this.#state(name);
    const response = await this.#request(state.url, { method: 'POST', body: data });
    if (response.status !== 201 && response.status !== 200) throw await errorFromResponse(response);
    const item = await response.json();
    this.#applyWrite(state, item.id, item, response.headers.get('ETag'));
    return item;
  }

  /**
   * `PATCH /<collection>/<id>`: change some fields. `ifMatch`: an ETag, `false` for none, or
   * unset to send the ETag of the version this client holds when it knows one.
   */
  async update(name, id, patch, { ifMatch } = {}) {
    return this.#writeDocument(this.#state(name), 'PATCH', id, patch, ifMatch);
  }

  /** `PUT /<collection>/<id>`: replace (or create) the whole document. */
  async replace(name, id, data, { ifMatch } = {}) {
    return this.#writeDocument(this.#state(name), 'PUT', id, data, ifMatch);
  }

  /** `DELETE /<collection>/<id>`; resolves to false when it was already gone. */
  async remove(name, id, { ifMatch } = {}) {
    const state = this.#state(name);
    const response = await this.#request(this.#docUrl(state, id), {
      method: 'DELETE', ifMatch: this.#ifMatch(state, id, ifMatch),
    });
    if (response.status === 404) {
      this.#applyWrite(state, id, null, null);
      return false;
    }
    if (!response.ok) throw await this.#writeError(state, id, response);
    this.#applyWrite(state, id, null, null);
    return true;
  }

  // --- loading and polling ------------------------------------------------------------------

  #state(name) {
    const state = this.#states.get(name);
    if (!state) throw new TypeError(`unknown collection ${JSON.stringify(name)}`);
    return state;
  }

  /** Run one load/poll at a time per collection; a caller arriving meanwhile joins it. */
  async #run(state, task) {
    while (state.busy) await state.busy.catch(() => {});
    state.busy = task();
    try {
      await state.busy;
    } finally {
      state.busy = null;
    }
  }

  async #load(state) {
    const since = state.writeSeq;
    const revalidate = state.listEtag && state.loaded && !state.stale ? state.listEtag : null;
    try {
      const result = await this.#fetchPages(state, {}, revalidate);
      if (result.notModified) {
        this.#confirmed(state, result.source, null);
      } else {
        const before = state.loaded ? state.items : null;
        const shown = [state.source, state.stale];
        state.items = new Map(result.items.map((item) => [item.id, item]));
        for (const [id, item] of state.items) {
          if (!before || !before.has(id) || !sameItem(before.get(id), item)) state.docEtags.delete(id);
        }
        state.asOf = result.asOf;
        state.cursor = result.asOf;
        state.deltaEtag = null;
        state.listEtag = result.pages === 1 ? result.etag : null;
        state.serverSource = result.source;
        this.#replayWrites(state, since, result);
        this.#markFresh(state, result.source);
        state.loaded = true;
        const unchanged = before && before.size === state.items.size
          && [...state.items].every(([id, item]) => before.has(id) && sameItem(before.get(id), item))
          && shown[0] === state.source && shown[1] === state.stale;
        if (!unchanged) this.#emit(state);
        this.#save(state);
      }
      state.lastFullLoad = this.#now();
      state.failures = 0;
      state.error = null;
    } catch (error) {
      this.#failed(state, error);
    }
  }

  async #poll(state) {
    if (!state.loaded || state.cursor === null) return this.#load(state);
    if (state.reportsDeletions !== true && this.#opts.resyncMs > 0
        && this.#now() - state.lastFullLoad >= this.#opts.resyncMs) {
      return this.#load(state);
    }
    const since = state.writeSeq;
    const cursor = state.cursor;
    try {
      const result = await this.#fetchPages(state, { updatedSince: cursor }, state.deltaEtag);
      if (result.notModified) {
        this.#confirmed(state, result.source, null);
      } else {
        if (result.deleted !== null) state.reportsDeletions = true;
        else if (state.reportsDeletions === null) state.reportsDeletions = false;
        let changed = false;
        for (const item of result.items) changed = this.#merge(state, item) || changed;
        for (const id of result.deleted ?? []) {
          if (state.items.delete(id)) changed = true;
          state.docEtags.delete(id);
        }
        if (result.items.length === 0 && (result.deleted ?? []).length === 0) {
          // Nothing since `cursor`: keep it, so the next poll can be a 304.
          state.deltaEtag = result.pages === 1 ? result.etag : null;
          this.#confirmed(state, result.source, result.asOf);
        } else {
          state.cursor = result.asOf;
          state.deltaEtag = null;
          state.asOf = result.asOf;
          state.serverSource = result.source;
          changed = this.#replayWrites(state, since, result) || changed;
          const wasStale = state.stale || state.source !== result.source;
          this.#markFresh(state, result.source);
          if (changed || wasStale) this.#emit(state);
          this.#save(state);
        }
      }
      state.failures = 0;
      state.error = null;
    } catch (error) {
      if (error instanceof ApiError && error.status === 400) {
        // The server refused the delta query (an old cursor, ...): a full load next time.
        state.cursor = null;
        state.lastFullLoad = 0;
      }
      this.#failed(state, error);
    }
    return undefined;
  }

  /** Upsert one item unless the local copy is newer; true when something changed. */
  #merge(state, item) {
    if (!item || typeof item.id !== 'string') return false;
    const known = state.items.get(item.id);
    if (known && sameItem(known, item)) return false;
    if (known && known.updatedAt && item.updatedAt
        && compareTimestamps(item.updatedAt, known.updatedAt) < 0) return false;
    state.items.set(item.id, item);
    state.docEtags.delete(item.id);
    return true;
  }

  /** The server confirmed our copy (304 or an empty delta). */
  #confirmed(state, source, asOf) {
    if (asOf) state.asOf = asOf;
    const before = [state.source, state.stale];
    if (source) state.serverSource = source;
    this.#markFresh(state, state.serverSource ?? source);
    if (before[0] !== state.source || before[1] !== state.stale) this.#emit(state);
    if (this.#now() - state.savedAt >= CACHE_REFRESH_MS) this.#save(state);
  }

  #markFresh(state, source) {
    const now = this.#now();
    state.source = source || 'firestore';
    state.stale = false;
    state.checkedAt = now;
    const asOfMs = Date.parse(state.asOf ?? '');
    state.freshAt = state.source === 'snapshot' && !Number.isNaN(asOfMs) ? Math.min(asOfMs, now)
      : now;
  }

  #failed(state, error) {
    const err = error instanceof ApiError ? error
      : new ApiError(String(error?.message ?? error), { code: 'client_error', cause: error });
    state.error = err;
    state.failures += 1;
    if (!state.loaded) {
      const cached = err.retryable || err.status === 0 ? this.#restore(state) : null;
      if (cached) {
        state.items = new Map(cached.items.map((item) => [item.id, item]));
        state.asOf = cached.asOf;
        state.cursor = cached.asOf;
        state.serverSource = cached.source;
        state.freshAt = cached.freshAt;
        state.checkedAt = cached.checkedAt;
        state.source = 'cache';
        state.stale = true;
        state.loaded = true;
        this.#emit(state);
      }
    } else if (err.retryable && !state.stale) {
      state.source = 'cache';
      state.stale = true;
      this.#emit(state);
    }
    this.#dispatch('dataError', { collection: state.name, error: err, failures: state.failures });
  }

  /** GET every page of a list query; `notModified` when `etag` still matches page one. */
  async #fetchPages(state, params, etag) {
    const items = [];
    const deleted = [];
    let sawDeleted = false;
    let asOf = null;
    let source = null;
    let firstEtag = null;
    let pageToken = null;
    let pages = 0;
    do {
      const query = new URLSearchParams();
      for (const [key, value] of Object.entries(params)) if (value != null) query.set(key, value);
      if (this.#opts.pageSize) query.set('limit', String(this.#opts.pageSize));
      if (pageToken) query.set('pageToken', pageToken);
      const qs = query.toString();
      const response = await this.#request(qs ? `${state.url}?${qs}` : state.url, {
        method: 'GET', ifNoneMatch: pages === 0 && !this.#httpCache ? etag : null,
      });
      const headerSource = response.headers.get('X-Data-Source');
      if (response.status === 304 && pages === 0) {
        return { notModified: true, source: headerSource };
      }
      if (response.status !== 200) {
        const error = await errorFromResponse(response);
        if (error.code === 'invalid_limit' && this.#opts.pageSize && pages === 0) {
          // The server's MAX_LIMIT is below our page size: use its default from now on.
          this.#opts.pageSize = null;
          return this.#fetchPages(state, params, etag);
        }
        throw error;
      }
      const body = await response.json();
      if (!body || !Array.isArray(body.items)) {
        throw new ApiError('the list answer has no items', { status: 502, code: 'bad_response' });
      }
      pages += 1;
      if (pages === 1) firstEtag = response.headers.get('ETag');
      items.push(...body.items);
      if (Array.isArray(body.deleted)) {
        sawDeleted = true;
        deleted.push(...body.deleted.filter((id) => typeof id === 'string'));
      }
      // The earliest asOf of the pages: changes made while paging come with the next poll.
      if (body.asOf && (asOf === null || compareTimestamps(body.asOf, asOf) < 0)) asOf = body.asOf;
      // A page served from the snapshot makes the whole answer a snapshot one.
      // The header first: a body the browser's cache revalidated (304) keeps its old `source`,
      // while the 304's headers replace the stored ones.
      const pageSource = headerSource || body.source || 'firestore';
      if (source === null || pageSource === 'snapshot') source = pageSource;
      pageToken = typeof body.nextPageToken === 'string' && body.nextPageToken
        ? body.nextPageToken : null;
      if (pages > 10000) throw new ApiError('too many pages', { status: 502, code: 'bad_response' });
    } while (pageToken);
    return {
      notModified: false, items, deleted: sawDeleted ? deleted : null, asOf, source,
      etag: firstEtag, pages,
    };
  }

  // --- writes -------------------------------------------------------------------------------

  async #writeDocument(state, method, id, data, ifMatch) {
    const response = await this.#request(this.#docUrl(state, id), {
      method, body: data, ifMatch: this.#ifMatch(state, id, ifMatch),
    });
    if (response.status !== 200 && response.status !== 201) {
      throw await this.#writeError(state, id, response);
    }
    const item = await response.json();
    this.#applyWrite(state, item.id ?? id, item, response.headers.get('ETag'));
    return item;
  }

  async #writeError(state, id, response) {
    const error = await errorFromResponse(response);
    if (response.status === 412) state.docEtags.delete(id);
    if (response.status === 404 && state.items.has(id)) this.#applyWrite(state, id, null, null);
    return error;
  }

  #ifMatch(state, id, ifMatch) {
    if (ifMatch === false) return null;
    if (typeof ifMatch === 'string') return ifMatch;
    return state.docEtags.get(id) ?? null;
  }

  /** Put a write the server accepted into the local copy now (and replay it over older reads). */
  #applyWrite(state, id, item, etag) {
    state.writeSeq += 1;
    const now = this.#now();
    state.writeLog.push({ seq: state.writeSeq, at: now, id, item });
    state.writeLog = state.writeLog.filter((entry) => now - entry.at <= WRITE_LOG_MS);
    if (item) {
      state.items.set(id, item);
      if (etag) state.docEtags.set(id, etag);
      else state.docEtags.delete(id);
    } else {
      state.items.delete(id);
      state.docEtags.delete(id);
    }
    if (!state.loaded) return;
    this.#emit(state);
    if (!state.stale) this.#save(state);
  }

  /**
   * Re-apply local writes over an answer that may predate them: those made after the read
   * started, and those newer than the answer's `asOf` (a snapshot answer can be older than a
   * write the server accepted a moment ago). Deletions are re-applied over snapshot answers.
   */
  #replayWrites(state, sinceSeq, answer) {
    let changed = false;
    for (const entry of state.writeLog) {
      const afterRead = entry.seq > sinceSeq;
      const known = state.items.get(entry.id);
      if (entry.item === null) {
        if ((afterRead || answer.source === 'snapshot') && state.items.delete(entry.id)) {
          changed = true;
        }
        continue;
      }
      const newerThanAnswer = Boolean(entry.item.updatedAt && answer.asOf
        && compareTimestamps(entry.item.updatedAt, answer.asOf) > 0);
      if (!afterRead && !newerThanAnswer) continue;
      if (known && (sameItem(known, entry.item) || (known.updatedAt && entry.item.updatedAt
          && compareTimestamps(known.updatedAt, entry.item.updatedAt) > 0))) continue;
      state.items.set(entry.id, entry.item);
      changed = true;
    }
    return changed;
  }

  // --- HTTP -------------------------------------------------------------------------------

  #docUrl(state, id) {
    if (typeof id !== 'string' || id === '') throw new TypeError('a document id is required');
    return `${state.url}/${encodeURIComponent(id)}`;
  }

  async #request(url, { method, body, ifNoneMatch = null, ifMatch = null }, retried = false) {
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (ifNoneMatch) headers['If-None-Match'] = ifNoneMatch;
    if (ifMatch) headers['If-Match'] = ifMatch;
    if (this.#getIdToken) {
      let token;
      try {
        token = await this.#getIdToken(retried);
      } catch (error) {
        throw new ApiError(`could not get an ID token: ${error?.message ?? error}`,
          { status: 401, code: 'token_unavailable', cause: error });
      }
      if (token) headers.Authorization = `Bearer ${token}`;
    }
    const controller = typeof AbortController === 'function' ? new AbortController() : null;
    const timer = controller
      ? this.#setTimeout(() => controller.abort(), this.#opts.requestTimeoutMs) : null;
    let response;
    try {
      response = await this.#fetch(url, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        // Reads in a browser go through its HTTP cache, which revalidates every answer (they
        // are `private, no-cache` with an ETag) with an If-None-Match of its own; elsewhere we
        // send If-None-Match ourselves and keep nothing.
        cache: method === 'GET' && this.#httpCache && !ifNoneMatch ? 'default' : 'no-store',
        credentials: 'omit', // the ID token is the credential, never cookies
        signal: controller?.signal,
      });
    } catch (error) {
      const timedOut = controller?.signal.aborted;
      throw new ApiError(timedOut ? `no answer from ${url} within ${this.#opts.requestTimeoutMs} ms`
        : `cannot reach ${url}: ${error?.message ?? error}`,
      { status: 0, code: timedOut ? 'timeout' : 'network_error', cause: error });
    } finally {
      if (timer !== null) this.#clearTimeout(timer);
    }
    if (response.status === 401 && this.#getIdToken && !retried) {
      // An expired token: ask for a fresh one once.
      return this.#request(url, { method, body, ifNoneMatch, ifMatch }, true);
    }
    return response;
  }

  // --- events, cache, scheduling ---------------------------------------------------------------

  #detail(state) {
    return {
      collection: state.name,
      items: [...state.items.values()].sort(byId),
      source: state.source,
      stale: state.stale,
      asOf: state.asOf,
      checkedAt: state.checkedAt,
      freshAt: state.freshAt,
    };
  }

  #emit(state) {
    this.#dispatch(`${state.name}DataChanged`, this.#detail(state));
  }

  #dispatch(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
    if (this.#target && this.#target !== this && typeof this.#target.dispatchEvent === 'function') {
      this.#target.dispatchEvent(new CustomEvent(type, { detail }));
    }
  }

  #save(state) {
    if (!this.#storage || state.stale) return;
    const now = this.#now();
    const record = {
      v: CACHE_FORMAT, savedAt: now, asOf: state.asOf, source: state.serverSource,
      checkedAt: state.checkedAt, freshAt: state.freshAt, items: [...state.items.values()],
    };
    try {
      this.#storage.setItem(state.cacheKey, JSON.stringify(record));
      state.savedAt = now;
    } catch {
      // Quota exceeded or storage disabled: the copy is a convenience, never a failure.
    }
  }

  #restore(state) {
    if (!this.#storage) return null;
    try {
      const raw = this.#storage.getItem(state.cacheKey);
      if (!raw) return null;
      const record = JSON.parse(raw);
      const age = this.#now() - record.savedAt;
      if (record.v !== CACHE_FORMAT || !Array.isArray(record.items) || !(age >= 0)
          || age > this.#opts.cacheTtlMs) {
        this.#storage.removeItem(state.cacheKey);
        return null;
      }
      return record;
    } catch {
      return null;
    }
  }

  #scheduleAfterRun(state) {
    if (!this.#started || this.#opts.pollMs <= 0) return;
    let delay = this.#opts.pollMs;
    if (state.failures > 0) {
      const ceiling = Math.min(this.#opts.maxBackoffMs,
        Math.max(this.#opts.pollMs, 1000) * 2 ** Math.min(state.failures - 1, 16));
      delay = ceiling / 2 + this.#random() * (ceiling / 2); // "equal jitter"
      if (state.error?.retryAfterMs !== undefined) delay = Math.max(delay, state.error.retryAfterMs);
    }
    this.#schedule(state, delay);
  }

  #schedule(state, delay) {
    if (state.timer !== null) this.#clearTimeout(state.timer);
    state.timer = this.#setTimeout(() => {
      state.timer = null;
      if (!this.#started) return;
      if (this.#document?.hidden) {
        state.paused = true; // resumed by visibilitychange
        return;
      }
      this.#run(state, () => this.#poll(state))
        .catch(() => {})
        .then(() => this.#scheduleAfterRun(state));
    }, delay);
  }

  #listen() {
    const doc = this.#document;
    if (doc && typeof doc.addEventListener === 'function') {
      const onVisibility = () => {
        if (doc.hidden || !this.#started) return;
        for (const state of this.#states.values()) {
          if (state.paused || (state.checkedAt !== null
              && this.#now() - state.checkedAt >= this.#opts.pollMs)) {
            state.paused = false;
            this.#schedule(state, 0);
          }
        }
      };
      doc.addEventListener('visibilitychange', onVisibility);
      this.#listeners.push([doc, 'visibilitychange', onVisibility]);
    }
    const win = typeof window !== 'undefined' ? window : null;
    if (win && typeof win.addEventListener === 'function') {
      const onOnline = () => {
        for (const state of this.#states.values()) if (state.failures > 0) this.#schedule(state, 0);
      };
      win.addEventListener('online', onOnline);
      this.#listeners.push([win, 'online', onOnline]);
    }
  }
}
