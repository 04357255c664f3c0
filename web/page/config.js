/**
 * page/config.js: the demo page's settings (its <meta> tags and URL parameters). The Firebase
 * web config (sign-in, live mode) is web/dashboard-config.js's (page/firebase.js reads it).
 */

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);

function meta(name) {
  return document.querySelector(`meta[name="${name}"]`)?.content.trim() || '';
}

/** The page's settings: `{ api, project, pollMs, local, live, firestoreLog }`. */
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
  // `?live=0`: polling only. `?firestoreLog=debug`: the Firestore SDK's own log in the console
  // (its WebChannel traffic).
  return { api, project, pollMs, local, live: params.get('live') !== '0',
    firestoreLog: params.get('firestoreLog') };
}
