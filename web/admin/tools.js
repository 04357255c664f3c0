/**
 * admin/tools.js: the dashboard's admin tabs, mounted by app.js with one call.
 *
 *   import { mountAdminTools } from './admin/tools.js';
 *   mountAdminTools({ client, api: config.api, auth, access });
 *
 * Three views share the page, chosen by the URL's hash: the data (`#data`, the default: the
 * tables and the form), the migration panel (`#migrate`, `#migrate/<runId>` while a run is
 * followed; web/admin/migration/) and the status page (`#status`; web/admin/status-page.js). The
 * views live in `<main class="layout">`, `<section id="migration-panel">` and
 * `<section id="status-page">` of index.html; the tabs are `<nav id="tabs">`. A signed-in user
 * without the admin claim (`access`, page/sign-in.js) gets no migration panel and no admin
 * calls: the Migration tab says so in a sentence with the command that grants the claim, and
 * the status page shows who they are and the checks that need no admin; both come back as
 * soon as a new token carries the claim.
 */

import { h } from '../ui/dom.js';
import { viewerSentence } from '../ui/explain.js';
import { createAdminApi } from './api.js';
import { mountMigrationPanel } from './migration/panel.js';
import { mountStatusPage } from './status-page.js';

/** The view a hash names: 'migrate', 'status' or 'data'. */
export function viewOf(hash) {
  if (/^#migrate(\/|$)/.test(hash)) return 'migrate';
  if (hash === '#status') return 'status';
  return 'data';
}

/**
 * Mount the tabs, the migration panel and the status page.
 * @param {{ client: import('../data-client.js').DataClient, api: string, auth?: object,
 *   getIdToken?: (force: boolean) => Promise<string|undefined>,
 *   access?: ReturnType<import('../page/sign-in.js').createAccess> }} options (`auth`: the
 *   Firebase Auth instance whose user's ID token goes with each call; no `access`: an admin)
 */
export function mountAdminTools({ client, api: baseUrl, auth, getIdToken, access = null }) {
  const api = createAdminApi({ baseUrl, auth, getIdToken });
  const collections = client.collections;
  const views = {
    data: document.querySelector('main.layout'),
    migrate: document.getElementById('migration-panel'),
    status: document.getElementById('status-page'),
  };
  let panel = null;
  let status = null;

  function show() {
    const view = viewOf(location.hash);
    for (const [name, node] of Object.entries(views)) if (node) node.hidden = name !== view;
    for (const tab of document.querySelectorAll('#tabs [data-tab]')) {
      const current = tab.dataset.tab === view;
      tab.classList.toggle('active', current);
      if (current) tab.setAttribute('aria-current', 'page');
      else tab.removeAttribute('aria-current');
    }
    // Mounted when first shown: a page that never opens them makes no admin calls.
    const admin = access ? access.admin : true;
    if (view === 'migrate' && !panel) {
      if (admin) panel = mountMigrationPanel(views.migrate, { api, client, collections });
      else views.migrate.replaceChildren(refusal(access.email));
    }
    if (view === 'status' && !status) {
      status = mountStatusPage(views.status, { api, client, collections, access });
      status.runAll();
    }
  }

  window.addEventListener('hashchange', show);
  show();
  // A new token with the claim (granted, then refreshed): the panel and the checks come back.
  access?.subscribe(() => {
    show();
    if (status && viewOf(location.hash) === 'status') status.runAll();
  });
  return { api, get panel() { return panel; }, get status() { return status; } };
}

/** The Migration tab of a user without the admin claim. */
function refusal(email) {
  return h('section', { class: 'card admin-card', id: 'migration-refused' },
    h('h2', { text: 'Migration' }),
    h('p', { text: viewerSentence(email, 'migrate legacy data (dry runs included)') }));
}
