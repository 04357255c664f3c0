/**
 * page/tables.js: the users and jobs tables of the demo page and their badges (where the data
 * came from, how old it is, live or polling), fed by the data client's `<collection>DataChanged`
 * and `dataError` events. A row is rebuilt only when its document changed; Delete asks for a
 * second click.
 */

import { h } from '../ui/dom.js';
import { formatAge, formatDate, formatMoney } from '../ui/format.js';

const $ = (selector) => document.querySelector(selector);

// What the renderers need: set once by mountTables. `say`: the page's messages (ui/explain.js's
// `explain` and `liveOffSentence`, ui/toast.js's `toast`), given rather than imported: this
// module paints the early start's copy, and every import is one more file before that paint.
const page = { client: null, config: null, view: null, api: '', startEdit: null, resetForm: null, say: null };

const SOURCE_LABEL = { firestore: 'firestore', snapshot: 'snapshot', cache: 'cached copy' };
const MODE_TITLE = {
  live: 'Live: Firestore listeners bring every change as it happens.',
  polling: 'Polling the functions (live updates are off or unavailable).',
};

function renderBadge(name) {
  const { client, config, view } = page;
  const badge = $(`#${name}-badge`);
  const { detail, error } = view[name];
  if (!detail || !detail.source) {
    badge.dataset.source = error ? 'none' : 'loading';
    badge.dataset.stale = 'false';
    badge.textContent = error ? 'unavailable' : 'loading…';
    return;
  }
  badge.dataset.source = detail.source;
  badge.dataset.stale = String(detail.stale);
  badge.dataset.mode = detail.mode ?? '';
  const age = detail.freshAt ? formatAge(Date.now() - detail.freshAt, { justNowMs: 5000 }) : '?';
  const when = age === 'just now' ? 'just now' : `${age} old`;
  const label = SOURCE_LABEL[detail.source] ?? detail.source;
  const mode = detail.mode === 'polling' ? 'polling · ' : '';
  const offline = navigator.onLine === false; // the saved copy, or the data last shown
  badge.dataset.offline = String(offline);
  badge.dataset.outdated = String(Boolean(detail.outdated));
  badge.textContent = (offline ? 'offline · ' : '') + (detail.mode === 'live' ? 'live · firestore'
    : detail.stale ? `${label} · stale · ${when}` : `${mode}${label} · ${when}`);
  const liveError = client && config.live && detail.mode !== 'live' ? client.usage(name).liveError : null;
  badge.title = (detail.stale
    ? `${detail.cachedAt ? 'Showing the copy saved in this browser until the API answers'
      : 'The API cannot be reached: showing the data last received'} (data as of ${detail.asOf ?? '?'}).`
    : `${MODE_TITLE[detail.mode] ?? ''} Served from ${detail.source}; data as of ${detail.asOf ?? '?'}.`.trim())
    + (liveError ? ` Live updates unavailable: ${page.say.liveOffSentence(liveError)}.` : '');
}

function pill(value, kind) {
  return h('span', { class: `pill ${kind}-${String(value).replace(/[^a-z_]/gi, '')}`, text: value ?? '—' });
}

function matches(item, filter, fields) {
  if (!filter) return true;
  return fields.some((field) => String(item[field] ?? '').toLowerCase().includes(filter));
}

function deleteButton(collection, item) {
  const button = h('button', { type: 'button', class: 'danger small', text: 'Delete', 'data-action': 'delete',
    'aria-label': `Delete ${item.name ?? item.title ?? item.id}` });
  let armed = null;
  button.addEventListener('click', async () => {
    if (!armed) { // first click arms the button, the second deletes
      button.textContent = 'Confirm';
      button.classList.add('armed');
      armed = setTimeout(() => {
        armed = null;
        button.textContent = 'Delete';
        button.classList.remove('armed');
      }, 4000);
      return;
    }
    clearTimeout(armed);
    button.disabled = true;
    // Read at the click: a row the early start painted (page/early.js) is kept once mounted.
    const { client, view, api, say } = page;
    try {
      await client.remove(collection, item.id);
      say.toast(`Deleted ${item.name ?? item.title ?? item.id}`);
      if (view.editing?.id === item.id && collection === 'users') page.resetForm();
    } catch (error) {
      button.disabled = false;
      say.toast(say.explain(error, { url: api }).what, 'error');
    }
  });
  return button;
}

