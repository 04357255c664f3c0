/**
 * page/early.js: a repeat visit's early start. index.html loads it as its one module (the
 * records below are read by index.html's inline script, page/early-read.js puts them in its
 * terms): it needs a few small modules, not app.js's graph and the Firebase SDK, and
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
 * owner (`parseCopy`, client/copy-format.js). The admin claim counts only when both the note and the persisted ID
 * token carry it. Not a security boundary (the functions check every call; the copy is this
 * browser's own): it keeps one person's data off another person's screen.
 */

// Only what the paint needs: each module here is a file fetched before the copy can be painted
// (~13 of them took ~40 ms from Cache Storage, measured); the rest loads after the paint.
import { createCollectionStates } from '../client/collections.js';
import { copyDetail, parseCopy } from '../client/copy-format.js';
import { readConfig } from './config.js';
import { reads } from './early-read.js';
import { paintCopy, unpaint } from './tables.js';

export const SIGNED_IN_KEY = 'dashboard-signed-in'; // localStorage: `{ uid, admin }`
export const COLLECTIONS = ['users', 'jobs']; // the page's collections (app.js's too)

performance.mark('dashboard-early-start'); // bench/load_bench.py reports these marks

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

/** The saved copies `{ name: record }` `who` may see now (all collections, or null). */
function savedCopies(entries, who, api) {
  if (!entries) return null;
  const texts = new Map(entries);
  const now = Date.now();
  const records = {};
  for (const [name, state] of createCollectionStates(api, COLLECTIONS)) {
    const record = parseCopy(texts.get(state.cacheKey), who, now);
    if (!record) return null; // one missing: the data client's own start, as without this
    records[name] = record;
  }
  return records;
}

/** `{ who, records }` of the copy painted early, or null when nothing was. */
async function start() {
  const note = signedInNote();
  // Only for the data view: a page opened on the migration panel or the status page (the hashes
  // of admin/tools.js's viewOf) shows those, and laying out 1,000 rows there only delays them.
  if (!note || /^#(migrate|status)(\/|$)/.test(location.hash)) return null;
  try {
    const [session, entries] = await Promise.all([reads.session, reads.copies]);
    performance.mark('dashboard-early-read');
    const records = savedCopies(entries, note, readConfig().api);
    if (!session || session.uid !== note.uid || !records) return null;
    const who = { uid: note.uid, admin: note.admin && session.admin };
    if (Object.values(records).some((record) => record.admin && !who.admin)) return null;
    document.body.dataset.access = who.admin ? 'admin' : 'viewer'; // app.js's access sets it again
    for (const name of COLLECTIONS) {
      // The data client's own detail of this copy (it takes the copy on without announcing it).
      const detail = copyDetail(name, records[name], Date.now());
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

/** Resolves once the browser has had a frame to show what is painted now (at most `ms` later:
 * a hidden tab renders no frames). */
function nextFrameShown(ms = 100) {
  return new Promise((resolve) => {
    requestAnimationFrame(() => setTimeout(resolve, 0));
    setTimeout(resolve, ms);
  });
}

// The page itself (app.js, its ~40 modules and the Firebase SDK) and its service worker load once
// the copy is on screen, or at once when there is none: fetched and compiled beside the early
// start, they delayed its first module by 60-100 ms, and compiled before the next frame, its rows
// (measured with bench/load_bench.py).
early.then((shown) => (shown ? nextFrameShown() : null)).finally(() => {
  import('../app.js');
  import('../sw-register.js');
});

/**
 * Authentication named someone else, or nobody: the early copy leaves the page, and (`forget`)
 * every saved copy and the note are deleted (another person's, or a session's that ended).
 */
export async function dropEarly({ forget = true } = {}) {
  unpaint(COLLECTIONS);
  if (!forget) return;
  noteSignedIn(null);
  try {
    const { indexedDbStore } = await import('../client/idb-store.js');
    await indexedDbStore()?.clear();
  } catch {
    // a store that cannot be cleared could not be read either
  }
}
