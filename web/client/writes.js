/**
 * client/writes.js: `create`, `update`, `replace`, `remove` and `fetchOne` against the write
 * API, and the write log that keeps what the server accepted in the copy: a write shows at
 * once, and an answer (a poll, a snapshot, a listener) that predates it does not undo it.
 * `If-Match` is the ETag of the version this tab holds, when it knows one.
 */

import { saveCopy } from './cache.js';
import { collectionRequest, docUrl, sameItem } from './collections.js';
import { errorFromResponse } from './errors.js';
import { emit } from './events.js';
import { compareTimestamps } from './timestamps.js';

const WRITE_LOG_MS = 5 * 60 * 1000; // local writes replayed over responses older than them

/** One document straight from the server, with its ETag (for `update(..., { ifMatch })`). */
export async function fetchOne(ctx, state, id) {
  const response = await collectionRequest(ctx, state, docUrl(state, id), { method: 'GET' });
  if (!response.ok) throw await errorFromResponse(response);
  const item = await response.json();
  const etag = response.headers.get('ETag');
  const known = state.items.get(item.id);
  const older = known && known.updatedAt && item.updatedAt
    && compareTimestamps(item.updatedAt, known.updatedAt) < 0;
  if (!known || (!older && !sameItem(known, item))) {
    applyWrite(ctx, state, item.id, item, etag);
  } else if (etag) {
    // The ETag of the version the caller now holds: an update based on it is checked
    // against it (a 412 if the document has changed since).
    state.docEtags.set(item.id, etag);
  }
  return { item, etag };
}

/** `POST /<collection>`: create a document (`id` optional); resolves to the stored document. */
export async function createDocument(ctx, state, data) {
  const response = await collectionRequest(ctx, state, state.url, { method: 'POST', body: data });
  if (response.status !== 201 && response.status !== 200) throw await errorFromResponse(response);
  const item = await response.json();
  applyWrite(ctx, state, item.id, item, response.headers.get('ETag'));
  return item;
}

/** `PATCH` or `PUT /<collection>/<id>`; resolves to the stored document. */
export async function writeDocument(ctx, state, method, id, data, ifMatch) {
  const response = await collectionRequest(ctx, state, docUrl(state, id), {
    method, body: data, ifMatch: ifMatchOf(state, id, ifMatch),
  });
  if (response.status !== 200 && response.status !== 201) {
    throw await writeError(ctx, state, id, response);
  }
  const item = await response.json();
  applyWrite(ctx, state, item.id ?? id, item, response.headers.get('ETag'));
  return item;
}

/** `DELETE /<collection>/<id>`; resolves to false when it was already gone. */
export async function removeDocument(ctx, state, id, ifMatch) {
  const response = await collectionRequest(ctx, state, docUrl(state, id), {
    method: 'DELETE', ifMatch: ifMatchOf(state, id, ifMatch),
  });
  if (response.status === 404) {
    applyWrite(ctx, state, id, null, null);
    return false;
  }
  if (!response.ok) throw await writeError(ctx, state, id, response);
  applyWrite(ctx, state, id, null, null);
  return true;
}

async function writeError(ctx, state, id, response) {
  const error = await errorFromResponse(response);
  if (response.status === 412) state.docEtags.delete(id);
  if (response.status === 404 && state.items.has(id)) applyWrite(ctx, state, id, null, null);
  return error;
}

/** `ifMatch`: an ETag, `false` for none, or unset for the ETag of the version held. */
function ifMatchOf(state, id, ifMatch) {
  if (ifMatch === false) return null;
  if (typeof ifMatch === 'string') return ifMatch;
  return state.docEtags.get(id) ?? null;
}

/** Put a write the server accepted into the local copy now (and replay it over older reads). */
export function applyWrite(ctx, state, id, item, etag) {
  state.writeSeq += 1;
  const now = ctx.now();
  // A deletion remembers the version it removed: listener answers up to it are older.
  const version = item === null ? state.items.get(id)?.updatedAt ?? null : null;
  state.writeLog.push({ seq: state.writeSeq, at: now, id, item, version });
  state.writeLog = state.writeLog.filter((entry) => now - entry.at <= WRITE_LOG_MS);
  if (item) {
    state.items.set(id, item);
    if (etag) state.docEtags.set(id, etag);
    else state.docEtags.delete(id);
  } else {
    state.items.delete(id);
    state.docEtags.delete(id);
  }
  if (!state.loaded) return;
  emit(ctx, state);
  if (!state.stale) saveCopy(ctx, state);
}

/**
 * Re-apply local writes over an answer that may predate them: those made after the read
 * started, and those newer than the answer's `asOf` (a snapshot answer can be older than a
 * write the server accepted a moment ago). Deletions are re-applied over snapshot answers.
 */
export function replayWrites(state, sinceSeq, answer) {
  let changed = false;
  for (const entry of state.writeLog) {
    const afterRead = entry.seq > sinceSeq;
    const known = state.items.get(entry.id);
    if (entry.item === null) {
      if ((afterRead || answer.source === 'snapshot') && state.items.delete(entry.id)) {
        changed = true;
      }
      continue;
    }
    const newerThanAnswer = Boolean(entry.item.updatedAt && answer.asOf
      && compareTimestamps(entry.item.updatedAt, answer.asOf) > 0);
    if (!afterRead && !newerThanAnswer) continue;
    if (known && (sameItem(known, entry.item) || (known.updatedAt && entry.item.updatedAt
        && compareTimestamps(known.updatedAt, entry.item.updatedAt) > 0))) continue;
    state.items.set(entry.id, entry.item);
    changed = true;
  }
  return changed;
}

/** This tab deleted the document after the version a listener brings (a listener's first
 * answer can come after the tab's own delete). */
export function deletedHere(state, item) {
  const entry = state.writeLog.findLast((logged) => logged.id === item.id);
  if (!entry || entry.item !== null) return false;
  return !entry.version || !item.updatedAt || compareTimestamps(item.updatedAt, entry.version) <= 0;
}
