// The demo dashboard: plain DOM code on top of data-client.js (no framework, no build step).
// Its parts: page/config.js (settings, the local sign-in, live mode's SDK), page/tables.js
// (the users and jobs tables and their badges), page/user-form.js (add and edit a user), and
// the admin tabs (admin/tools.js: the migration panel and the status page).
import { mountAdminTools } from './admin/tools.js';
import { createDataClient } from './data-client.js';
import { localEmulatorToken, readConfig, startLive } from './page/config.js';
import { mountTables } from './page/tables.js';
import { mountUserForm, resetForm, startEdit } from './page/user-form.js';

const COLLECTIONS = ['users', 'jobs'];

const $ = (selector) => document.querySelector(selector);

const config = readConfig();
// The Firebase SDK (some 800 kB to compile) once the first data is painted, not before: a
// repeat visit shows the saved copy first (issue 22); live mode follows a frame later.
const firstPaint = new Promise((resolve) => {
  const afterNextFrame = () => requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(resolve)));
  window.addEventListener('usersDataChanged', afterNextFrame, { once: true });
  setTimeout(resolve, 3000); // no data yet (the functions slow or down): live mode anyway
});
const live = config.live ? firstPaint.then(() => startLive(config)) : null;
const client = createDataClient({
  baseUrl: config.api,
  collections: COLLECTIONS,
  getIdToken: config.local ? localEmulatorToken(config.project, config.viewer) : undefined,
  pollMs: config.pollMs,
  pageSize: 1000, // the read API's default MAX_LIMIT: one request per collection (the client
  // falls back to the server's default page size if a deployment allows less)
  live,
});
window.dashboard = { client, config, live }; // for the console and the browser tests

const view = {
  users: { detail: null, error: null, filter: '' },
  jobs: { detail: null, error: null, filter: '' },
  editing: null, // { id, item } while the form edits a user
};

$('#api-label').textContent = config.api;
$('#footer').textContent = `${config.live ? 'Live (Firestore listeners), else p' : 'P'}olling `
  + `every ${config.pollMs / 1000} s · data-client.js · Firestore, then the Cloud Storage `
  + 'snapshot; the last copy saved in this browser shows at once, and offline';
if (config.local) {
  const chip = $('#auth-chip');
  chip.hidden = false;
  chip.textContent = `local ${config.viewer ? 'viewer (no admin claim)' : 'admin'} · unsigned emulator token`;
  chip.title = 'Local stack only: the page signs in with an unsigned token the auth emulator path accepts';
}

mountUserForm({ client, view, api: config.api });
mountTables({ client, config, view, collections: COLLECTIONS, startEdit, resetForm });
client.start();
mountAdminTools({ client, api: config.api, getIdToken: config.local ? localEmulatorToken(config.project) : undefined });
