/**
 * admin/status-page.js: every link of the chain, checked from the browser (`#status`).
 *
 * One row per link, each with a state (ok, warn, fail, skip, off), a latency and a sentence:
 * - you: the signed-in user and whether the backend takes them as an admin;
 * - the read functions: `GET /<collection>?limit=1`, and which source answered
 *   (`X-Data-Source`: firestore, or the Cloud Storage snapshot);
 * - Firestore direct (live mode): read from the data client through `client.usage(name)`
 *   (`mode` `'live'`: listening to Firestore with the Web SDK; else its `liveError`); "not
 *   configured" until it does;
 * - this tab's cached copy (`client.cachedCopy(name)`): its age and size;
 * - the backend, through `GET /migrate/status` (admin only): the doctor's own checks
 *   (`python -m ops doctor`) with their latencies: settings, schemas, Firestore, the
 *   bucket, each snapshot's count and age from `snapshots/manifest.json` against Firestore's
 *   count, the publisher's last write, the newest migration runs, the deployed rules.
 * "Run all checks" runs them again (all at once, each with a deadline); "Copy as text" puts
 * the table on the clipboard for a support request.
 */

import { h } from '../ui/dom.js';
import { explain, liveOffSentence, viewerSentence } from '../ui/explain.js';
import { formatAge, formatCount } from '../ui/format.js';
import { tokenClaims } from './api.js';
import { runsList } from './runs-list.js';

export const STATUS_TIMEOUT_MS = 30 * 1000; // the backend's checks have their own deadlines
export const READ_TIMEOUT_MS = 10 * 1000;
const SERVER_STATE = { ok: 'ok', FAIL: 'fail', skip: 'skip' };
const STATE_WORD = { ok: 'ok', warn: 'warn', fail: 'FAIL', skip: 'skip', off: 'off', run: '…' };

/**
 * A row of the table.
 * @typedef {{ id: string, link: string, name: string, state: string, latencyMs?: number|null,
 *   text: string, extra?: Node|null }} StatusRow
 */

/** The rows of a `GET /migrate/status` answer (the doctor's checks). */
export function serverRows(body) {
  return (body.checks ?? []).map((check) => ({
    id: check.name.replace(/\s+/g, '-'),
    link: 'backend',
    name: check.name,
    state: SERVER_STATE[check.status] ?? 'fail',
    latencyMs: check.latencyMs,
    text: check.detail,
  }));
}

/** The row of one read function's answer (or failure). */
export function readRow(collection, outcome) {
  const base = { id: `read-${collection}`, link: 'read functions', name: `read ${collection}`,
    latencyMs: outcome.ms ?? null };
  if (outcome.error) {
    return { ...base, state: 'fail', text: explain(outcome.error, { url: outcome.url }).what };
  }
  const source = outcome.source ?? 'unknown';
  if (source === 'firestore') {
    return { ...base, state: 'ok', text: `answered from Firestore (HTTP ${outcome.status})` };
  }
  return { ...base, state: 'warn', text: `answered from the ${source} (HTTP ${outcome.status}): `
    + 'Firestore failed or was slower than FIRESTORE_TIMEOUT_S, the data may lag behind' };
}

/**
 * The live-mode row, from the data client's usage of each collection (`client.usage(name)`:
 * `{ collection, mode, liveError }`): ok when every collection listens to Firestore directly;
 * warn when some poll because live mode failed (its error says why); off when the page has no
 * live mode (no Web SDK configured).
 */
export function liveRow(usages) {
  const base = { id: 'live', link: 'Firestore direct', name: 'live mode', latencyMs: null };
  const live = usages.filter((usage) => usage?.mode === 'live').map((usage) => usage.collection);
  const failed = usages.filter((usage) => usage?.mode !== 'live' && usage?.liveError);
  if (live.length === usages.length && live.length) {
    return { ...base, state: 'ok', text: `listening to Firestore directly for ${live.join(', ')}` };
  }
  if (failed.length) {
    const why = liveOffSentence(failed[0].liveError);
    const notLive = failed.map((usage) => `${usage.collection} (${usage.mode})`).join(', ');
    return { ...base, state: 'warn', text: `not live for ${notLive}: ${why}`
      + (live.length ? `; live for ${live.join(', ')}` : '') };
  }
  if (live.length) {
    return { ...base, state: 'warn', text: `live for ${live.join(', ')} only` };
  }
  return { ...base, state: 'off', text: 'not configured: this page polls the read functions '
    + '(no Firebase Web SDK given to the client)' };
}

