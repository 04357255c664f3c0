/**
 * client/reads.js: loading a whole collection (every page) and polling it for changes
 * (`?updatedSince=<asOf>`, a 304 when nothing changed), merged into the copy; on failure the
 * copy is badged stale, or the saved copy shown when there is nothing else.
 */

import { CACHE_REFRESH_MS, dropShownCopy, saveCopy, showCopy } from './cache.js';
import {
  collectionRequest, isLive, markFresh, mergeItem, sameItem,
} from './collections.js';
import { ApiError, asApiError, errorFromResponse } from './errors.js';
import { dispatch, emit } from './events.js';
import { compareTimestamps } from './timestamps.js';
import { replayWrites } from './writes.js';

const MAX_PAGES = 10000;

/** Load the whole collection (revalidating a single-page copy with its ETag). */
export async function load(ctx, state) {
  const since = state.writeSeq;
  const revalidate = state.listEtag && state.loaded && !state.stale ? state.listEtag : null;
  try {
    const result = await fetchPages(ctx, state, {}, revalidate);
    if (result.notModified) {
      confirmed(ctx, state, result.source, null);
    } else {
      const before = state.loaded ? state.items : null;
      const shown = [state.source, state.stale];
      state.items = new Map(result.items.map((item) => [item.id, item]));
      for (const [id, item] of state.items) {
        if (!before || !before.has(id) || !sameItem(before.get(id), item)) state.docEtags.delete(id);
      }
      state.asOf = result.asOf;
      state.cursor = result.asOf;
      state.deltaEtag = null;
      state.listEtag = result.pages === 1 ? result.etag : null;
      state.serverSource = result.source;
      replayWrites(state, since, result);
      markFresh(ctx, state, result.source);
      state.loaded = true;
      const unchanged = before && before.size === state.items.size
        && [...state.items].every(([id, item]) => before.has(id) && sameItem(before.get(id), item))
        && shown[0] === state.source && shown[1] === state.stale;
      if (!unchanged) emit(ctx, state);
      saveCopy(ctx, state);
    }
    state.lastFullLoad = ctx.now();
    state.failures = 0;
    state.error = null;
  } catch (error) {
    await failed(ctx, state, error);
  }
}

/** A delta since the cursor, merged (a full load when there is no cursor or a resync is due). */
export async function poll(ctx, state) {
  if (!state.loaded || state.cursor === null) return load(ctx, state);
  if (state.reportsDeletions !== true && ctx.opts.resyncMs > 0
      && ctx.now() - state.lastFullLoad >= ctx.opts.resyncMs) {
    return load(ctx, state);
  }
  const since = state.writeSeq;
  const cursor = state.cursor;
  try {
    const result = await fetchPages(ctx, state, { updatedSince: cursor }, state.deltaEtag);
    if (result.notModified) {
      confirmed(ctx, state, result.source, null);
    } else {
      mergeDelta(ctx, state, since, result);
    }
    state.failures = 0;
    state.error = null;
  } catch (error) {
    if (error instanceof ApiError && error.status === 400) {
      // The server refused the delta query (an old cursor, ...): a full load next time.
      state.cursor = null;
      state.lastFullLoad = 0;
    }
    await failed(ctx, state, error);
  }
  return undefined;
}

function mergeDelta(ctx, state, since, result) {
  if (result.deleted !== null) state.reportsDeletions = true;
  else if (state.reportsDeletions === null) state.reportsDeletions = false;
  let changed = false;
  for (const item of result.items) changed = mergeItem(state, item) || changed;
  for (const id of result.deleted ?? []) {
    if (state.items.delete(id)) changed = true;
    state.docEtags.delete(id);
  }
  if (result.items.length === 0 && (result.deleted ?? []).length === 0) {
    // Nothing since `cursor`: keep it, so the next poll can be a 304.
    state.deltaEtag = result.pages === 1 ? result.etag : null;
    confirmed(ctx, state, result.source, result.asOf);
    return;
  }
  state.cursor = result.asOf;
  state.deltaEtag = null;
  state.asOf = result.asOf;
  state.serverSource = result.source;
  changed = replayWrites(state, since, result) || changed;
  const wasStale = state.stale || state.source !== result.source;
  markFresh(ctx, state, result.source);
  if (changed || wasStale) emit(ctx, state);
  saveCopy(ctx, state);
}

