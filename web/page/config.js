/**
 * page/config.js: the demo page's settings (its <meta> tags and URL parameters), the local
 * stack's unsigned sign-in, and live mode's Firebase Web SDK.
 */

import { connectFirestore, loadWebConfig } from './firebase-live.js';

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);

function meta(name) {
  return document.querySelector(`meta[name="${name}"]`)?.content.trim() || '';
}

/** The page's settings: `{ api, project, pollMs, local, live, viewer, firestoreLog }`. */
export function readConfig() {
  const params = new URLSearchParams(location.search);
  let api = meta('dashboard-api') || location.origin;
  // `?api=` points the page at another local stack (tests, a second port). Only loopback
  // addresses are accepted: a link must not be able to send the page's token elsewhere.
  const override = params.get('api');
  if (override) {
    try {
      const url = new URL(override);
      if (LOOPBACK.has(url.hostname) && (url.protocol === 'http:' || url.protocol === 'https:')) {
        api = url.origin;
      }
    } catch {
      // ignored: keep the configured API
    }
  }
  api = api.replace(/\/+$/, '');
  const project = params.get('project') || meta('dashboard-project') || 'demo-dashboard';
  const pollMs = Math.max(250, Number(params.get('poll')) || 5000);
  const apiHost = new URL(api, location.href).hostname;
  const local = LOOPBACK.has(apiHost) && project.startsWith('demo-');
  // `?live=0`: polling only. `?user=viewer` (local stack only): signed in without the admin claim.
  // `?firestoreLog=debug`: the Firestore SDK's own log in the console (its WebChannel traffic).
  return { api, project, pollMs, local, live: params.get('live') !== '0',
    viewer: local && params.get('user') === 'viewer',
    firestoreLog: params.get('firestoreLog') };
}

// --- LOCAL STACK ONLY: an unsigned admin ID token -------------------------------------------
// The local stack runs the functions with FIREBASE_AUTH_EMULATOR_HOST set for a `demo-`
// project, and then firebase-admin accepts UNSIGNED tokens (alg "none"). This page mints one
// with the admin claim so the demo can write. It is used only when the API is on a loopback
// address and the project is a demo- one; the deployed functions refuse such a token (they
// verify Google's RS256 signature). A real page passes
//   getIdToken: (force) => firebase.auth().currentUser?.getIdToken(force)
function localUser(viewer) {
  return viewer ? { sub: 'local-demo-viewer', user_id: 'local-demo-viewer', email: 'viewer@example.com' }
    : { sub: 'local-demo-admin', user_id: 'local-demo-admin', email: 'admin@example.com', admin: true };
}

/** LOCAL STACK ONLY: `getIdToken` minting the unsigned token of the local admin (or viewer). */
export function localEmulatorToken(project, viewer) {
  const encode = (value) => btoa(JSON.stringify(value))
    .replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  return async () => {
    const now = Math.floor(Date.now() / 1000);
    const claims = {
      iss: `https://securetoken.google.com/${project}`,
      aud: project,
      iat: now - 5,
      auth_time: now - 5,
      exp: now + 3600,
      ...localUser(viewer),
      firebase: { sign_in_provider: 'custom', identities: {} },
    };
    return `${encode({ alg: 'none', typ: 'JWT' })}.${encode(claims)}.`;
  };
}

// Live mode: Firestore listeners through the Firebase Web SDK, when the page has a Firebase
// config (a deployed page: <meta name="dashboard-firebase">; the local stack tells its own).
// Without one, or when the SDK cannot load, the client polls the functions.
export function startLive(config) {
  if (!config.live) return null;
  return loadWebConfig(config).then((web) => {
    if (!web) throw new Error('no Firebase web config: polling the functions');
    return connectFirestore(web, {
      mockUserToken: config.local ? localUser(config.viewer) : null, logLevel: config.firestoreLog,
    });
  });
}