/** The cached-copy row of one collection (`client.cachedCopy(name)`). */
export function cacheRow(collection, copy, ttlMs = 5 * 60 * 1000) {
  const base = { id: `cache-${collection}`, link: 'this tab', name: `cached copy ${collection}`,
    latencyMs: null };
  if (!copy) {
    return { ...base, state: 'off', text: 'none: a reload with the functions unreachable would '
      + 'show no data' };
  }
  return { ...base, state: 'ok', text: `${formatCount(copy.count)} documents saved ${formatAge(copy.ageMs)} `
    + `ago (shown on a reload while the functions cannot be reached, for ${formatAge(ttlMs)})` };
}

// What every Firebase ID token holds; the rest are the project's custom claims (`admin`).
const STANDARD_CLAIMS = new Set(['iss', 'aud', 'auth_time', 'user_id', 'sub', 'iat', 'exp',
  'email', 'email_verified', 'firebase', 'name', 'picture', 'phone_number']);

/** Who the token says is signed in: email, uid, how they signed in, their custom claims. */
export function whoText(claims) {
  const custom = Object.entries(claims).filter(([name]) => !STANDARD_CLAIMS.has(name))
    .map(([name, value]) => `${name}: ${JSON.stringify(value)}`);
  const provider = claims.firebase?.sign_in_provider;
  return [claims.email, claims.user_id ?? claims.sub].filter(Boolean).join(', ')
    + (provider ? ` (signed in with ${provider})` : '')
    + ` · custom claims: ${custom.length ? custom.join(', ') : 'none'}`;
}

/** The signed-in user's row, from the token's claims and the backend's answer (`skipped`:
 * not asked, the token has no admin claim). */
export function userRow(claims, backend) {
  const base = { id: 'user', link: 'you', name: 'signed-in user', latencyMs: null };
  if (!claims) {
    return { ...base, state: 'fail', text: 'not signed in: the page sends no ID token' };
  }
  const who = whoText(claims);
  if (backend?.skipped) {
    return { ...base, state: 'warn', text: `${who}: no admin claim. ${viewerSentence(claims.email, 'run the backend checks')}` };
  }
  if (backend?.principal) {
    const { principal } = backend;
    return { ...base, state: principal.admin ? 'ok' : 'warn',
      text: `${who}: ${principal.admin ? 'admin (the backend verified the token and its admin '
        + 'claim)' : 'not an admin'}` };
  }
  if (backend?.error?.status === 403) {
    return { ...base, state: 'warn', text: `${who}: signed in, but the backend refuses the `
      + 'admin checks (no admin claim)' };
  }
  if (backend?.error?.status === 401) {
    return { ...base, state: 'fail', text: `${who}: the backend refuses the token `
      + `(${backend.error.message})` };
  }
  return { ...base, state: 'skip', text: `${who}: token says admin=${claims.admin === true}; the `
    + 'backend could not confirm it' };
}

/** The table as plain text, for a support request. */
export function statusText(rows, meta) {
  const lines = [`Dashboard status ${meta.at} · page ${meta.page} · API ${meta.api}`];
  for (const row of rows) {
    const latency = Number.isFinite(row.latencyMs) ? ` [${Math.round(row.latencyMs)} ms]` : '';
    lines.push(`${STATE_WORD[row.state].padEnd(4)} ${row.link} / ${row.name}: ${row.text}${latency}`);
  }
  return lines.join('\n');
}

/**
 * Build the status page in `root`; checks run when it is first shown and on "Run all checks".
 * @param {HTMLElement} root
 * @param {{ api: ReturnType<import('./api.js').createAdminApi>,
 *   client: import('../data-client.js').DataClient, collections: string[],
 *   access?: ReturnType<import('../page/sign-in.js').createAccess> }} options (`access`: who
 *   is signed in; without the admin claim the backend's admin checks are not called)
 */
