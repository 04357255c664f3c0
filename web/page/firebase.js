/**
 * page/firebase.js: the page's ONE Firebase app: its web config, Authentication (who is signed
 * in; their ID token goes with every call to the functions) and live mode's Firestore. Both
 * are made on the same app, so the Firestore rules see the same user as the functions.
 *
 * Loads the Firebase Web SDK (`firebase-app.js`, `firebase-auth.js`, `firebase-firestore.js`)
 * by its CDN URLs. The local stack's page maps those URLs to its own copies of the pinned npm
 * package with an import map (web/index.html), so nothing is fetched from the internet
 * locally; a deployed page without the import map loads them from gstatic.com unchanged.
 */

import { createTransport } from '../client/transport.js';
import dashboardConfig from '../dashboard-config.js';

export const FIREBASE_VERSION = '12.19.0'; // the npm package's version (package.json)
export const FIREBASE_CDN = `https://www.gstatic.com/firebasejs/${FIREBASE_VERSION}`;
export const PROVIDERS = ['google', 'password']; // what the page knows how to offer
export const INIT_JSON = '/__/firebase/init.json'; // where Firebase Hosting serves the config
const CONFIG_TIMEOUT_MS = 3000;
// The last config read from an init.json, for a reload while that host cannot be reached (the
// local stack's functions stopped): the signed-in user then still gets this tab's copy.
const SAVED_KEY = 'dashboard-web-config';

/**
 * The page's Firebase web config, with `providers` (dashboard-config.js's, known ones only):
 * dashboard-config.js's `firebase` when its `apiKey` is filled; else Firebase Hosting's
 * `/__/firebase/init.json` on the page's origin; else, on the local stack, the stack's own
 * (`<api>/__/firebase/init.json`: a demo key and where its emulators listen); else the last
 * one this tab read. Null when there is none: nobody can sign in, and the page reads what the
 * functions give without a token.
 */
export async function loadWebConfig({ api, local }, settings = dashboardConfig) {
  const providers = (settings.providers ?? PROVIDERS).filter((name) => PROVIDERS.includes(name));
  if (settings.firebase?.apiKey) return { ...settings.firebase, providers };
  const transport = createTransport({ timeoutMs: CONFIG_TIMEOUT_MS });
  const origins = [location.origin];
  if (local && api !== location.origin) origins.push(api);
  for (const origin of origins) {
    try {
      const response = await transport.send(`${origin}${INIT_JSON}`);
      if (response.ok) {
        const web = await response.json();
        remember(JSON.stringify(web));
        return { ...web, providers };
      }
    } catch {
      // unreachable or not JSON: the next place
    }
  }
  const saved = remember();
  return saved ? { ...JSON.parse(saved), providers } : null;
}

/** The saved config (`text`: save it); null where storage is disabled (it throws there). */
function remember(text) {
  try {
    if (text) sessionStorage.setItem(SAVED_KEY, text);
    return sessionStorage.getItem(SAVED_KEY);
  } catch {
    return null;
  }
}

/**
 * `{ app, auth, authSdk, web }`: the Firebase app of `web` and its Auth instance (the
 * `firebase/auth` module is `authSdk`). `web.emulators.auth.url` (local stack only) connects
 * Auth to the Auth emulator.
 */
export async function startFirebase(web) {
  const [{ initializeApp }, authSdk] = await Promise.all([
    import(`${FIREBASE_CDN}/firebase-app.js`),
    import(`${FIREBASE_CDN}/firebase-auth.js`),
  ]);
  const { emulators, providers, ...options } = web;
  const app = initializeApp(options, 'dashboard');
  const auth = authSdk.getAuth(app);
  if (emulators?.auth?.url) {
    // The page says "Auth emulator" in its header itself: no SDK banner over the page.
    authSdk.connectAuthEmulator(auth, emulators.auth.url, { disableWarnings: true });
  }
  return { app, auth, authSdk, web };
}

/**
 * `{ sdk, db }` for the client's `live` option: Firestore on the same app as Auth (its
 * listeners carry the signed-in user's ID token). `web.emulators.firestore` (`{ host, port }`,
 * local stack only) connects to Google's emulator. `logLevel` ('debug', 'error', ...): the
 * SDK's console log level.
 */
export async function connectFirestore({ app, web }, { logLevel = null } = {}) {
  const sdk = await import(`${FIREBASE_CDN}/firebase-firestore.js`);
  if (logLevel) sdk.setLogLevel(logLevel); // the SDK's own log in the console, to diagnose
  const db = sdk.getFirestore(app);
  const emulator = web.emulators?.firestore;
  if (emulator) sdk.connectFirestoreEmulator(db, emulator.host, emulator.port);
  return { sdk, db };
}
