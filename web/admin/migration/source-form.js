/**
 * admin/migration/source-form.js: the migration panel's form, where the admin picks the legacy
 * JSON (a file from this computer, sent as the request body, or a gs:// object), the
 * collection and the mode; and the checks a source passes before anything is sent.
 */

import { h } from '../../ui/dom.js';
import { formatBytes } from '../../ui/format.js';

export const MODES = {
  upsert: 'upsert: create documents, or update the fields the file has',
  create: 'create: only add documents that do not exist yet',
  replace: 'replace: documents become exactly the file’s records',
};

/** Why this source cannot be sent (a sentence), or null: checked before any request. */
export function sourceProblem(source, maxBodyBytes) {
  if (source.kind === 'gcs') {
    return /^gs:\/\/[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]\/.+/.test(source.uri ?? '') ? null
      : 'Enter a Cloud Storage address like gs://my-bucket/legacy/users.json.';
  }
  if (!source.file) return 'Choose a legacy JSON file first.';
  if (source.file.size === 0) return `${source.file.name} is empty: there is nothing to migrate.`;
  if (maxBodyBytes && source.file.size > maxBodyBytes) {
    return `${source.file.name} has ${formatBytes(source.file.size)}; the function accepts at `
      + `most ${formatBytes(maxBodyBytes)} in a request. Upload it to Cloud Storage `
      + '(gcloud storage cp FILE gs://BUCKET/PATH) and migrate it by its gs:// address.';
  }
  return null;
}

/** The settings of the form that a dry run vouches for (Migrate needs the same). */
export function sameInputs(a, b) {
  if (!a || !b || a.collection !== b.collection || a.mode !== b.mode) return false;
  if (a.source.kind !== b.source.kind) return false;
  if (a.source.kind === 'gcs') return a.source.uri === b.source.uri;
  const [x, y] = [a.source.file, b.source.file];
  return Boolean(x && y && x.name === y.name && x.size === y.size
    && x.lastModified === y.lastModified);
}

/** What the form says now: `{ collection, mode, source: { kind: 'file', file } | { kind: 'gcs', uri } }`. */
export function readInputs(ui) {
  const kind = sourceKind(ui);
  return {
    collection: ui.collection.value,
    mode: ui.mode.value,
    source: kind === 'gcs' ? { kind, uri: ui.gcs.value.trim() } : { kind, file: ui.file.files[0] ?? null },
  };
}

/** 'file' or 'gcs': the source the form's radio buttons choose. */
export function sourceKind(ui) {
  return ui.form.elements.namedItem('source-kind').value;
}

/** The form's card and the controls the panel uses. */
export function buildForm(collections) {
  const file = h('input', { type: 'file', id: 'migration-file', name: 'file', accept: '.json,application/json' });
  const gcs = h('input', { type: 'text', id: 'migration-gcs', name: 'gcs', placeholder: 'gs://bucket/legacy/users.json', disabled: true });
  const collection = h('select', { id: 'migration-collection', name: 'collection' },
    collections.map((name) => h('option', { value: name, text: name })));
  const mode = h('select', { id: 'migration-mode', name: 'mode' },
    Object.entries(MODES).map(([value, text]) => h('option', { value, text })));
  const dry = h('button', { type: 'button', class: 'primary', id: 'migration-dry-run', text: 'Dry run' });
  const migrate = h('button', { type: 'button', id: 'migration-start', text: 'Migrate', disabled: true });
  const message = h('div', { class: 'admin-message', id: 'migration-message', role: 'alert', hidden: true });
  const limit = h('span', { class: 'hint', text: '' });
  const radio = (value, label, checked) => h('label', { class: 'choice' },
    h('input', { type: 'radio', name: 'source-kind', value, checked }), ` ${label}`);
  const form = h('form', { id: 'migration-form', novalidate: true },
    h('fieldset', { class: 'source-set' }, h('legend', { text: 'Legacy JSON' }),
      h('div', { class: 'source-row' }, radio('file', 'A file from this computer', true), file, limit),
      h('div', { class: 'source-row' }, radio('gcs', 'A Cloud Storage object', false), gcs)),
    h('div', { class: 'row' },
      h('div', { class: 'field' }, h('label', { for: 'migration-collection', text: 'Collection' }), collection),
      h('div', { class: 'field' }, h('label', { for: 'migration-mode', text: 'Mode' }), mode)),
    message,
    h('div', { class: 'form-actions' }, dry, migrate));
  const card = h('section', { class: 'card admin-card', id: 'migration-card' },
    h('div', { class: 'card-head' }, h('h2', { text: 'Migrate legacy JSON into Firestore' }),
      h('span', { class: 'muted', text: 'a dry run first: it shows the account before anything is written' })),
    form);
  return { card, form, file, gcs, collection, mode, dry, migrate, message, limit };
}