export function mountStatusPage(root, { api, client, collections, access = null }) {
  const runButton = h('button', { type: 'button', class: 'primary', id: 'status-run', text: 'Run all checks' });
  const copyButton = h('button', { type: 'button', id: 'status-copy', text: 'Copy as text', disabled: true });
  const summary = h('span', { class: 'muted', id: 'status-summary', text: 'not run yet' });
  const tbody = h('tbody');
  const runsBox = h('div', { id: 'status-runs' });
  const copied = h('textarea', { class: 'sr-only', id: 'status-text', readOnly: true, 'aria-hidden': 'true', tabIndex: -1 });
  root.replaceChildren(h('section', { class: 'card admin-card', id: 'status-card' },
    h('div', { class: 'card-head' }, h('h2', { text: 'Status of every link' }), summary,
      h('div', { class: 'status-actions' }, runButton, copyButton)),
    h('div', { class: 'table-wrap status-wrap' }, h('table', { id: 'status-table' },
      h('thead', {}, h('tr', {}, ...['Link', 'Check', 'State', 'Latency', 'What it means']
        .map((text, i) => h('th', { class: i === 3 ? 'num' : undefined, text })))),
      tbody)),
    runsBox, copied));

  let rows = [];
  let running = null;

  function render() {
    tbody.replaceChildren(...rows.map((row) => h('tr', { 'data-check': row.id, 'data-state': row.state },
      h('td', { class: 'muted', text: row.link }),
      h('td', { class: 'nowrap', text: row.name }),
      h('td', {}, h('span', { class: `state state-${row.state}`, text: STATE_WORD[row.state] })),
      h('td', { class: 'num', text: Number.isFinite(row.latencyMs) ? `${Math.round(row.latencyMs)} ms` : '—' }),
      h('td', { class: 'status-text', text: row.text }))));
  }

  async function readCheck(collection) {
    const url = api.url(`/${collection}`, { limit: 1 });
    try {
      const answer = await api.call('GET', `/${collection}`, { query: { limit: 1 }, timeoutMs: READ_TIMEOUT_MS });
      return readRow(collection, { ms: answer.ms, status: answer.status, source: answer.headers.get('X-Data-Source') });
    } catch (error) {
      return readRow(collection, { error, url });
    }
  }

  async function backendCheck() {
    const url = api.url('/migrate/status');
    const started = performance.now();
    try {
      const answer = await api.call('GET', '/migrate/status', { timeoutMs: STATUS_TIMEOUT_MS });
      return { body: answer.body, ms: answer.ms, url };
    } catch (error) {
      return { error, ms: performance.now() - started, url };
    }
  }

  function backendRows(backend) {
    const head = { id: 'status-function', link: 'backend', name: 'GET /migrate/status', latencyMs: backend.ms };
    if (backend.skipped) {
      return [{ ...head, state: 'skip', text: 'not asked: the backend checks are for admins' }];
    }
    if (backend.error) {
      const { what, todo } = explain(backend.error, { url: backend.url });
      return [{ ...head, state: 'fail', text: `${what} ${todo}` }];
    }
    const failed = backend.body.checks.filter((check) => check.status === 'FAIL').length;
    return [{ ...head, state: failed ? 'warn' : 'ok',
      text: `the backend ran ${backend.body.checks.length} checks (python -m ops doctor), `
        + `${failed} failed` }, ...serverRows(backend.body)];
  }

  function renderRuns(backend) {
    const runs = backend.body?.runs ?? [];
    runsBox.replaceChildren(...(runs.length === 0 ? [] : [
      h('h3', { text: 'The newest migration runs' }), runsList(runs, { started: true })]));
  }

  async function runAll() {
    if (running) return running;
    runButton.disabled = true;
    summary.textContent = 'checking…';
    for (const row of rows) row.state = 'run';
    render();
    running = (async () => {
      const token = api.getIdToken ? await api.getIdToken(false).catch(() => undefined) : undefined;
      const admin = access ? access.admin : true;
      const [reads, backend] = await Promise.all([
        Promise.all(collections.map(readCheck)),
        admin ? backendCheck() : { skipped: true, ms: null }]);
      const usages = collections.map((name) => ({ collection: name, ...client.usage(name) }));
      rows = [
        userRow(token ? tokenClaims(token) : null,
          { principal: backend.body?.principal, error: backend.error, skipped: backend.skipped }),
        ...reads,
        liveRow(usages),
        ...collections.map((name) => cacheRow(name, client.cachedCopy(name))),
        ...backendRows(backend),
      ];
      render();
      renderRuns(backend);
      const failing = rows.filter((row) => row.state === 'fail').length;
      summary.textContent = `${failing ? `${failing} failing` : 'all links answer'} · checked `
        + `${new Date().toLocaleTimeString()}`;
      summary.dataset.state = failing ? 'fail' : 'ok';
      copied.value = statusText(rows, { at: new Date().toISOString(), page: location.href, api: api.baseUrl });
      copyButton.disabled = false;
    })();
    try {
      await running;
    } finally {
      running = null;
      runButton.disabled = false;
    }
    return undefined;
  }

  async function copy() {
    try {
      await navigator.clipboard.writeText(copied.value);
      copyButton.textContent = 'Copied';
    } catch {
      // No clipboard permission (an insecure origin, a denied prompt): select the text instead.
      copied.classList.remove('sr-only');
      copied.select();
      copyButton.textContent = 'Press Ctrl+C';
    }
    setTimeout(() => { copyButton.textContent = 'Copy as text'; }, 2000);
  }

  runButton.addEventListener('click', () => runAll());
  copyButton.addEventListener('click', copy);
  return { runAll, get rows() { return rows; } };
}
