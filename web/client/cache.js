/**
 * client/cache.js: the last good copy of each collection, kept between visits (IndexedDB by
 * default, client/idb-store.js) so that a page shows it at once (stale-while-revalidate) and
 * offline, labelled `source: 'cache', stale: true` with its `asOf`, until the read function or
 * the listeners answer.
 *
 * A copy belongs to one user: the uid (`sub`) of the token the client sends, read through the
 * transport (`identity()`). No token, no copy read or written. The store holds one user's
 * copies at a time: a copy of another user, or one saved with the admin claim that the token no
 * longer has, is deleted unread, and so is everything once the token names someone else, names
 * nobody any more, or lost the admin claim (`clearCache()` does it on demand: sign-out). A copy
 * is one JSON text `{ v, uid, admin, savedAt, asOf, source, checkedAt, freshAt, items }`: one
 * that does not parse, has another format `v`, is older than `maxCacheAgeMs` or longer than
 * `maxCacheBytes` is deleted and never shown. A store that fails (full, disabled, blocked) is
 * never an error: the client then behaves as if it kept no copy.
 */

import { CACHE_FORMAT } from './collections.js';
import { byteLength, copyState, MAX_CACHE_AGE_MS, parseCopy } from './copy-format.js';
import { emit } from './events.js';
import { indexedDbStore, storeOf } from './idb-store.js';

// The copy's format and who may be shown it (client/copy-format.js), exported from here too.
export { CACHE_LABEL_AGE_MS, MAX_CACHE_AGE_MS, MAX_CACHE_BYTES, parseCopy } from './copy-format.js';
export const CACHE_TTL_MS = MAX_CACHE_AGE_MS; // the former name of MAX_CACHE_AGE_MS
export const CACHE_REFRESH_MS = 60 * 1000; // re-save an unchanged copy at most this often

/** The store for the `storage` option (unset: this origin's IndexedDB, where there is one). */
export function storeFor(options) {
  if ('storage' in options) return storeOf(options.storage);
  try {
    return indexedDbStore();
  } catch {
    return null;
  }
}

/**
 * The user whose copies the store may hold now (`{ uid, admin }` or null), after dropping every
 * copy when that changed: another uid, nobody, or the admin claim gone.
 */
async function owner(ctx) {
  const who = await ctx.transport.identity();
  const last = ctx.cacheOwner;
  ctx.cacheOwner = who;
  if (last && (!who || who.uid !== last.uid || (last.admin && !who.admin))) {
    await clearCopies(ctx);
  }
  return who;
}

/** Delete every copy of this client's store (and forget what `cachedCopy` reports). */
export async function clearCopies(ctx) {
  ctx.cacheEpoch += 1; // a save under way must not write after this
  for (const state of ctx.states.values()) {
    state.copyInfo = null;
    state.savedAt = 0;
  }
  try {
    await ctx.store?.clear();
  } catch {
    // a store that cannot be cleared could not be read either
  }
}

/** Save the collection's copy in the background (never a stale one; one save at a time). */
export function saveCopy(ctx, state) {
  if (!ctx.store || state.stale || !state.loaded || state.source === 'cache') return;
  const record = {
    savedAt: ctx.now(), asOf: state.asOf, source: state.serverSource,
    checkedAt: state.checkedAt, freshAt: state.freshAt, items: [...state.items.values()],
  };
  state.savedAt = record.savedAt;
  const epoch = ctx.cacheEpoch;
  state.saving = (state.saving ?? Promise.resolve())
    .then(() => writeCopy(ctx, state, record, epoch))
    .catch(() => {}); // quota exceeded, storage disabled: the copy is a convenience
}

async function writeCopy(ctx, state, record, epoch) {
  const who = await owner(ctx);
  if (!who || epoch !== ctx.cacheEpoch) return;
  const text = JSON.stringify({ v: CACHE_FORMAT, uid: who.uid, admin: who.admin, ...record });
  if (byteLength(text) > ctx.opts.maxCacheBytes) {
    state.copyInfo = null;
    await ctx.store.delete(state.cacheKey); // an older copy would be wrong, not just old
    return;
  }
  await ctx.store.set(state.cacheKey, text);
  state.copyInfo = { savedAt: record.savedAt, count: record.items.length, asOf: record.asOf };
}

/** The collection's saved copy for the current user, or null (bad ones are deleted). */
export async function restoreCopy(ctx, state) {
  if (!ctx.store) return null;
  try {
    const who = await owner(ctx);
    if (!who) return null; // signed out (or not yet): nothing shown, nothing deleted
    const text = await ctx.store.get(state.cacheKey);
    if (typeof text !== 'string') return null;
    const record = parseCopy(text, who, ctx.now(), ctx.opts);
    if (!record) {
      await ctx.store.delete(state.cacheKey);
      return null;
    }
    state.copyInfo = { savedAt: record.savedAt, count: record.items.length, asOf: record.asOf ?? null };
    return record;
  } catch {
    return null;
  }
}

/** Show the saved copy unless the collection already has data; true when it did. */
export async function showCopy(ctx, state) {
  const record = await restoreCopy(ctx, state);
  if (!record || state.loaded) return false;
  Object.assign(state, copyState(record)); // the copy is the collection's data, stale
  emit(ctx, state);
  return true;
}

/**
 * Take on the saved copy `record` that the page already showed and announced (its early start,
 * web/page/early.js, for the user the page has since confirmed): the same state as
 * `showCopy`, without a second event.
 */
export function adoptCopy(ctx, state, record) {
  if (state.loaded) return false;
  state.copyInfo = { savedAt: record.savedAt, count: record.items.length, asOf: record.asOf ?? null };
  Object.assign(state, copyState(record)); // the copy is the collection's data, stale
  return true;
}

/** The server refused this user: the copy on screen and in the store is not theirs to see. */
export async function dropShownCopy(ctx, state) {
  state.items = new Map();
  state.loaded = false;
  state.source = null;
  state.stale = false;
  state.asOf = null;
  state.cursor = null;
  state.cachedAt = null;
  state.copyInfo = null;
  emit(ctx, state);
  try {
    await ctx.store?.delete(state.cacheKey);
  } catch {
    // nothing more to do
  }
}

/** What `client.cachedCopy(name)` reports: `{ savedAt, ageMs, count, asOf }` or null. */
export function copyInfo(ctx, state) {
  const info = state.copyInfo;
  if (!info) return null;
  const ageMs = ctx.now() - info.savedAt;
  return ageMs > ctx.opts.maxCacheAgeMs ? null : { ...info, ageMs };
}