function userRow(user) {
  const { view } = page;
  const edit = h('button', { type: 'button', class: 'small', text: 'Edit', 'data-action': 'edit',
    'aria-label': `Edit ${user.name ?? user.id}` });
  edit.addEventListener('click', () => page.startEdit(user.id));
  const rate = typeof user.hourlyRate === 'number' ? `${formatMoney(user.hourlyRate)}/h` : '—';
  return h('tr', { 'data-id': user.id, class: view.editing?.id === user.id ? 'editing' : undefined },
    h('td', {}, h('div', { class: 'primary-text', text: user.name ?? '—' }),
      h('div', { class: 'muted mono', text: user.id })),
    h('td', { class: 'email', text: user.email ?? '—' }),
    h('td', {}, pill(user.role, 'role')),
    h('td', {}, pill(user.status, 'status')),
    h('td', { class: 'nowrap', text: user.location || '—' }),
    h('td', { class: 'num', text: rate }),
    h('td', { class: 'actions' }, edit, deleteButton('users', user)));
}

function jobRow(job) {
  const assigned = Array.isArray(job.assignedTo) ? job.assignedTo.length : 0;
  return h('tr', { 'data-id': job.id },
    h('td', {}, h('div', { class: 'primary-text', text: job.title ?? '—' }),
      h('div', { class: 'muted mono', text: job.id })),
    h('td', { text: job.client || '—' }),
    h('td', {}, pill(job.status, 'status')),
    h('td', { class: 'num', text: typeof job.budget === 'number' ? formatMoney(job.budget) : '—' }),
    h('td', { class: 'nowrap', text: formatDate(job.dueDate) }),
    h('td', { class: 'num', text: String(assigned) }),
    h('td', { class: 'actions' }, deleteButton('jobs', job)));
}

const TABLES = {
  users: { row: userRow, search: ['id', 'name', 'email', 'role', 'status', 'location'], noun: 'users' },
  jobs: { row: jobRow, search: ['id', 'title', 'client', 'status', 'location'], noun: 'jobs' },
};

// Rows are kept per document and rebuilt only when its item changed (the client hands out the
// same object until then; an equal one keeps its row too): in live mode a table re-renders on every change anywhere, and
// rebuilding every row each time would cost the page's main thread (and reset an armed
// Delete button or the row being edited).
const rowCache = { users: new Map(), jobs: new Map() }; // id -> { item, node }

function cachedRows(name, items) {
  const cache = rowCache[name];
  const rows = items.map((item) => {
    const hit = cache.get(item.id);
    // The read function's answer after the saved copy brings equal items in new objects: the
    // rows stay (rebuilding 600 rows and their layout took ~150 ms of the page's main thread).
    if (hit && hit.item !== item && JSON.stringify(hit.item) === JSON.stringify(item)) hit.item = item;
    if (hit && hit.item === item) return hit.node;
    const node = TABLES[name].row(item);
    cache.set(item.id, { item, node });
    return node;
  });
  if (cache.size > items.length) {
    const present = new Set(items.map((item) => item.id));
    for (const id of cache.keys()) if (!present.has(id)) cache.delete(id);
  }
  return rows;
}

// One render per animation frame, whatever the number of events in between. `afterPaint`: in the
// task after the next frame, so that what is on the page now is painted first (a render in the
// frame's own callback is laid out and painted with it).
const pendingRender = new Set();
function scheduleRender(name, { afterPaint = false } = {}) {
  if (pendingRender.has(name)) return;
  pendingRender.add(name);
  requestAnimationFrame(() => {
    const render = () => {
      pendingRender.delete(name);
      renderTable(name);
    };
    if (afterPaint) setTimeout(render, 0);
    else render();
  });
}

/** Make `parent`'s children exactly `nodes`, touching only what differs: one change, one
 * row inserted or removed, so the browser lays out little (a whole table costs it ~30 ms). */
function syncChildren(parent, nodes) {
  const wanted = new Set(nodes);
  for (const child of [...parent.children]) if (!wanted.has(child)) child.remove();
  let current = parent.firstElementChild;
  for (const node of nodes) {
    if (node === current) current = current.nextElementSibling;
    else parent.insertBefore(node, current);
  }
}

