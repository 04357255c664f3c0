/**
 * page/early-read.js: the early start's reads (page/early.js), begun as soon as the page has
 * this one module (it imports only client/idb-store.js, which imports nothing): index.html
 * loads it first, as an `async` module, so IndexedDB opens and reads while the other modules
 * still arrive and compile. `reads.copies`: every saved copy `[key, text]` of the data client's
 * store (it holds one user's copies at a time); `reads.session`: who the Firebase SDK's
 * persisted session of the page's app names. Nothing here is shown: page/early.js decides.
 */

import { indexedDbStore } from '../client/idb-store.js';

performance.mark('dashboard-early-read-start'); // bench/load_bench.py reports it

export const FIREBASE_APP_NAME = 'dashboard'; // page/firebase.js's initializeApp name
const FIREBASE_DB = 'firebaseLocalStorageDb'; // the SDK's indexedDBLocalPersistence
const FIREBASE_STORE = 'firebaseLocalStorage';
const SESSION_TIMEOUT_MS = 1000;

/** Who an ID token's payload names: `{ uid, admin }`, or null (client/transport.js's rule). */
function tokenIdentity(token) {
  try {
    const payload = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const claims = JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(payload), (c) => c.charCodeAt(0))));
    return typeof claims?.sub === 'string' && claims.sub ? { uid: claims.sub, admin: claims.admin === true } : null;
  } catch {
    return null;
  }
}

/**
 * Who the Firebase SDK's persisted session of the page's app names, `{ uid, admin }` (the
 * admin claim of its last ID token, expired or not), or null: none, several users, or the
 * database absent (never created here: an open that would create it is aborted).
 */
export function persistedSession(idb = globalThis.indexedDB) {
  return new Promise((resolve) => {
    if (!idb) {
      resolve(null);
      return;
    }
    const timer = setTimeout(() => resolve(null), SESSION_TIMEOUT_MS);
    const done = (value) => { clearTimeout(timer); resolve(value); };
    let request;
    try {
      request = idb.open(FIREBASE_DB);
    } catch {
      done(null);
      return;
    }
    request.onupgradeneeded = () => request.transaction.abort(); // no session: leave no database
    request.onerror = () => done(null);
    request.onblocked = () => done(null);
    request.onsuccess = () => {
      const db = request.result;
      const finish = (value) => { db.close(); done(value); };
      if (!db.objectStoreNames.contains(FIREBASE_STORE)) {
        finish(null);
        return;
      }
      const all = db.transaction(FIREBASE_STORE, 'readonly').objectStore(FIREBASE_STORE).getAll();
      all.onerror = () => finish(null);
      all.onsuccess = () => {
        const users = all.result.filter((entry) => typeof entry?.fbase_key === 'string'
          && entry.fbase_key.startsWith('firebase:authUser:')
          && entry.fbase_key.endsWith(`:${FIREBASE_APP_NAME}`)).map((entry) => entry.value);
        const uids = new Set(users.map((user) => user?.uid));
        if (users.length === 0 || uids.size !== 1 || typeof users[0]?.uid !== 'string') {
          finish(null);
          return;
        }
        const claims = users.map((user) => tokenIdentity(user?.stsTokenManager?.accessToken));
        const admin = claims.every((who) => who?.uid === users[0].uid && who.admin);
        finish({ uid: users[0].uid, admin });
      };
    };
  });
}

/** The data client's store (the same opening it reuses), or null without IndexedDB. */
export const store = indexedDbStore();

/** Begun now: `{ copies: Promise<[key, text][] | null>, session: Promise<{ uid, admin } | null> }`. */
export const reads = {
  copies: store ? store.entries().catch(() => null) : Promise.resolve(null),
  session: persistedSession(),
};
