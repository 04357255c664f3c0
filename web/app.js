// The demo dashboard: plain DOM code on top of data-client.js (no framework, no build step).
import { ApiError, ValidationError, createDataClient } from './data-client.js';
import { mountAdminTools } from './admin-tools.js';
import { connectFirestore, loadWebConfig } from './firebase-live.js';

const COLLECTIONS = ['users', 'jobs'];
const USER_FIELDS = ['id', 'name', 'email', 'role', 'status', 'location', 'hourlyRate', 'skills'];
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);

const $ = (selector) => document.querySelector(selector);

// --- configuration ------------------------------------------------------------------------------

function meta(name) {
  return document.querySelector(`meta[name="${name}"]`)?.content.trim() || '';
}

function readConfig() {
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

function localEmulatorToken(project, viewer) {
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
function startLive() {
  if (!config.live) return null;
  return loadWebConfig(config).then((web) => {
    if (!web) throw new Error('no Firebase web config: polling the functions');
    return connectFirestore(web, {
      mockUserToken: config.local ? localUser(config.viewer) : null, logLevel: config.firestoreLog,
    });
  });
}

// --- formatting ----------------------------------------------------------------------------------

function ago(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 5) return 'just now';
  if (s < 60) return `${s} s`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.round(m / 60);
  if (h < 48) return `${h} h`;
  return `${Math.round(h / 24)} d`;
}

const money = new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD', maximumFractionDigits: 0 });
const dateFormat = new Intl.DateTimeFormat('en-US', { year: 'numeric', month: 'short', day: 'numeric', timeZone: 'UTC' });

function formatDate(value) {
  const time = Date.parse(value ?? '');
  return Number.isNaN(time) ? '—' : dateFormat.format(time);
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else if (key.startsWith('data-') || key.startsWith('aria-') || key === 'title' || key === 'type') {
      node.setAttribute(key, value);
    } else node[key] = value;
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

function pill(value, kind) {
  return el('span', { class: `pill ${kind}-${String(value).replace(/[^a-z_]/gi, '')}`, text: value ?? '—' });
}

// --- the page ----------------------------------------------------------------------------------

const config = readConfig();
const live = startLive();
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
  + 'snapshot, then this tab\'s copy (5 min)';
if (config.local) {
  const chip = $('#auth-chip');
  chip.hidden = false;
  chip.textContent = `local ${config.viewer ? 'viewer (no admin claim)' : 'admin'} · unsigned emulator token`;
  chip.title = 'Local stack only: the page signs in with an unsigned token the auth emulator path accepts';
}

// --- badges ------------------------------------------------------------------------------------

const SOURCE_LABEL = { firestore: 'firestore', snapshot: 'snapshot', cache: 'cached copy' };
const MODE_TITLE = {
  live: 'Live: Firestore listeners bring every change as it happens.',
  polling: 'Polling the functions (live updates are off or unavailable).',
};

function renderBadge(name) {
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
  const age = detail.freshAt ? ago(Date.now() - detail.freshAt) : '?';
  const when = age === 'just now' ? 'just now' : `${age} old`;
  const label = SOURCE_LABEL[detail.source] ?? detail.source;
  const mode = detail.mode === 'polling' ? 'polling · ' : '';
  badge.textContent = detail.mode === 'live' ? 'live · firestore'
    : detail.stale ? `${label} · stale · ${when}` : `${mode}${label} · ${when}`;
  const liveError = config.live && detail.mode !== 'live' ? client.usage(name).liveError : null;
  badge.title = (detail.stale
    ? `The API cannot be reached: showing this tab's last good copy (data as of ${detail.asOf ?? '?'}).`
    : `${MODE_TITLE[detail.mode] ?? ''} Served from ${detail.source}; data as of ${detail.asOf ?? '?'}.`.trim())
    + (liveError ? ` Live updates unavailable: ${liveError.message}` : '');
}

// --- tables -------------------------------------------------------------------------------------

function matches(item, filter, fields) {
  if (!filter) return true;
  return fields.some((field) => String(item[field] ?? '').toLowerCase().includes(filter));
}

function deleteButton(collection, item) {
  const button = el('button', { type: 'button', class: 'danger small', text: 'Delete', 'data-action': 'delete',
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
    try {
      await client.remove(collection, item.id);
      toast(`Deleted ${item.name ?? item.title ?? item.id}`);
      if (view.editing?.id === item.id && collection === 'users') resetForm();
    } catch (error) {
      button.disabled = false;
      toast(describe(error), 'error');
    }
  });
  return button;
}

function userRow(user) {
  const edit = el('button', { type: 'button', class: 'small', text: 'Edit', 'data-action': 'edit',
    'aria-label': `Edit ${user.name ?? user.id}` });
  edit.addEventListener('click', () => startEdit(user.id));
  const rate = typeof user.hourlyRate === 'number' ? `${money.format(user.hourlyRate)}/h` : '—';
  return el('tr', { 'data-id': user.id, class: view.editing?.id === user.id ? 'editing' : undefined },
    el('td', {}, el('div', { class: 'primary-text', text: user.name ?? '—' }),
      el('div', { class: 'muted mono', text: user.id })),
    el('td', { class: 'email', text: user.email ?? '—' }),
    el('td', {}, pill(user.role, 'role')),
    el('td', {}, pill(user.status, 'status')),
    el('td', { class: 'nowrap', text: user.location || '—' }),
    el('td', { class: 'num', text: rate }),
    el('td', { class: 'actions' }, edit, deleteButton('users', user)));
}

function jobRow(job) {
  const assigned = Array.isArray(job.assignedTo) ? job.assignedTo.length : 0;
  return el('tr', { 'data-id': job.id },
    el('td', {}, el('div', { class: 'primary-text', text: job.title ?? '—' }),
      el('div', { class: 'muted mono', text: job.id })),
    el('td', { text: job.client || '—' }),
    el('td', {}, pill(job.status, 'status')),
    el('td', { class: 'num', text: typeof job.budget === 'number' ? money.format(job.budget) : '—' }),
    el('td', { class: 'nowrap', text: formatDate(job.dueDate) }),
    el('td', { class: 'num', text: String(assigned) }),
    el('td', { class: 'actions' }, deleteButton('jobs', job)));
}

const TABLES = {
  users: { row: userRow, search: ['id', 'name', 'email', 'role', 'status', 'location'], noun: 'users' },
  jobs: { row: jobRow, search: ['id', 'title', 'client', 'status', 'location'], noun: 'jobs' },
};

// Rows are kept per document and rebuilt only when its item changed (the client hands out the
// same object until then): in live mode a table re-renders on every change anywhere, and
// rebuilding every row each time would cost the page's main thread (and reset an armed
// Delete button or the row being edited).
const rowCache = { users: new Map(), jobs: new Map() }; // id -> { item, node }

function cachedRows(name, items) {
  const cache = rowCache[name];
  const rows = items.map((item) => {
    const hit = cache.get(item.id);
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

// One render per animation frame, whatever the number of events in between.
const pendingRender = new Set();
function scheduleRender(name) {
  if (pendingRender.has(name)) return;
  pendingRender.add(name);
  requestAnimationFrame(() => {
    pendingRender.delete(name);
    renderTable(name);
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

function renderTable(name) {
  const { detail, error, filter } = view[name];
  const table = TABLES[name];
  const tbody = $(`#${name}-table tbody`);
  const rows = [];
  if (!detail || !detail.source) {
    const text = error ? `Cannot load ${table.noun}: ${error.message}. Retrying…` : `Loading ${table.noun}…`;
    rows.push(el('tr', { class: 'empty' }, el('td', { colSpan: 7, text })));
  } else {
    const shown = detail.items.filter((item) => matches(item, filter, table.search));
    rows.push(...cachedRows(name, shown));
    if (shown.length === 0) {
      rows.push(el('tr', { class: 'empty' },
        el('td', { colSpan: 7, text: filter ? `No ${table.noun} match “${filter}”.` : `No ${table.noun} yet.` })));
    }
    $(`#${name}-count`).textContent = filter ? `${shown.length} of ${detail.items.length}` : String(detail.items.length);
  }
  syncChildren(tbody, rows);
  renderBadge(name);
}

for (const name of COLLECTIONS) {
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
  if (!view[collection].detail) renderTable(collection);
});
setInterval(() => COLLECTIONS.forEach(renderBadge), 1000);

// --- the user form ---------------------------------------------------------------------------

const form = $('#user-form');

function describe(error) {
  if (error instanceof ApiError) {
    if (error.code === 'precondition_failed') return 'Someone changed this user meanwhile.';
    if (error.status === 401 || error.status === 403) return `Not allowed: ${error.message}`;
    if (error.status === 0) return `The API cannot be reached (${error.message}).`;
    return error.message;
  }
  return String(error?.message ?? error);
}

function clearErrors() {
  for (const node of form.querySelectorAll('.field-error')) node.textContent = '';
  for (const node of form.querySelectorAll('[aria-invalid]')) node.removeAttribute('aria-invalid');
  const box = $('#form-error');
  box.hidden = true;
  box.textContent = '';
}

function showErrors(error) {
  const unplaced = [];
  for (const { field, message } of error.fields) {
    const key = String(field).split(/[.[]/)[0]; // "skills[2]" / "social.x" -> the form field
    const slot = form.querySelector(`.field-error[data-error-for="${CSS.escape(key)}"]`);
    const input = form.elements.namedItem(key);
    if (slot && !(key === 'id' && view.editing)) {
      slot.textContent = slot.textContent ? `${slot.textContent} ${message}` : message;
      input?.setAttribute('aria-invalid', 'true');
      input?.setAttribute('aria-describedby', slot.id);
    } else {
      unplaced.push(`${field}: ${message}`);
    }
  }
  if (unplaced.length || error.fields.length === 0) {
    showFormError([error.fields.length ? 'Please check:' : error.message, ...unplaced].join(' '));
  }
  form.querySelector('[aria-invalid="true"]')?.focus();
}

function showFormError(text) {
  const box = $('#form-error');
  box.textContent = text;
  box.hidden = false;
}

function readForm() {
  const data = {};
  for (const name of USER_FIELDS) {
    const raw = String(form.elements.namedItem(name).value ?? '').trim();
    if (name === 'skills') {
      data.skills = raw ? raw.split(',').map((s) => s.trim()).filter(Boolean) : [];
    } else if (name === 'hourlyRate') {
      // Sent as typed: a number when it reads as one, else the text (the API says what is wrong).
      if (raw !== '') data.hourlyRate = /^-?\d+(\.\d+)?$/.test(raw) ? Number(raw) : raw;
    } else if (name === 'id' || name === 'location') {
      if (raw !== '') data[name] = raw;
    } else {
      data[name] = raw;
    }
  }
  return data;
}

function fillForm(item) {
  for (const name of USER_FIELDS) {
    const input = form.elements.namedItem(name);
    const value = item[name];
    input.value = name === 'skills' ? (value ?? []).join(', ') : (value ?? '');
  }
}

function resetForm() {
  view.editing = null;
  form.reset();
  clearErrors();
  $('#form-title').textContent = 'Add a user';
  $('#form-submit').textContent = 'Add user';
  $('#form-cancel').hidden = true;
  $('#field-id').hidden = false;
  for (const row of document.querySelectorAll('#users-table tr.editing')) row.classList.remove('editing');
}

async function startEdit(id) {
  clearErrors();
  try {
    // A fresh copy and its ETag: the save sends If-Match, so a change made meanwhile is a 412.
    const { item, etag } = await client.fetchOne('users', id);
    view.editing = { id, item, etag };
    fillForm(item);
    $('#form-title').textContent = `Edit ${item.name ?? id}`;
    $('#form-submit').textContent = 'Save changes';
    $('#form-cancel').hidden = false;
    $('#field-id').hidden = true;
    for (const row of document.querySelectorAll('#users-table tr')) {
      row.classList.toggle('editing', row.dataset.id === id);
    }
    form.elements.namedItem('name').focus();
  } catch (error) {
    toast(describe(error), 'error');
  }
}

// After a 412 the server's current version is read again. A read may still come from a
// function instance's short cache (CACHE_TTL_S) and return the version we had: then it is
// asked again, a few times, until the ETag moves on.
async function reloadAfterConflict(editing) {
  const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });
  for (let attempt = 0; attempt < 12; attempt += 1) {
    try {
      const { item, etag } = await client.fetchOne('users', editing.id);
      if (etag !== editing.etag || attempt === 11) {
        if (view.editing?.id !== editing.id) return;
        view.editing = { id: editing.id, item, etag };
        fillForm(item);
        return;
      }
    } catch (error) {
      toast(describe(error), 'error');
      return;
    }
    await sleep(1000);
  }
}

function changedFields(before, after) {
  const patch = {};
  for (const [key, value] of Object.entries(after)) {
    if (key === 'id') continue;
    if (JSON.stringify(before[key] ?? (key === 'skills' ? [] : undefined)) !== JSON.stringify(value)) {
      patch[key] = value;
    }
  }
  return patch;
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  clearErrors();
  const submit = $('#form-submit');
  submit.disabled = true;
  const data = readForm();
  try {
    if (view.editing) {
      const patch = changedFields(view.editing.item, data);
      if (Object.keys(patch).length === 0) {
        toast('Nothing changed');
      } else {
        // If-Match: the version the form was filled from (a change made since is a 412).
        const saved = await client.update('users', view.editing.id, patch,
          { ifMatch: view.editing.etag || undefined });
        toast(`Saved ${saved.name ?? saved.id}`);
      }
      resetForm();
    } else {
      const created = await client.create('users', data);
      toast(`Added ${created.name ?? created.id}`);
      resetForm();
      flashRow('users', created.id);
    }
  } catch (error) {
    if (error instanceof ValidationError) {
      showErrors(error);
    } else if (error instanceof ApiError && error.code === 'precondition_failed' && view.editing) {
      showFormError('Someone changed this user meanwhile: the form now shows their version. '
        + 'Make your change again and save.');
      await reloadAfterConflict(view.editing);
    } else {
      showFormError(describe(error));
    }
  } finally {
    submit.disabled = false;
  }
});
$('#form-cancel').addEventListener('click', resetForm);

function flashRow(name, id) {
  const row = document.querySelector(`#${name}-table tr[data-id="${CSS.escape(id)}"]`);
  if (!row) return;
  row.classList.add('flash');
  row.scrollIntoView({ block: 'nearest' });
  setTimeout(() => row.classList.remove('flash'), 2500);
}

let toastTimer = null;
function toast(text, kind = 'info') {
  const node = $('#toast');
  node.textContent = text;
  node.dataset.kind = kind;
  node.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { node.hidden = true; }, 3500);
}

client.start();
mountAdminTools({ client, api: config.api, getIdToken: config.local ? localEmulatorToken(config.project) : undefined });
