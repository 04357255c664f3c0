/**
 * page/early.js: a repeat visit's early start. index.html loads it as an `async` module ahead
 * of app.js: it needs a dozen small modules, not app.js's graph and the Firebase SDK, and
 * before Firebase Authentication has restored the session (its SDK to load and compile, the
 * web config to read, `authStateReady()`), it paints the copy of the data this browser saved
 * for the person signed in here, and announces it (`usersDataChanged`, `jobsDataChanged`,
 * `source: 'cache'`, as the data client would). app.js then confirms: the same user (and, for
 * a copy saved with the admin claim, still an admin) and the data client takes the copy on
 * (its `shownCopies` option) without announcing it again; anyone else, or nobody, and
 * `dropEarly()` removes it from the page and deletes every saved copy.
 *
 * Shown only when three independent records name the same uid: the page's own note of who was
 * signed in last (`SIGNED_IN_KEY` in localStorage, written by app.js when Authentication
 * confirms someone, deleted at sign-out and whenever nobody is signed in), the session the
 * Firebase SDK itself persisted for the page's app (`firebaseLocalStorageDb`: the user that
 * `authStateReady()` is about to restore; no session there, nothing shown), and the copy's
 * owner (client/cache.js). The admin claim counts only when both the note and the persisted ID
 * token carry it. Not a security boundary (the functions check every call; the copy is this
 * browser's own): it keeps one person's data off another person's screen.
 */

import { indexedDbStore } from '../client/idb-store.js';
import { CACHE_LABEL_AGE_MS, parseCopy } from '../client/cache.js';
import { byId, createCollectionStates } from '../client/collections.js';
import { tokenIdentity } from '../client/transport.js';
import { readConfig } from './config.js';
import { paintCopy, unpaint } from './tables.js';

export const SIGNED_IN_KEY = 'dashboard-signed-in'; // localStorage: `{ uid, admin }`
export const COLLECTIONS = ['users', 'jobs'];
export const FIREBASE_APP_NAME = 'dashboard'; // page/firebase.js's initializeApp name
const FIREBASE_DB = 'firebaseLocalStorageDb'; // the SDK's indexedDBLocalPersistence
const FIREBASE_STORE = 'firebaseLocalStorage';
const SESSION_TIMEOUT_MS = 1000;

const store = indexedDbStore();
store?.warm(); // the saved copies' database, opened now (it was client/open-store.js's job)

/** The page's note of who was signed in last, `{ uid, admin }`, or null. */
export function signedInNote() {
  try {
    const note = JSON.parse(localStorage.getItem(SIGNED_IN_KEY) ?? 'null');
    return typeof note?.uid === 'string' && note.uid ? { uid: note.uid, admin: note.admin === true } : null;
  } catch {
    return null;
  }
}

/** Note who Authentication confirmed (`null`: nobody; the note is deleted). */
export function noteSignedIn(who) {
  try {
    if (who) localStorage.setItem(SIGNED_IN_KEY, JSON.stringify({ uid: who.uid, admin: who.admin === true }));
    else localStorage.removeItem(SIGNED_IN_KEY);
  } catch {
    // storage disabled: no early start, nothing else changes
  }
}

/**
 * Who the Firebase SDK's persisted session of the page's app names, `{ uid, admin }` (the
 * admin claim of its last ID token, expired or not), or null: none, several users, or the
 * database absent (never created here: an open that would create it is aborted).
 */
function persistedSession(idb = globalThis.indexedDB) {
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

/** The saved copies `{ name: record }` `who` may see now (all collections, or null). */
async function savedCopies(who, api) {
  if (!store) return null;
  const states = createCollectionStates(api, COLLECTIONS);
  const now = Date.now();
  const records = {};
  for (const [name, state] of states) {
    const record = parseCopy(await store.get(state.cacheKey), who, now);
    if (!record) return null; // one missing: the data client's own start, as without this
    records[name] = record;
  }
  return records;
}

/** `{ who, records }` of the copy painted early, or null when nothing was. */
async function start() {
  const note = signedInNote();
  if (!note || !store) return null;
  try {
    const [session, records] = await Promise.all([persistedSession(), savedCopies(note, readConfig().api)]);
    if (!session || session.uid !== note.uid || !records) return null;
    const who = { uid: note.uid, admin: note.admin && session.admin };
    if (Object.values(records).some((record) => record.admin && !who.admin)) return null;
    document.body.dataset.access = who.admin ? 'admin' : 'viewer'; // app.js's access sets it again
    for (const name of COLLECTIONS) {
      const record = records[name];
      const detail = {
        collection: name,
        items: record.items.filter((item) => typeof item?.id === 'string')
          .sort(byId),
        source: 'cache',
        stale: true,
        asOf: record.asOf ?? null,
        checkedAt: record.checkedAt ?? null,
        freshAt: record.freshAt ?? record.savedAt,
        mode: 'cache',
        cachedAt: record.savedAt,
        outdated: Date.now() - (record.freshAt ?? record.savedAt) > CACHE_LABEL_AGE_MS,
      };
      paintCopy(name, detail);
      window.dispatchEvent(new CustomEvent(`${name}DataChanged`, { detail }));
    }
    return { who, records };
  } catch {
    return null;
  }
}

/** What the early start painted: `{ who, records }`, or null (app.js awaits it first). */
export const early = start();

/**
 * Authentication named someone else, or nobody: the early copy leaves the page, and (`forget`)
 * every saved copy and the note are deleted (another person's, or a session's that ended).
 */
export async function dropEarly({ forget = true } = {}) {
  unpaint(COLLECTIONS);
  if (!forget) return;
  noteSignedIn(null);
  try {
    await store?.clear();
  } catch {
    // a store that cannot be cleared could not be read either
  }
}
