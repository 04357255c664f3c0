// Test doubles for data-client.js (no network, no browser, no real timers):
// - FakeClock: `now`, `setTimeout` and `clearTimeout` under the test's control.
// - FakeStorage: an in-memory Storage (getItem/setItem/removeItem), optionally full.
// - FakeBackend: a fake `fetch` that plays the read and write API of the functions
//   (paging, updatedSince + deleted, weak ETags and 304, X-Data-Source, 400/409/412, Bearer).
// - FakeDocument: an EventTarget with a writable `hidden`.
// - FakeFirestoreSdk: the Firebase Web SDK's `firebase/firestore` functions the live mode uses
//   (query, where, onSnapshot, Timestamp, ...), listening to the FakeBackend's data. A fake
//   because it is the SDK boundary: the real SDK against Google's emulator is tested in
//   Chromium (tests/browser/test_live.py).

export async function flush(rounds = 20) {
  for (let i = 0; i < rounds; i += 1) await new Promise((resolve) => setImmediate(resolve));
}

/**
 * An unsigned JWT naming `sub` (with `admin: true` unless told otherwise): what the client
 * reads a user from (the signature is the functions' business, not the client's).
 */
export function testToken(sub = 'test-user', claims = { admin: true }) {
  const encode = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${encode({ alg: 'none', typ: 'JWT' })}.${encode({ sub, ...claims })}.`;
}

export class FakeClock {
  constructor(start = Date.parse('2025-06-01T12:00:00Z')) {
    this.time = start;
    this.timers = new Map();
    this.nextId = 1;
    this.now = () => this.time;
    this.setTimeout = (fn, ms = 0) => {
      const id = this.nextId;
      this.nextId += 1;
      this.timers.set(id, { due: this.time + Math.max(0, ms), fn });
      return id;
    };
    this.clearTimeout = (id) => {
      this.timers.delete(id);
    };
  }

  /** Delays of the pending timers, shortest first (the request timeouts included). */
  pending() {
    return [...this.timers.values()].map((timer) => timer.due - this.time).sort((a, b) => a - b);
  }

  /** Move time forward by `ms`, running due timers in order and letting promises settle. */
  async advance(ms) {
    const target = this.time + ms;
    await flush();
    for (;;) {
      let next = null;
      for (const [id, timer] of this.timers) {
        if (timer.due <= target && (next === null || timer.due < next[1].due)) next = [id, timer];
      }
      if (next === null) break;
      this.timers.delete(next[0]);
      this.time = Math.max(this.time, next[1].due);
      next[1].fn();
      await flush();
    }
    this.time = target;
    await flush();
  }
}

export class FakeStorage {
  constructor({ full = false } = {}) {
    this.map = new Map();
    this.full = full;
  }

  getItem(key) {
    return this.map.has(key) ? this.map.get(key) : null;
  }

  setItem(key, value) {
    if (this.full) {
      const error = new Error('quota exceeded');
      error.name = 'QuotaExceededError';
      throw error;
    }
    this.map.set(key, String(value));
  }

  removeItem(key) {
    this.map.delete(key);
  }

  get length() {
    return this.map.size;
  }

  key(index) {
    return [...this.map.keys()][index] ?? null;
  }
}

export class FakeDocument extends EventTarget {
  constructor() {
    super();
    this.hidden = false;
  }

  setHidden(hidden) {
    this.hidden = hidden;
    this.dispatchEvent(new Event('visibilitychange'));
  }
}

function hash(text) {
  let h = 5381;
  for (let i = 0; i < text.length; i += 1) h = ((h * 33) ^ text.charCodeAt(i)) >>> 0;
  return h.toString(16);
}

function json(status, body, headers = {}) {
  return new Response(JSON.stringify(body), {
    status, headers: { 'Content-Type': 'application/json; charset=utf-8', ...headers },
  });
}

function errorBody(code, message, details) {
  return { error: details === undefined ? { code, message } : { code, message, details } };
}

/**
 * The backend as the client sees it. `mode`: 'firestore' (default), 'snapshot' (answers say
 * so), 'down' (fetch rejects like an unreachable host), 'unavailable' (503 + Retry-After).
 */
export class FakeBackend {
  constructor(clock, { pageSize = 2, reportDeletions = true, token = null, origin = 'http://api.test' } = {}) {
    this.clock = clock;
    this.origin = origin;
    this.pageSize = pageSize;
    this.reportDeletions = reportDeletions;
    this.token = token; // required Bearer token for every request when set
    this.mode = 'firestore';
    this.snapshotAsOf = null; // asOf of snapshot answers (generatedAt); a fresh stamp when null
    this.retryAfter = '7';
    this.collections = new Map([['users', new Map()], ['jobs', new Map()]]);
    this.tombstones = new Map([['users', new Map()], ['jobs', new Map()]]);
    this.requests = [];
    this.listAsOfs = [];
    this.maxLimit = 1000; // the asOf of every 200 list answer, in order
    this.gate = null; // a promise every response waits for (to hold answers in flight)
    this.micro = 0;
    this.watchers = new Set(); // called after every change (the fake SDK's listeners)
    this.fetch = (url, init = {}) => this.handle(url, init);
  }

  changed() {
    for (const watcher of this.watchers) watcher();
  }

  /** A server timestamp strictly after the previous one, with microseconds. */
  stamp() {
    this.micro = (this.micro + 1) % 1000;
    const iso = new Date(this.clock.now()).toISOString(); // ...SS.mmmZ
    return `${iso.slice(0, -1)}${String(this.micro).padStart(3, '0')}Z`;
  }

  put(collection, item) {
    const stored = { ...item, updatedAt: this.stamp() };
    this.collections.get(collection).set(item.id, stored);
    this.tombstones.get(collection).delete(item.id);
    this.changed();
    return stored;
  }

  delete(collection, id) {
    this.collections.get(collection).delete(id);
    this.tombstones.get(collection).set(id, this.stamp());
    this.changed();
  }

  seed(collection, count, prefix = 'u') {
    for (let i = 0; i < count; i += 1) {
      this.put(collection, { id: `${prefix}${i}`, name: `Name ${i}`, email: `n${i}@example.com` });
    }
  }

  last(filter = () => true) {
    return this.requests.filter(filter).at(-1);
  }

  async handle(rawUrl, init) {
    const url = new URL(rawUrl);
    const headers = new Headers(init.headers || {});
    this.requests.push({
      method: init.method || 'GET', url, path: url.pathname, params: url.searchParams, headers,
      body: init.body === undefined ? undefined : JSON.parse(init.body), init,
    });
    if (this.gate) await this.gate;
    if (this.mode === 'down') throw new TypeError('Failed to fetch');
    if (this.mode === 'unavailable') {
      return json(503, errorBody('unavailable', 'retry shortly'), { 'Retry-After': this.retryAfter });
    }
    if (this.token !== null && headers.get('Authorization') !== `Bearer ${this.token}`) {
      return json(401, errorBody('expired_token', 'the ID token has expired'));
    }
    const [, collection, rawId, extra] = url.pathname.split('/');
    if (!this.collections.has(collection) || extra !== undefined) {
      return json(404, errorBody('not_found', 'no such path'));
    }
    const id = rawId === undefined || rawId === '' ? null : decodeURIComponent(rawId);
    const method = init.method || 'GET';
    if (id === null && method === 'GET') return this.list(collection, url.searchParams, headers);
    if (id !== null && method === 'GET') return this.getOne(collection, id);
    if (id === null && method === 'POST') return this.create(collection, JSON.parse(init.body));
    if (id !== null && (method === 'PATCH' || method === 'PUT' || method === 'DELETE')) {
      return this.write(collection, id, method, init.body === undefined ? null : JSON.parse(init.body),
        headers.get('If-Match'));
    }
    return json(405, errorBody('method_not_allowed', `${method} is not allowed here`));
  }

  source() {
    return this.mode === 'snapshot' ? 'snapshot' : 'firestore';
  }

  list(collection, params, headers) {
    const since = params.get('updatedSince');
    const limit = Number(params.get('limit') || this.pageSize);
    if (limit > this.maxLimit) {
      return json(400, errorBody('invalid_limit', `limit must be an integer from 1 to ${this.maxLimit}`));
    }
    const after = params.get('pageToken');
    let items = [...this.collections.get(collection).values()].sort((a, b) => (a.id < b.id ? -1 : 1));
    if (since) items = items.filter((item) => item.updatedAt > since);
    if (after) items = items.filter((item) => item.id > after);
    const page = items.slice(0, limit);
    const next = items.length > limit ? page.at(-1).id : null;
    const head = { collection, items: page, count: page.length, nextPageToken: next };
    if (since && this.reportDeletions) {
      head.deleted = [...this.tombstones.get(collection)].filter(([, at]) => at > since)
        .map(([deletedId]) => deletedId);
    }
    const etag = `W/"${hash(JSON.stringify(head))}"`;
    const common = { ETag: etag, 'X-Data-Source': this.source() };
    if (headers.get('If-None-Match') === etag) {
      return new Response(null, { status: 304, headers: common });
    }
    const asOf = this.mode === 'snapshot' && this.snapshotAsOf ? this.snapshotAsOf : this.stamp();
    this.listAsOfs.push(asOf);
    return json(200, { ...head, source: this.source(), asOf }, common);
  }

  getOne(collection, id) {
    const item = this.collections.get(collection).get(id);
    if (!item) return json(404, errorBody('not_found', `no document ${id}`));
    return json(200, item, { ETag: this.etagOf(item), 'X-Data-Source': this.source() });
  }

  etagOf(item) {
    return `W/"${hash(JSON.stringify(item))}"`;
  }

  validate(data, partial) {
    const fields = [];
    if ((!partial || 'name' in data) && !(typeof data.name === 'string' && data.name.length > 0)) {
      fields.push({ field: 'name', message: 'must not be empty' });
    }
    if ((!partial || 'email' in data) && !/^[^@\s]+@[^@\s]+$/.test(data.email ?? '')) {
      fields.push({ field: 'email', message: 'must be an email address' });
    }
    if (fields.length === 0) return null;
    return json(400, errorBody('validation_failed', `${fields.length} invalid field(s)`, { fields }));
  }

  create(collection, data) {
    const invalid = this.validate(data, false);
    if (invalid) return invalid;
    const docs = this.collections.get(collection);
    const id = data.id ?? `gen${docs.size + 1}`;
    if (docs.has(id)) return json(409, errorBody('conflict', `document ${id} exists`));
    const stored = this.put(collection, { ...data, id, createdAt: this.stamp() });
    return json(201, stored, { ETag: this.etagOf(stored), Location: `${this.origin}/${collection}/${id}` });
  }

  write(collection, id, method, data, ifMatch) {
    const docs = this.collections.get(collection);
    const current = docs.get(id);
    if (!current && method !== 'PUT') return json(404, errorBody('not_found', `no document ${id}`));
    if (ifMatch && (!current || this.etagOf(current) !== ifMatch)) {
      return json(412, errorBody('precondition_failed', 'the document changed meanwhile'));
    }
    if (method === 'DELETE') {
      this.delete(collection, id);
      return new Response(null, { status: 204 });
    }
    const invalid = this.validate(data, method === 'PATCH');
    if (invalid) return invalid;
    const next = method === 'PATCH' ? { ...current, ...data, id } : { ...data, id };
    const stored = this.put(collection, next);
    return json(current ? 200 : 201, stored, { ETag: this.etagOf(stored) });
  }
}

// --- the Firebase Web SDK (firestore) -------------------------------------------------------------

export class FakeTimestamp {
  constructor(seconds, nanoseconds) {
    this.seconds = seconds;
    this.nanoseconds = nanoseconds;
  }

  static fromMillis(ms) {
    return new FakeTimestamp(Math.floor(ms / 1000), (ms % 1000) * 1e6);
  }

  /** From the backend's RFC 3339 stamps (`...SS.ffffffZ`). */
  static parse(text) {
    const [whole, fraction = ''] = text.replace(/Z$/, '').split('.');
    return new FakeTimestamp(Date.parse(`${whole}Z`) / 1000, Number(fraction.padEnd(9, '0')));
  }

  compare(other) {
    return this.seconds - other.seconds || this.nanoseconds - other.nanoseconds;
  }
}

export class FakeGeoPoint {
  constructor(latitude, longitude) {
    this.latitude = latitude;
    this.longitude = longitude;
  }
}

export class FakeDocumentReference {
  constructor(path) {
    this.path = path;
  }
}

export class FakeBytes {
  constructor(base64) {
    this.base64 = base64;
  }

  toBase64() {
    return this.base64;
  }
}

const STAMP_FIELDS = ['createdAt', 'updatedAt', 'deletedAt', 'recordedAt'];

/**
 * The functions of `firebase/firestore` that data-client.js calls, over a FakeBackend: a
 * listener's query is `where(field, '>', Timestamp)` on a collection or on
 * `_tombstones/<name>/ids`; every backend change answers each listener with its changes
 * (added / modified / removed), asynchronously, as the SDK does. `offline()` / `online()` flip
 * `metadata.fromCache`, `fail(code)` ends every listener with an error, `deny` refuses new ones.
 */
export class FakeFirestoreSdk {
  constructor(backend) {
    this.backend = backend;
    this.listeners = new Set();
    this.fromCache = false;
    this.deny = null; // an error code new listeners fail with
    this.calls = []; // disableNetwork / enableNetwork
    this.enablesIgnored = 0; // this many enableNetwork() calls leave it offline (a backend not ready)
    this.Timestamp = FakeTimestamp;
    this.GeoPoint = FakeGeoPoint;
    this.DocumentReference = FakeDocumentReference;
    this.Bytes = FakeBytes;
    this.db = { toJSON: () => ({ settings: { host: 'firestore.test', ssl: true } }) };
    backend.watchers.add(() => this.deliverAll());
    // The module's functions, as `import * as sdk from 'firebase/firestore'` has them.
    this.collection = (db, ...path) => ({ path: path.join('/') });
    this.where = (field, op, value) => ({ field, op, value });
    this.query = (ref, filter) => ({ path: ref.path, filter });
    this.onSnapshot = (query, options, next, error) => this.listen(query, options, next, error);
    this.disableNetwork = async () => { this.calls.push('disableNetwork'); this.offline(); };
    this.enableNetwork = async () => {
      this.calls.push('enableNetwork');
      if (this.enablesIgnored > 0) this.enablesIgnored -= 1;
      else this.online();
    };
  }

  listen(query, options, next, error) {
    assert(query.filter.op === '>' && query.filter.value instanceof FakeTimestamp, 'a > Timestamp query');
    const listener = { query, next, error, docs: new Map(), answered: false, closed: false };
    this.listeners.add(listener);
    queueMicrotask(() => {
      if (this.deny) this.fail(this.deny, [listener]);
      else this.deliver(listener, true);
    });
    return () => {
      listener.closed = true;
      this.listeners.delete(listener);
    };
  }

  /** The documents a query matches now: Map id -> data (stamps as Timestamps). */
  results({ path, filter }) {
    const parts = path.split('/');
    const rows = parts[0] === '_tombstones'
      ? [...this.backend.tombstones.get(parts[1])].map(([id, at]) => ({ id, deletedAt: at, recordedAt: at }))
      : [...this.backend.collections.get(path).values()];
    const found = new Map();
    for (const row of rows) {
      const data = { ...row };
      delete data.id;
      for (const field of STAMP_FIELDS) if (typeof data[field] === 'string') data[field] = FakeTimestamp.parse(data[field]);
      if (data[filter.field] instanceof FakeTimestamp && data[filter.field].compare(filter.value) > 0) {
        found.set(row.id, data);
      }
    }
    return found;
  }

  deliverAll() {
    for (const listener of this.listeners) queueMicrotask(() => this.deliver(listener, false));
  }

  deliver(listener, first) {
    if (listener.closed) return;
    const now = this.results(listener.query);
    const changes = [];
    const doc = (id, data) => ({ id, data: () => data });
    for (const [id, data] of now) {
      const before = listener.docs.get(id);
      if (!before) changes.push({ type: 'added', doc: doc(id, data) });
      else if (JSON.stringify(before) !== JSON.stringify(data)) changes.push({ type: 'modified', doc: doc(id, data) });
    }
    for (const [id, data] of listener.docs) if (!now.has(id)) changes.push({ type: 'removed', doc: doc(id, data) });
    if (this.fromCache && !first) return; // offline: nothing new arrives
    if (changes.length === 0 && !first && listener.answered) return;
    listener.docs = now;
    listener.answered = true;
    listener.next({ docChanges: () => changes, size: now.size, metadata: { fromCache: this.fromCache, hasPendingWrites: false } });
  }

  /** Metadata-only snapshots, as the SDK raises them with includeMetadataChanges. */
  announce() {
    for (const listener of this.listeners) {
      listener.next({ docChanges: () => [], size: listener.docs.size,
        metadata: { fromCache: this.fromCache, hasPendingWrites: false } });
    }
  }

  offline() {
    this.fromCache = true;
    this.announce();
  }

  online() {
    this.fromCache = false;
    this.announce();
    this.deliverAll();
  }

  fail(code, which = [...this.listeners]) {
    for (const listener of which) {
      this.listeners.delete(listener);
      listener.closed = true;
      const error = new Error(`Missing or insufficient permissions (${code}).`);
      error.code = code;
      listener.error(error);
    }
  }
}

function assert(condition, message) {
  if (!condition) throw new Error(`fake SDK: ${message}`);
}
