/**
 * page/firebase-live.js: what the demo page needs for the client's live mode, and nothing else.
 *
 * Loads the Firebase Web SDK (`firebase-app.js`, `firebase-firestore.js`) by its CDN URLs.
 * The local stack's page maps those URLs to its own copies of the pinned npm package with an
 * import map (web/index.html), so nothing is fetched from the internet locally; a deployed
 * page without the import map loads them from gstatic.com unchanged. Then it makes the
 * Firestore instance that `createDataClient({ live: { sdk, db } })` listens with.
 */

import { createTransport } from '../client/transport.js';

export const FIREBASE_VERSION = '12.19.0'; // the npm package's version (package.json)
export const FIREBASE_CDN = `https://www.gstatic.com/firebasejs/${FIREBASE_VERSION}`;
const CONFIG_TIMEOUT_MS = 3000;

/**
 * The page's Firebase web config: the JSON of `<meta name="dashboard-firebase">` when the page
 * has one (deployed pages: `{"apiKey", "authDomain", "projectId", ...}` from the console),
 * else, on the local stack, `<api>/__/firebase/init.json` (the project and where the Firestore
 * emulator listens). Null when there is none: the client then polls.
 */
export async function loadWebConfig({ api, local }) {
  const inline = document.querySelector('meta[name="dashboard-firebase"]')?.content.trim();
  if (inline) return JSON.parse(inline);
  if (!local) return null;
  const transport = createTransport({ timeoutMs: CONFIG_TIMEOUT_MS });
  const response = await transport.send(`${api}/__/firebase/init.json`);
  return response.ok ? response.json() : null;
}

/**
 * `{ sdk, db }` for the client's `live` option. `config.emulators.firestore` (`{ host, port }`,
 * local stack only) connects to Google's emulator, with `mockUserToken` as the signed-in user's
 * claims (the rules see them; no Auth emulator needed). Deployed, the user is the one Firebase
 * Auth signed in on the same app, and the rules check their ID token. `logLevel` ('debug',
 * 'error', ...): the SDK's console log level.
 */
export async function connectFirestore(config, { mockUserToken = null, logLevel = null } = {}) {
  const [{ initializeApp }, sdk] = await Promise.all([
    import(`${FIREBASE_CDN}/firebase-app.js`),
    import(`${FIREBASE_CDN}/firebase-firestore.js`),
  ]);
  if (logLevel) sdk.setLogLevel(logLevel); // the SDK's own log in the console, to diagnose
  const { emulators, ...options } = config;
  const db = sdk.getFirestore(initializeApp(options, 'dashboard-live'));
  const emulator = emulators?.firestore;
  if (emulator) {
    sdk.connectFirestoreEmulator(db, emulator.host, emulator.port,
      mockUserToken ? { mockUserToken } : {});
  }
  return { sdk, db };
}