/** The server confirmed our copy (304 or an empty delta). */
function confirmed(ctx, state, source, asOf) {
  if (asOf) state.asOf = asOf;
  const before = [state.source, state.stale];
  if (source) state.serverSource = source;
  markFresh(ctx, state, state.serverSource ?? source);
  if (before[0] !== state.source || before[1] !== state.stale) emit(ctx, state);
  if (ctx.now() - state.savedAt >= CACHE_REFRESH_MS) saveCopy(ctx, state);
}

/**
 * A load or poll failed: the saved copy when there is nothing else, else badge the copy stale.
 * A refusal (401, 403) of the user whose saved copy is on screen takes that copy away.
 */
async function failed(ctx, state, error) {
  const err = asApiError(error);
  state.error = err;
  state.failures += 1;
  if (!state.loaded && state.restoring) await state.restoring; // the copy, shown meanwhile
  if (state.cachedAt !== null && state.source === 'cache' && (err.status === 401 || err.status === 403)) {
    await dropShownCopy(ctx, state);
  } else if (!state.loaded) {
    if (err.retryable) await showCopy(ctx, state);
  } else if (err.retryable && !state.stale && !isLive(ctx, state)) {
    // (Current listeners keep the copy fresh whatever the function does.)
    state.source = 'cache';
    state.stale = true;
    emit(ctx, state);
  }
  dispatch(ctx, 'dataError', { collection: state.name, error: err, failures: state.failures });
}

/** GET every page of a list query; `notModified` when `etag` still matches page one. */
async function fetchPages(ctx, state, params, etag) {
  const answer = { notModified: false, items: [], deleted: null, asOf: null, source: null,
    etag: null, pages: 0 };
  let pageToken = null;
  do {
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries(params)) if (value != null) query.set(key, value);
    if (ctx.opts.pageSize) query.set('limit', String(ctx.opts.pageSize));
    if (pageToken) query.set('pageToken', pageToken);
    const qs = query.toString();
    const first = answer.pages === 0;
    const response = await collectionRequest(ctx, state, qs ? `${state.url}?${qs}` : state.url, {
      method: 'GET', ifNoneMatch: first && !ctx.httpCache ? etag : null,
    });
    const headerSource = response.headers.get('X-Data-Source');
    if (response.status === 304 && first) {
      if (headerSource !== 'snapshot') state.usage.pollReads += 1;
      return { notModified: true, source: headerSource };
    }
    if (response.status !== 200) {
      const error = await errorFromResponse(response);
      if (error.code === 'invalid_limit' && ctx.opts.pageSize && first) {
        // The server's MAX_LIMIT is below our page size: use its default from now on.
        ctx.opts.pageSize = null;
        return fetchPages(ctx, state, params, etag);
      }
      throw error;
    }
    const body = await response.json();
    if (!body || !Array.isArray(body.items)) {
      throw new ApiError('the list answer has no items', { status: 502, code: 'bad_response' });
    }
    if (first) answer.etag = response.headers.get('ETag');
    addPage(state, answer, body, headerSource);
    pageToken = typeof body.nextPageToken === 'string' && body.nextPageToken
      ? body.nextPageToken : null;
    if (answer.pages > MAX_PAGES) {
      throw new ApiError('too many pages', { status: 502, code: 'bad_response' });
    }
  } while (pageToken);
  return answer;
}

/** Add one page of a list answer to `answer` (and its billed reads to the usage). */
function addPage(state, answer, body, headerSource) {
  answer.pages += 1;
  if ((headerSource || body.source) !== 'snapshot') {
    state.usage.pollReads += Math.max(1, body.items.length)
      + (Array.isArray(body.deleted) ? body.deleted.length : 0);
  }
  answer.items.push(...body.items);
  if (Array.isArray(body.deleted)) {
    answer.deleted = answer.deleted ?? [];
    answer.deleted.push(...body.deleted.filter((id) => typeof id === 'string'));
  }
  // The earliest asOf of the pages: changes made while paging come with the next poll.
  if (body.asOf && (answer.asOf === null || compareTimestamps(body.asOf, answer.asOf) < 0)) {
    answer.asOf = body.asOf;
  }
  // A page served from the snapshot makes the whole answer a snapshot one.
  // The header first: a body the browser's cache revalidated (304) keeps its old `source`,
  // while the 304's headers replace the stored ones.
  const pageSource = headerSource || body.source || 'firestore';
  if (answer.source === null || pageSource === 'snapshot') answer.source = pageSource;
}
