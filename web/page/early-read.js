/**
 * page/early-read.js: what the early start's reads found, in the terms page/early.js decides on.
 * The reads themselves begin before any module of the page loads: index.html's inline script
 * opens both IndexedDB databases and reads them whole (`self.dashboardEarlyReads`: promises of
 * their raw `{ keys, values }`, or null), while this module and the rest still arrive. Here:
 * `reads.copies`, every saved copy `[key, text]` of the data client's store (it holds one user's
 * copies at a time); `reads.session`, who the Firebase SDK's persisted session of the page's app
 * names. A page without that inline script has no early start (both read as null); nothing
 * else changes. Nothing here is shown: page/early.js decides. One import (client/identity.js,
 * which imports nothing): every module on the early start's path is one more file to fetch
 * before the copy can be painted.
 */

import { tokenIdentity } from '../client/identity.js';

export const FIREBASE_APP_NAME = 'dashboard'; // page/firebase.js's initializeApp name
const FIREBASE_KEY_PREFIX = 'firebase:authUser:'; // the SDK's indexedDBLocalPersistence keys

/**
 * Who the Firebase SDK's persisted session of the page's app names, `{ uid, admin }` (the admin
 * claim of its last ID token, expired or not), from the raw read of its `firebaseLocalStorage`
 * store; null: none, several users, or nothing read.
 */
export function sessionOf(raw) {
  const entries = Array.isArray(raw?.values) ? raw.values : [];
  const users = entries.filter((entry) => typeof entry?.fbase_key === 'string'
    && entry.fbase_key.startsWith(FIREBASE_KEY_PREFIX)
    && entry.fbase_key.endsWith(`:${FIREBASE_APP_NAME}`)).map((entry) => entry.value);
  const uids = new Set(users.map((user) => user?.uid));
  if (users.length === 0 || uids.size !== 1 || typeof users[0]?.uid !== 'string') return null;
  const claims = users.map((user) => tokenIdentity(user?.stsTokenManager?.accessToken));
  const admin = claims.every((who) => who?.uid === users[0].uid && who.admin);
  return { uid: users[0].uid, admin };
}

/** The data client's saved copies `[key, text]` from the raw read of its store, or null. */
export function copiesOf(raw) {
  if (!Array.isArray(raw?.keys) || !Array.isArray(raw?.values)) return null;
  return raw.keys.map((key, i) => [key, raw.values[i]])
    .filter(([key, value]) => typeof key === 'string' && typeof value === 'string');
}

const begun = globalThis.dashboardEarlyReads;

/** `{ copies: Promise<[key, text][] | null>, session: Promise<{ uid, admin } | null> }`. */
export const reads = {
  copies: Promise.resolve(begun?.copies).then(copiesOf, () => null),
  session: Promise.resolve(begun?.session).then(sessionOf, () => null),
};
