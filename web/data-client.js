/**
 * data-client.js: the browser client of the dashboard backend.
 *
 * Plain ES modules, no build step, no runtime dependency: this file is the one a page imports
 * (the parts are in web/client/, one concern each). Any static page can use it:
 *
 *   import { createDataClient, ValidationError } from './data-client.js';
 *   const client = createDataClient({
 *     baseUrl: 'https://REGION-PROJECT.cloudfunctions.net',
 *     collections: ['users', 'jobs'],
 *     auth: getAuth(app),   // optional: a Firebase Auth instance (firebase/auth), injected
 *     pollMs: 5000,
 *   });
 *   window.addEventListener('usersDataChanged', (e) => render(e.detail.items));
 *   await client.start();
 *
 * What it does, per collection:
 * - Loads the whole collection (following `nextPageToken`). The read function falls back to
 *   the Cloud Storage snapshot by itself (`source: 'snapshot'`). Before it answers (and when it
 *   cannot be reached) the client shows the last good copy it saved for the same signed-in
 *   user (IndexedDB; at most `maxCacheAgeMs` old) with `source: 'cache', stale: true`.
 * - Keeps the copy fresh by polling `?updatedSince=<asOf>` with `If-None-Match` (sent by the
 *   browser's HTTP cache in a browser, by this module elsewhere), merging the changed
 *   documents and removing the `deleted` ids. Polling pauses while `document.hidden`
 *   and backs off exponentially (with jitter, honouring `Retry-After`) on errors. When the
 *   server does not report deletions, a full reload every `resyncMs` catches them.
 * - Emits `<collection>DataChanged` (`usersDataChanged`, `jobsDataChanged`) CustomEvents on the
 *   client (an EventTarget) and on `window` when there is one, with
 *   `detail = { collection, items, source, stale, asOf, checkedAt, freshAt, mode, cachedAt,
 *   outdated }`.
 * - `create`, `update`, `replace`, `remove` call the write API (admin only) and update the local
 *   copy as soon as the server answers. A 400 with field errors throws a `ValidationError`
 *   whose `.fields` is `[{ field, message }]`; other failures throw an `ApiError` with
 *   `.status`, `.code` (`precondition_failed` for a 412, `conflict` for a 409, ...; status 0
 *   when no answer came: `network_error` or `timeout`; `token_unavailable` when getIdToken
 *   threw). The admin tools share the same transport and error shape (web/client/).
 * - Sends `Authorization: Bearer <ID token>` on every request when `auth` or `getIdToken` is
 *   given. Give live mode's Firestore the same Firebase app as `auth`: the rules then see the
 *   same user as the functions.
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

import { DataClient } from './client/data-client.js';

export {
  CACHE_LABEL_AGE_MS, CACHE_TTL_MS, MAX_CACHE_AGE_MS, MAX_CACHE_BYTES,
} from './client/cache.js';
export { DataClient } from './client/data-client.js';
export { ApiError, ValidationError } from './client/errors.js';
export { encodeFirestoreDocument, encodeFirestoreValue } from './client/firestore-encoding.js';
export { LIVE_RETRY_MS, TOMBSTONES } from './client/live.js';
export { LIVE_PROBE_MS, RECONNECT_AGAIN_MS } from './client/mode.js';
export { DEFAULT_POLL_MS, DEFAULT_RESYNC_MS, MAX_BACKOFF_MS } from './client/polling.js';
export { compareTimestamps } from './client/timestamps.js';
export { REQUEST_TIMEOUT_MS } from './client/transport.js';

/**
 * A client of the dashboard backend. Options:
 * - `baseUrl`: where the functions answer (`https://REGION-PROJECT.cloudfunctions.net`, or
 *   `http://127.0.0.1:8080` for the local stack); each collection is at `<baseUrl>/<name>`.
 * - `collections`: names (`['users', 'jobs']`, the default), or `{ name: url }` when the
 *   functions have URLs of their own (Cloud Run style).
 * - `auth`: a Firebase Auth instance (`getAuth(app)`; this module imports nothing): the signed-in
 *   user's ID token goes with every request (`currentUser.getIdToken()`, refreshed by the SDK),
 *   forced fresh once after a 401. Or `getIdToken(forceRefresh)`: async, returns a Firebase
 *   ID token (or nothing), asked the same way. Neither: no Authorization header.
 * - `pollMs` (5000; 0 turns polling off), `resyncMs` (60000), `pageSize` (the server's default
 *   when unset), `maxBackoffMs`, `requestTimeoutMs`.
 * - The saved copy (client/cache.js): `maxCacheAgeMs` (7 days; `cacheTtlMs` is its former
 *   name) the oldest copy ever shown, `cacheLabelAgeMs` (5 minutes) the age from which a stale
 *   copy's events say `outdated: true`, `maxCacheBytes` (4 MB) the largest copy kept.
 *   `storage`: where (this origin's IndexedDB by default; a `Storage` such as `sessionStorage`,
 *   or a store `{ get, set, delete, clear }` of client/idb-store.js; `null`: nowhere).
 *   `client.clearCache()` deletes them (sign-out). The copies belong to the signed-in user
 *   (the ID token's `sub`): another user, no token, or the admin claim gone deletes them.
 * - `shownCopies`: `{ name: record }`, saved copies the page itself already showed and
 *   announced for the user it has since confirmed signed in (the demo page's early start,
 *   web/page/early.js, with `parseCopy` of client/copy-format.js): `start()` takes them on as its
 *   `source: 'cache'` state without a second event.
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
