/**
 * admin/tools.js: the dashboard's admin tabs, mounted by app.js with one call.
 *
 *   import { mountAdminTools } from './admin/tools.js';
 *   mountAdminTools({ client, api: config.api, getIdToken });
 *
 * Three views share the page, chosen by the URL's hash: the data (`#data`, the default: the
 * tables and the form), the migration panel (`#migrate`, `#migrate/<runId>` while a run is
 * followed; web/admin/migration/) and the status page (`#status`; web/admin/status-page.js). The
 * views live in `<main class="layout">`, `<section id="migration-panel">` and
 * `<section id="status-page">` of index.html; the tabs are `<nav id="tabs">`.
 */

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
 * @param {{ client: import('../data-client.js').DataClient, api: string,
 *   getIdToken?: (force: boolean) => Promise<string|undefined> }} options
 */
export function mountAdminTools({ client, api: baseUrl, getIdToken }) {
  const api = createAdminApi({ baseUrl, getIdToken });
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
    if (view === 'migrate' && !panel) panel = mountMigrationPanel(views.migrate, { api, client, collections });
    if (view === 'status' && !status) {
      status = mountStatusPage(views.status, { api, client, collections });
      status.runAll();
    }
  }

  window.addEventListener('hashchange', show);
  show();
  return { api, get panel() { return panel; }, get status() { return status; } };
}
