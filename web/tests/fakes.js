// Test doubles for data-client.js (no network, no browser, no real timers):
// - FakeClock: `now`, `setTimeout` and `clearTimeout` under the test's control.
// - FakeStorage: an in-memory Storage (getItem/setItem/removeItem), optionally full.
// - FakeBackend: a fake `fetch` that plays the read and write API of the functions
//   (paging, updatedSince + deleted, weak ETags and 304, X-Data-Source, 400/409/412, Bearer).
// - FakeDocument: an EventTarget with a writable `hidden`.

export async function flush(rounds = 20) {
  for (let i = 0; i < rounds; i += 1) await new Promise((resolve) => setImmediate(resolve));
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
    this.fetch = (url, init = {}) => this.handle(url, init);
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
    return stored;
  }

  delete(collection, id) {
    this.collections.get(collection).delete(id);
    this.tombstones.get(collection).set(id, this.stamp());
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
