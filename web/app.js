// The demo dashboard: plain DOM code on top of data-client.js (no framework, no build step).
// Its parts: page/config.js (settings), page/firebase.js (the one Firebase app: web config,
// Authentication, live mode's Firestore), page/sign-in.js (who is signed in, what they may do),
// page/tables.js (the users and jobs tables and their badges), page/user-form.js (add and edit
// a user), and the admin tabs (admin/tools.js: the migration panel and the status page).
// page/early.js (loaded ahead of this module by index.html) paints the saved copy of the person
// signed in here before Authentication has answered; this module confirms or drops it.
import { mountAdminTools } from './admin/tools.js';
import { createDataClient } from './data-client.js';
import { readConfig } from './page/config.js';
import { COLLECTIONS, dropEarly, early, noteSignedIn } from './page/early.js';
import { connectFirestore, loadWebConfig, startFirebase } from './page/firebase.js';
import { createAccess, mountSignIn, watchUser } from './page/sign-in.js';
import { mountTables } from './page/tables.js';
import { mountUserForm, resetForm, startEdit } from './page/user-form.js';
import { explain, liveOffSentence } from './ui/explain.js';
import { toast } from './ui/toast.js';

// Why the last session ended, said on the sign-in card after the reload that follows it.
const ENDED_KEY = 'dashboard-session-ended';

const $ = (selector) => document.querySelector(selector);

const config = readConfig();
const access = createAccess();
window.dashboard = { config, access }; // for the console and the browser tests

$('#api-label').textContent = config.api;
const starting = loadWebConfig(config).then((web) => web && startFirebase(web))
  .catch((error) => {
    $('#setup-note').hidden = false;
    $('#setup-note').textContent = `Firebase could not start (${error.message}): nobody can sign in.`;
    return null;
  });
// `{ who, records }`: the copy page/early.js painted, until Authentication confirms its user.
let earlyShown = await early;
window.dashboard.earlyStart = earlyShown ? 'shown' : 'none';
const firebase = await starting;
window.dashboard.firebase = firebase;

if (!firebase) {
  // No web config: nobody can sign in; the page shows what the functions give without a token.
  if ($('#setup-note').hidden) {
    $('#setup-note').hidden = false;
    $('#setup-note').textContent = 'This page has no Firebase web config, so nobody can sign in: '
      + 'fill web/dashboard-config.js (docs/client.md, "Sign-in"). Showing what the functions '
      + 'give without a token.';
  }
  document.body.dataset.access = 'open';
  if (earlyShown) dropEarly({ forget: false }); // nobody can be confirmed: off the page (kept)
  earlyShown = null;
  startDashboard(null, null);
} else {
  let dashboard = null;
  let signingOut = false;
  mountSignIn({ firebase, access, onSignOut: () => { signingOut = true; endSession(); } });
  const ended = sessionStorage.getItem(ENDED_KEY);
  if (ended) {
    $('#sign-in-error').textContent = 'Your session ended (revoked, disabled or expired): sign in again.';
    $('#sign-in-error').hidden = false;
  }
  watchUser(firebase, access);
  access.subscribe(({ user, admin, claims }) => {
    // Claims unread (offline with an expired token): the note and an early copy of the same uid
    // stay as they are. Otherwise the early copy stays only for its own user, and an admin's
    // only while still an admin.
    const claimsRead = typeof claims?.sub === 'string';
    if (!user || claimsRead) noteSignedIn(user ? { uid: user.uid, admin } : null); // next visit
    const confirmed = earlyShown && user && user.uid === earlyShown.who.uid
      && (admin || !earlyShown.who.admin || !claimsRead) ? earlyShown.records : null;
    if (earlyShown && !confirmed) dropEarly();
    earlyShown = null;
    if (user && !dashboard) {
      sessionStorage.removeItem(ENDED_KEY);
      dashboard = startDashboard(firebase, confirmed);
    } else if (!user && dashboard) {
      // By Sign out (already cleaned up), in another tab, or the SDK dropped a revoked session.
      if (!signingOut) {
        endSession();
        sessionStorage.setItem(ENDED_KEY, 'ended');
      }
      location.reload(); // a fresh page: the sign-in card, nothing of the last user's
    }
  });
  await firebase.auth.authStateReady();
  if (!firebase.auth.currentUser) access.set(null, null);
}

/**
 * The tables, the form and the admin tabs for the signed-in user (or nobody: `firebase` null).
 * `shownCopies`: the saved copies page/early.js painted, confirmed as this user's.
 */
function startDashboard(fb, shownCopies) {
  // Firestore's SDK (some 800 kB to compile) once the first data is painted, not before: a
  // repeat visit shows the saved copy first; live mode follows a frame later.
  const live = config.live && fb
    ? afterFirstPaint().then(() => connectFirestore(fb, { logLevel: config.firestoreLog }))
    : null;
  const client = createDataClient({
    baseUrl: config.api,
    collections: COLLECTIONS,
    auth: fb?.auth, // the signed-in user's ID token on every call; the SDK refreshes it
    pollMs: config.pollMs,
    pageSize: 1000, // the read API's default MAX_LIMIT: one request per collection (the client
    // falls back to the server's default page size if a deployment allows less)
    live,
    shownCopies,
  });
  Object.assign(window.dashboard, { client, live });
  const view = {
    users: { detail: null, error: null, filter: '' },
    jobs: { detail: null, error: null, filter: '' },
    editing: null, // { id, item } while the form edits a user
  };
  $('#footer').textContent = `${live ? 'Live (Firestore listeners), else p' : 'P'}olling `
    + `every ${config.pollMs / 1000} s · data-client.js · Firestore, then the Cloud Storage `
    + 'snapshot; the last copy saved in this browser shows at once, and offline';
  $('#dashboard').hidden = false;
  mountUserForm({ client, view, api: config.api });
  mountTables({ client, config, view, collections: COLLECTIONS, startEdit, resetForm,
    say: { explain, liveOffSentence, toast } });
  client.start();
  mountAdminTools({ client, api: config.api, auth: fb?.auth, access });
  return client;
}

/** Resolves a frame after the first users data is painted (at the latest after 3 s). */
function afterFirstPaint() {
  return new Promise((resolve) => {
    const afterNextFrame = () => requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(resolve)));
    window.addEventListener('usersDataChanged', afterNextFrame, { once: true });
    setTimeout(resolve, 3000); // no data yet (the functions slow or down): live mode anyway
  });
}

/** The session ends: stop the listeners and the polls, and forget this tab's data. */
function endSession() {
  const client = window.dashboard.client;
  client?.stop();
  client?.clearCache?.(); // the per-user cache of web/client/cache.js, where there is one
  noteSignedIn(null); // no early start for anyone until someone signs in again
  sessionStorage.clear(); // this tab's copies of the data (and of the web config)
}