// A table's first fill inserts the rows a screen holds, and the rest once those are painted: a
// trace of a repeat visit (Chrome DevTools Protocol) showed the frame that inserted all 240 users
// and 360 jobs at once spending ~60 ms building rows and ~110 ms in layout before its first
// paint. (The rest rendered in the next frame's own callback was laid out and painted with the
// first rows: ~13 ms of rows and ~18 ms of style for 7,800 elements before that first paint.)
// Its badge follows with the whole list, so a badge naming a source means all of its rows.
// 16 rows: about twice what either table's scroll box shows (test_offline.py checks a tall
// screen and a phone's); 40 cost ~10 ms more before the first frame and ~20-30 ms more to the
// screen (bench/load_bench.py, a run each).
const FIRST_FILL_ROWS = 16;

function renderTable(name) {
  const { detail, error, filter } = page.view[name];
  const table = TABLES[name];
  const tbody = $(`#${name}-table tbody`);
  const rows = [];
  if (!detail || !detail.source) {
    const text = error ? `Cannot load ${table.noun}: ${error.message}. Retrying…` : `Loading ${table.noun}…`;
    rows.push(h('tr', { class: 'empty' }, h('td', { colSpan: 7, text })));
  } else {
    const shown = detail.items.filter((item) => matches(item, filter, table.search));
    if (shown.length > FIRST_FILL_ROWS && !tbody.querySelector('tr[data-id]')) {
      syncChildren(tbody, cachedRows(name, shown.slice(0, FIRST_FILL_ROWS)));
      scheduleRender(name, { afterPaint: true }); // the whole list, and the badge, once painted
      return;
    }
    rows.push(...cachedRows(name, shown));
    if (shown.length === 0) {
      rows.push(h('tr', { class: 'empty' },
        h('td', { colSpan: 7, text: filter ? `No ${table.noun} match “${filter}”.` : `No ${table.noun} yet.` })));
    }
    $(`#${name}-count`).textContent = filter ? `${shown.length} of ${detail.items.length}` : String(detail.items.length);
  }
  syncChildren(tbody, rows);
  renderBadge(name);
}

/**
 * Paint a collection's saved copy before the page has a data client (page/early.js): `detail`
 * as a `DataChanged` event's. The dashboard shows, inert (its buttons, filters and form) until
 * `mountTables` gives it its handlers.
 */
export function paintCopy(name, detail) {
  page.view ??= {};
  page.view[name] ??= { detail: null, error: null, filter: '' };
  page.view[name].detail = detail;
  $('#dashboard').hidden = false;
  $('main.layout').inert = true;
  renderTable(name);
}

/** Take the early copy off the page (page/early.js: not this user's to see). */
export function unpaint(names) {
  for (const name of names) {
    if (page.view?.[name]) page.view[name].detail = null;
    rowCache[name]?.clear();
    $(`#${name}-table tbody`).replaceChildren();
    $(`#${name}-count`).textContent = '';
    if (page.view) renderTable(name);
  }
  $('#dashboard').hidden = true;
}

/**
 * Render the tables of `collections` from the client's events. `view` holds each one's last
 * detail, error and filter, and the user being edited; `startEdit(id)` and `resetForm()` are
 * the user form's (page/user-form.js); `say`: `{ explain, liveOffSentence, toast }`.
 */
export function mountTables({ client, config, view, collections, startEdit, resetForm, say }) {
  for (const name of collections) {
    view[name].detail ??= page.view?.[name]?.detail ?? null; // what page/early.js painted
  }
  Object.assign(page, { client, config, view, api: config.api, startEdit, resetForm, say });
  $('main.layout').inert = false;
  for (const name of collections) {
    window.addEventListener(`${name}DataChanged`, (event) => {
      view[name].detail = event.detail;
      view[name].error = null;
      scheduleRender(name);
    });
    const input = $(`#${name}-filter`);
    input.addEventListener('input', () => {
      view[name].filter = input.value.trim().toLowerCase();
      renderTable(name);
    });
  }
  window.addEventListener('dataError', (event) => {
    const { collection, error } = event.detail;
    if (!view[collection]) return;
    view[collection].error = error;
    // Shown where there are no rows: no detail yet, or one without data (a copy taken away).
    if (!view[collection].detail?.source) renderTable(collection);
  });
  setInterval(() => collections.forEach(renderBadge), 1000);
}

/** Highlight a row for a moment (a document just added). */
export function flashRow(name, id) {
  const row = document.querySelector(`#${name}-table tr[data-id="${CSS.escape(id)}"]`);
  if (!row) return;
  row.classList.add('flash');
  row.scrollIntoView({ block: 'nearest' });
  setTimeout(() => row.classList.remove('flash'), 2500);
}
