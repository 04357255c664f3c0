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
 * - Live mode (option `live: { sdk, db }`, the Firebase Web SDK's `firebase/firestore` module and
 *   a Firestore instance, or a promise of them): after the first answer of the read function,
 *   two Firestore listeners per collection, `updatedAt > asOf` on the collection and
 *   `recordedAt > asOf` on its tombstones (`_tombstones/<name>/ids`), bring every change within
 *   milliseconds, and polling stops: a quiet tab then costs no call and no read. When the
 *   listeners fail (rules, errors) or lose Firestore (a reachability probe of the SDK's host
 *   that Firestore does not bill), the client polls again at once, and goes back to live by
 *   itself. `client.state(name).mode` (and the events' `detail.mode`) says which:
 *   'live' | 'polling' | 'snapshot' | 'cache' (null before any data).
 */

export const CACHE_TTL_MS = 5 * 60 * 1000;
export const DEFAULT_POLL_MS = 5000;
export const DEFAULT_RESYNC_MS = 60 * 1000;
export const MAX_BACKOFF_MS = 60 * 1000;
export const REQUEST_TIMEOUT_MS = 15 * 1000;
export const LIVE_PROBE_MS = 5000;
export const LIVE_RETRY_MS = 30 * 1000;
export const TOMBSTONES = '_tombstones';
const LIVE_RETRY_MAX_MS = 10 * 60 * 1000;
// Google's emulator answers each change with a RESET, which the SDK reports as a moment
// "from cache": only a longer spell counts as lost.
const LIVE_GRACE_MS = 5000;
// The listeners start this much before the read's asOf: a write whose server timestamp is
// earlier than the read but that commits after it (the emulator: up to ~0.4 s) is not missed.
const LIVE_SLACK_MS = 2000;
// A snapshot's asOf is when it was written; a change reaches it through the publisher up to
// PUBLISH_WAIT_S (60 s) later: listening from a snapshot answer starts that much earlier.
const LIVE_SNAPSHOT_SLACK_MS = 60 * 1000;
const PROBE_TIMEOUT_MS = 3000;
const PROBE_CONFIRM_MS = 1000; // a failed probe is tried again this soon before it counts
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
 * A Firestore value from the Web SDK as the read API encodes it (shared/encoding.py):
 * timestamps as RFC 3339 UTC strings (fraction only when present), GeoPoints as
 * `{ latitude, longitude }`, references as document paths, bytes as base64, NaN and the
 * infinities as strings.
 */
export function encodeFirestoreValue(value, sdk) {
  if (value === null || value === undefined || typeof value === 'boolean'
      || typeof value === 'string') return value ?? null;
  if (typeof value === 'number') {
    if (Number.isNaN(value)) return 'NaN';
    if (!Number.isFinite(value)) return value > 0 ? 'Infinity' : '-Infinity';
    return value;
  }
  if (Array.isArray(value)) return value.map((item) => encodeFirestoreValue(item, sdk));
  if (sdk.Timestamp && value instanceof sdk.Timestamp) return formatTimestamp(value);
  if (sdk.GeoPoint && value instanceof sdk.GeoPoint) {
    return { latitude: value.latitude, longitude: value.longitude };
  }
  if (sdk.DocumentReference && value instanceof sdk.DocumentReference) return value.path;
  if (sdk.Bytes && value instanceof sdk.Bytes) return value.toBase64();
  const out = {};
  for (const [key, item] of Object.entries(value)) out[key] = encodeFirestoreValue(item, sdk);
  return out;
}

/** A document as the read API lists it: `id` first, then its fields sorted by name. */
export function encodeFirestoreDocument(id, data, sdk) {
  const item = { id };
  for (const key of Object.keys(data).sort()) {
    if (key !== 'id') item[key] = encodeFirestoreValue(data[key], sdk);
  }
  return item;
}

function formatTimestamp({ seconds, nanoseconds }) {
  const text = new Date(seconds * 1000).toISOString().slice(0, 19);
  const fraction = String(nanoseconds).padStart(9, '0').replace(/0+$/, '');
  return `${text}${fraction ? `.${fraction}` : ''}Z`;
}

/** The URL that says whether the SDK's Firestore host answers (Firestore bills nothing). */
function sdkProbeUrl(db) {
  try {
    const settings = db?.toJSON?.().settings;
    if (!settings || typeof settings.host !== 'string') return null;
    return `${settings.ssl === false ? 'http' : 'https'}://${settings.host}/`;
  } catch {
    return null;
  }
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
 * - `live`: `{ sdk, db }` (or a promise of it): the `firebase/firestore` module and a Firestore
 *   instance whose user may read the collections under `firestore.rules`. Unset: polling only.
 *   `liveProbeMs` (5000; 0: no probe), `liveProbeUrl` (the SDK's host by default),
 *   `liveRetryMs` (30000: first retry after a listener failed; doubles up to 10 minutes).
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
  #live = null; // { sdk, db } once the injected SDK is there
  #liveError = null;
  #probe = { url: null, timer: null, down: false, working: false, paused: false, failed: 0 };

  constructor(options = {}) {
    super();
    const {
      baseUrl = '', collections = ['users', 'jobs'], getIdToken = null,
      pollMs = DEFAULT_POLL_MS, resyncMs = DEFAULT_RESYNC_MS, cacheTtlMs = CACHE_TTL_MS,
      pageSize = null, maxBackoffMs = MAX_BACKOFF_MS, requestTimeoutMs = REQUEST_TIMEOUT_MS,
      live = null, liveProbeMs = LIVE_PROBE_MS, liveProbeUrl = null, liveRetryMs = LIVE_RETRY_MS,
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
    this.#opts = {
      pollMs, resyncMs, cacheTtlMs, pageSize, maxBackoffMs, requestTimeoutMs, liveProbeMs,
      liveRetryMs,
    };
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
      });
    }
    if (live) this.#useLive(live, liveProbeUrl);
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

  /** Stop polling, the Firestore listeners and the page listeners; the copies stay readable. */
  stop() {
    this.#started = false;
    this.#startPromise = null;
    for (const state of this.#states.values()) {
      if (state.timer !== null) this.#clearTimeout(state.timer);
      state.timer = null;
      this.#stopListening(state);
      if (state.live.retryTimer !== null) this.#clearTimeout(state.live.retryTimer);
      state.live.retryTimer = null;
    }
    if (this.#probe.timer !== null) this.#clearTimeout(this.#probe.timer);
    this.#probe.timer = null;
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
    const state = this.#state(name);
    return {
      ...state.usage, mode: this.#mode(state), liveError: this.#liveProblem(state),
    };
  }

  /** Why a collection is not live (null when it is, or when live mode is not configured). */
  #liveProblem(state) {
    const error = state.live.error ?? this.#liveError;
    if (error || !this.#live || this.#isLive(state)) return error ?? null;
    if (this.#probe.down) return new Error(`Firestore cannot be reached (${this.#probe.url})`);
    return new Error('the listeners have not answered from the server yet');
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
    const response = await this.#request(state, this.#docUrl(state, id), { method: 'GET' });
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
    const response = await this.#request(state, state.url, { method: 'POST', body: data });
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
    const response = await this.#request(state, this.#docUrl(state, id), {
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
    } else if (err.retryable && !state.stale && !this.#isLive(state)) {
      // (Current listeners keep the copy fresh whatever the function does.)
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
      const response = await this.#request(state, qs ? `${state.url}?${qs}` : state.url, {
        method: 'GET', ifNoneMatch: pages === 0 && !this.#httpCache ? etag : null,
      });
      const headerSource = response.headers.get('X-Data-Source');
      if (response.status === 304 && pages === 0) {
        if (headerSource !== 'snapshot') state.usage.pollReads += 1;
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
      if ((headerSource || body.source) !== 'snapshot') {
        state.usage.pollReads += Math.max(1, body.items.length)
          + (Array.isArray(body.deleted) ? body.deleted.length : 0);
      }
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
    const response = await this.#request(state, this.#docUrl(state, id), {
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
    // A deletion remembers the version it removed: listener answers up to it are older.
    const version = item === null ? state.items.get(id)?.updatedAt ?? null : null;
    state.writeLog.push({ seq: state.writeSeq, at: now, id, item, version });
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

  async #request(state, url, { method, body, ifNoneMatch = null, ifMatch = null }, retried = false) {
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
    state.usage.calls += 1;
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
      return this.#request(state, url, { method, body, ifNoneMatch, ifMatch }, true);
    }
    return response;
  }

  // --- live mode: Firestore listeners ----------------------------------------------------------

  #useLive(live, probeUrl) {
    Promise.resolve(live).then((dependency) => {
      const { sdk, db } = dependency ?? {};
      const needed = ['collection', 'query', 'where', 'onSnapshot', 'Timestamp'];
      if (!sdk || !db || needed.some((name) => !sdk[name])) {
        throw new TypeError(`live needs { sdk, db }: the firebase/firestore module (${needed
          .join(', ')}) and a Firestore instance`);
      }
      this.#live = { sdk, db };
      this.#probe.url = probeUrl || sdkProbeUrl(db);
      for (const state of this.#states.values()) this.#maybeListen(state);
    }).catch((error) => {
      // No SDK (blocked, not configured): polling stays, and says why.
      this.#liveError = error;
    });
  }

  /** Live when both listeners answer from the server and Firestore is known reachable. */
  #isLive(state) {
    return state.live.up && !this.#probe.down;
  }

  #mode(state) {
    if (!state.loaded) return null;
    if (this.#isLive(state)) return 'live';
    if (state.source === 'cache' || state.source === 'snapshot') return state.source;
    return 'polling';
  }

  /**
   * Start the listeners once the copy has a cursor: the asOf of an answer of the function (or
   * of the tab's saved copy of one), a time up to which the copy holds every change, as the
   * next poll would assume. So live mode also runs while the functions are down.
   */
  #maybeListen(state) {
    const { live } = state;
    if (!this.#started || !this.#live || live.stops.length > 0 || live.retryTimer !== null
        || !state.loaded || !state.cursor) {
      return;
    }
    const { sdk, db } = this.#live;
    const anchor = splitTimestamp(state.cursor);
    if (anchor === null) return;
    const slack = state.serverSource === 'firestore' ? LIVE_SLACK_MS : LIVE_SNAPSHOT_SLACK_MS;
    const since = sdk.Timestamp.fromMillis(Math.max(0, anchor.ms - slack));
    live.current = { docs: false, tombstones: false };
    live.answered = { docs: false, tombstones: false };
    live.generation += 1;
    const { generation } = live;
    // Answers of listeners already stopped (the other one's error, ...) are ignored.
    const listen = (kind, ref, field, apply) => sdk.onSnapshot(
      sdk.query(ref, sdk.where(field, '>', since)), { includeMetadataChanges: true },
      (snapshot) => generation === live.generation
        && this.#onLiveSnapshot(state, kind, snapshot, apply),
      (error) => generation === live.generation && this.#onLiveError(state, error));
    try {
      live.stops.push(listen('docs', sdk.collection(db, state.name), 'updatedAt',
        (changes) => this.#applyDocChanges(state, changes)));
      live.stops.push(listen('tombstones', sdk.collection(db, TOMBSTONES, state.name, 'ids'),
        'recordedAt', (changes) => this.#applyTombstones(state, changes)));
    } catch (error) {
      this.#onLiveError(state, error);
    }
  }

  #onLiveSnapshot(state, kind, snapshot, apply) {
    const { live } = state;
    const before = this.#mode(state);
    const changes = snapshot.docChanges();
    // Billed as Firestore bills a listener: each document added or changed, and one read for
    // an empty first answer. (Google's emulator resends the whole result after every change;
    // the SDK reports only what changed, as production sends it.)
    let reads = changes.filter((change) => change.type !== 'removed').length;
    if (!snapshot.metadata.fromCache && !live.answered[kind]) {
      live.answered[kind] = true;
      if (snapshot.size === 0) reads += 1;
    }
    state.usage.listenReads += reads;
    const changed = changes.length > 0 && apply(changes);
    live.current[kind] = !snapshot.metadata.fromCache;
    if (live.current.docs && live.current.tombstones) {
      if (live.graceTimer !== null) this.#clearTimeout(live.graceTimer);
      live.graceTimer = null;
      live.up = true;
      live.failures = 0;
      live.error = null;
    } else if (live.up && live.graceTimer === null) {
      live.graceTimer = this.#setTimeout(() => {
        live.graceTimer = null;
        if (live.current.docs && live.current.tombstones) return;
        const was = this.#mode(state);
        live.up = false;
        this.#modeChanged(state, was, false);
      }, LIVE_GRACE_MS);
    }
    this.#modeChanged(state, before, changed);
  }

  /** `updatedAt > asOf` on the collection: added and changed documents are merged; one that
   * leaves the result was deleted (updatedAt only grows). */
  #applyDocChanges(state, changes) {
    const { sdk } = this.#live;
    let changed = false;
    for (const change of changes) {
      const item = encodeFirestoreDocument(change.doc.id, change.doc.data(), sdk);
      if (change.type !== 'removed') {
        if (!this.#deletedHere(state, item)) changed = this.#merge(state, item) || changed;
      } else {
        changed = this.#removeUnlessNewer(state, item.id, item.updatedAt) || changed;
      }
    }
    return changed;
  }

  /** `recordedAt > asOf` on the tombstones: each one deletes its document, unless the copy
   * holds a version written after the deletion (the document was created again). */
  #applyTombstones(state, changes) {
    const { sdk } = this.#live;
    let changed = false;
    for (const change of changes) {
      if (change.type === 'removed') continue; // pruned
      const data = change.doc.data();
      const deletedAt = encodeFirestoreValue(data.deletedAt ?? data.recordedAt, sdk);
      changed = this.#removeUnlessNewer(state, change.doc.id, deletedAt) || changed;
    }
    return changed;
  }

  /** This tab deleted the document after the version the listener brings (a listener's first
   * answer can come after the tab's own delete). */
  #deletedHere(state, item) {
    const entry = state.writeLog.findLast((logged) => logged.id === item.id);
    if (!entry || entry.item !== null) return false;
    return !entry.version || !item.updatedAt || compareTimestamps(item.updatedAt, entry.version) <= 0;
  }

  #removeUnlessNewer(state, id, version) {
    const known = state.items.get(id);
    if (!known) return false;
    if (known.updatedAt && typeof version === 'string'
        && compareTimestamps(known.updatedAt, version) > 0) return false;
    state.items.delete(id);
    state.docEtags.delete(id);
    return true;
  }

  #onLiveError(state, error) {
    const before = this.#mode(state);
    const { live } = state;
    this.#stopListening(state);
    live.failures += 1;
    live.error = new ApiError(`live updates stopped: ${error?.message ?? error}`, {
      status: error?.code === 'permission-denied' ? 403 : 0,
      code: `live_${String(error?.code ?? 'error').replace(/[^a-z]+/gi, '_')}`,
      cause: error,
    });
    const delay = Math.min(LIVE_RETRY_MAX_MS, this.#opts.liveRetryMs * 2 ** (live.failures - 1));
    live.retryTimer = this.#setTimeout(() => {
      live.retryTimer = null;
      this.#maybeListen(state); // else after the next answer of the function from Firestore
    }, delay);
    this.#modeChanged(state, before, false);
    this.#dispatch('dataError', { collection: state.name, error: live.error,
      failures: live.failures });
  }

  #stopListening(state) {
    const { live } = state;
    live.generation += 1;
    for (const stop of live.stops.splice(0)) {
      try {
        stop();
      } catch {
        // already stopped
      }
    }
    if (live.graceTimer !== null) this.#clearTimeout(live.graceTimer);
    live.graceTimer = null;
    live.up = false;
  }

  /** After anything that may change the mode: stop or restart polling, emit, save. */
  #modeChanged(state, before, changed) {
    const after = this.#mode(state);
    if (after === 'live') {
      if (state.timer !== null) this.#clearTimeout(state.timer);
      state.timer = null;
      state.paused = false;
      if (before !== 'live') {
        state.source = 'firestore';
        state.serverSource = 'firestore';
        state.stale = false;
        this.#markFresh(state, 'firestore');
        // The first probe at once, while the listeners prove the host answers: a probe that
        // fails then (blocked by a policy?) is never trusted.
        this.#scheduleProbe(this.#probe.working ? this.#opts.liveProbeMs : 0);
      }
    } else if (before === 'live' && this.#started && this.#opts.pollMs > 0) {
      this.#schedule(state, 0); // what changed meanwhile, through the function, now
    }
    if (changed || after !== before) this.#emit(state);
    if (changed) this.#save(state);
  }

  // Firestore's SDK notices a lost server only after its own retries (about 30 s here); a
  // plain request to its host, which Firestore does not bill, says it within seconds.
  #scheduleProbe(delay) {
    const probe = this.#probe;
    if (!probe.url || probe.timer !== null || this.#opts.liveProbeMs <= 0) return;
    probe.paused = false;
    probe.timer = this.#setTimeout(() => {
      probe.timer = null;
      this.#runProbe();
    }, delay);
  }

  async #runProbe() {
    const probe = this.#probe;
    const listening = [...this.#states.values()].some((state) => state.live.stops.length > 0);
    if (!this.#started || !listening || !probe.url) return;
    if (this.#document?.hidden) {
      probe.paused = true; // resumed by visibilitychange
      return;
    }
    const ok = await this.#probeOnce(probe.url);
    if (ok) {
      probe.working = true;
      probe.failed = 0;
      if (probe.down) {
        // Live again once the listeners have answered from the server after reconnecting.
        const reconnects = Boolean(this.#live?.sdk.disableNetwork && this.#live?.sdk.enableNetwork);
        this.#eachMode(() => {
          probe.down = false;
          if (reconnects) for (const state of this.#states.values()) state.live.up = false;
        });
        await this.#reconnect();
      }
    } else if (!probe.working) {
      probe.url = null; // it never answered (blocked by a policy?): rely on the SDK alone
      return;
    } else if (!probe.down) {
      // Two failures in a row: one may be a busy moment.
      probe.failed += 1;
      if (probe.failed < 2) {
        this.#scheduleProbe(PROBE_CONFIRM_MS);
        return;
      }
      this.#eachMode(() => { probe.down = true; });
    }
    this.#scheduleProbe(this.#opts.liveProbeMs);
  }

  async #probeOnce(url) {
    const controller = typeof AbortController === 'function' ? new AbortController() : null;
    const timer = controller ? this.#setTimeout(() => controller.abort(), PROBE_TIMEOUT_MS) : null;
    try {
      await this.#fetch(url, {
        method: 'GET', mode: 'no-cors', cache: 'no-store', credentials: 'omit',
        signal: controller?.signal,
      });
      return true;
    } catch {
      return false;
    } finally {
      if (timer !== null) this.#clearTimeout(timer);
    }
  }

  /** Firestore is back: have the SDK reconnect now rather than after its backoff. */
  async #reconnect() {
    const { sdk, db } = this.#live ?? {};
    if (!sdk?.disableNetwork || !sdk?.enableNetwork) return;
    try {
      await sdk.disableNetwork(db);
      await sdk.enableNetwork(db);
    } catch {
      // the listeners recover on the SDK's own schedule
    }
  }

  #eachMode(change) {
    const before = new Map([...this.#states.values()].map((state) => [state, this.#mode(state)]));
    change();
    for (const [state, mode] of before) this.#modeChanged(state, mode, false);
  }

  // --- events, cache, scheduling ---------------------------------------------------------------

  #detail(state) {
    const mode = this.#mode(state);
    // Current listeners confirm the copy all the time.
    const now = mode === 'live' ? this.#now() : null;
    return {
      collection: state.name,
      items: [...state.items.values()].sort(byId),
      source: state.source,
      stale: state.stale,
      asOf: state.asOf,
      checkedAt: now ?? state.checkedAt,
      freshAt: now ?? state.freshAt,
      mode,
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
    this.#maybeListen(state);
    if (!this.#started || this.#opts.pollMs <= 0 || this.#isLive(state)) return;
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
      if (!this.#started || this.#isLive(state)) return;
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
        if (this.#probe.paused) this.#scheduleProbe(0);
        for (const state of this.#states.values()) {
          if (this.#isLive(state)) continue;
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
