/**
 * client/idb-store.js: where the data client keeps its last good copies between visits. Every
 * store has the same small async shape, `{ get(key), set(key, text), delete(key), clear() }`
 * (strings in, strings out; any failure rejects and the caller shrugs it off):
 *
 * - `indexedDbStore()`: the browser's IndexedDB (database `dashboard-data-client`, one object
 *   store), the default in a browser: per origin, survives the tab, asynchronous, and bigger than
 *   `sessionStorage` (whose 5 MB and synchronous writes suit a collection poorly).
 * - `webStorageStore(storage)`: a `Storage` (`sessionStorage`, `localStorage`, or a test's fake)
 *   behind the same shape; `clear()` removes only this client's keys.
 *
 * Opening IndexedDB can hang (another tab holding an old version open blocks an upgrade) or
 * throw (disabled storage, some private windows): it has a deadline, and then the store answers
 * "nothing" to every call, so the client behaves as if it kept no copy.
 */

export const DB_NAME = 'dashboard-data-client';
const STORE = 'copies';
const OPEN_TIMEOUT_MS = 2000;
export const KEY_PREFIX = 'dashboard-data:';

function requestDone(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

// One opening per IndexedDB factory, shared by every store of this module instance: a page can
// load client/open-store.js as an async module ahead of its app, and that opening (30-100 ms
// measured on a repeat visit) overlaps the loading of the app's other modules. (The demo page's
// early start reads the database itself, in index.html's inline script.)
const openings = new WeakMap(); // idb factory -> promise of the open database

/** The IndexedDB store of this origin, or null where IndexedDB does not exist. */
export function indexedDbStore(idb = globalThis.indexedDB) {
  if (!idb || typeof idb.open !== 'function') return null;

  function open() {
    const shared = openings.get(idb);
    if (shared) return shared;
    const forget = () => { if (openings.get(idb) === opened) openings.delete(idb); };
    const opened = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('IndexedDB did not open in time')),
        OPEN_TIMEOUT_MS);
      let request;
      try {
        request = idb.open(DB_NAME, 1);
      } catch (error) {
        clearTimeout(timer);
        reject(error);
        return;
      }
      request.onupgradeneeded = () => request.result.createObjectStore(STORE);
      request.onsuccess = () => {
        clearTimeout(timer);
        const db = request.result;
        db.onversionchange = () => { db.close(); forget(); };
        resolve(db);
      };
      request.onerror = () => { clearTimeout(timer); reject(request.error); };
      request.onblocked = () => { clearTimeout(timer); reject(new Error('IndexedDB blocked')); };
    });
    openings.set(idb, opened);
    opened.catch(forget);
    return opened;
  }

  async function run(mode, action) {
    const db = await open();
    const tx = db.transaction(STORE, mode);
    const result = requestDone(action(tx.objectStore(STORE)));
    await new Promise((resolve, reject) => {
      tx.oncomplete = resolve;
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error ?? new Error('transaction aborted'));
    });
    return result;
  }

  return {
    kind: 'indexeddb',
    warm: () => { open().catch(() => {}); }, // open now: the first read is on the page's path
    get: async (key) => {
      const value = await run('readonly', (store) => store.get(key));
      return typeof value === 'string' ? value : null;
    },
    set: (key, text) => run('readwrite', (store) => store.put(text, key)),
    delete: (key) => run('readwrite', (store) => store.delete(key)),
    clear: () => run('readwrite', (store) => store.clear()),
  };
}

/** A `Storage` (`getItem`, `setItem`, `removeItem`) as a store; null stays null. */
export function webStorageStore(storage) {
  if (!storage) return null;
  const own = () => {
    const keys = [];
    for (let i = 0; i < (storage.length ?? 0); i += 1) {
      const key = storage.key(i);
      if (key?.startsWith(KEY_PREFIX)) keys.push(key);
    }
    return keys;
  };
  return {
    kind: 'webstorage',
    get: async (key) => storage.getItem(key),
    set: async (key, text) => storage.setItem(key, text),
    delete: async (key) => storage.removeItem(key),
    clear: async () => { for (const key of own()) storage.removeItem(key); },
  };
}

/** The store for the `storage` option: a store as is, a `Storage` wrapped, null for none. */
export function storeOf(option) {
  if (option === null || option === undefined) return null;
  if (typeof option.get === 'function' && typeof option.set === 'function') return option;
  if (typeof option.getItem === 'function') return webStorageStore(option);
  throw new TypeError('createDataClient: storage must be a Storage, a store or null');
}
