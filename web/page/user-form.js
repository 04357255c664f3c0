/**
 * page/user-form.js: the demo page's user form: add a user, or edit one (its ETag goes with the
 * save as If-Match, so a change made meanwhile is a 412 and the form shows the new version);
 * a ValidationError's field errors go beside their fields.
 */

import { ApiError, ValidationError } from '../data-client.js';
import { explain } from '../ui/explain.js';
import { toast } from '../ui/toast.js';
import { flashRow } from './tables.js';

const USER_FIELDS = ['id', 'name', 'email', 'role', 'status', 'location', 'hourlyRate', 'skills'];

const $ = (selector) => document.querySelector(selector);

// Set once by mountUserForm.
let form = null;
let client = null;
let view = null; // view.editing: { id, item, etag } while the form edits a user
let api = '';

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

/** Back to "Add a user": the form emptied, no row being edited. */
export function resetForm() {
  view.editing = null;
  form.reset();
  clearErrors();
  $('#form-title').textContent = 'Add a user';
  $('#form-submit').textContent = 'Add user';
  $('#form-cancel').hidden = true;
  $('#field-id').hidden = false;
  for (const row of document.querySelectorAll('#users-table tr.editing')) row.classList.remove('editing');
}

/** Edit user `id`: its current version (and ETag) from the server fills the form. */
export async function startEdit(id) {
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
    toast(explain(error, { url: api }).what, 'error');
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
      toast(explain(error, { url: api }).what, 'error');
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

/** Wire the form (`#user-form`) to `client`; `view.editing` is shared with the tables. */
export function mountUserForm(options) {
  ({ client, view, api } = options);
  form = $('#user-form');
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
        showFormError(explain(error, { url: api }).what);
      }
    } finally {
      submit.disabled = false;
    }
  });
  $('#form-cancel').addEventListener('click', resetForm);
}
