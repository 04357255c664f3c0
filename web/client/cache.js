/**
 * client/cache.js: this tab's last good copy of each collection in `sessionStorage` (or the
 * `storage` option), shown with `source: 'cache', stale: true` when the functions cannot be
 * reached, for at most `cacheTtlMs` (5 minutes).
 */

import { CACHE_FORMAT } from './collections.js';

export const CACHE_TTL_MS = 5 * 60 * 1000;
export const CACHE_REFRESH_MS = 60 * 1000; // re-save an unchanged copy at most this often

/** The page's sessionStorage, or null where storage is disabled. */
export function defaultStorage() {
  try {
    return globalThis.sessionStorage ?? null;
  } catch {
    return null; // sessionStorage throws where storage is disabled (sandboxed frames, ...)
  }
}

/** Save the collection's copy (never a stale one). */
export function saveCopy(ctx, state) {
  if (!ctx.storage || state.stale) return;
  const now = ctx.now();
  const record = {
    v: CACHE_FORMAT, savedAt: now, asOf: state.asOf, source: state.serverSource,
    checkedAt: state.checkedAt, freshAt: state.freshAt, items: [...state.items.values()],
  };
  try {
    ctx.storage.setItem(state.cacheKey, JSON.stringify(record));
    state.savedAt = now;
  } catch {
    // Quota exceeded or storage disabled: the copy is a convenience, never a failure.
  }
}

/** The saved record of the collection, or null (none, another format, expired: dropped). */
export function restoreCopy(ctx, state) {
  if (!ctx.storage) return null;
  try {
    const raw = ctx.storage.getItem(state.cacheKey);
    if (!raw) return null;
    const record = JSON.parse(raw);
    const age = ctx.now() - record.savedAt;
    if (record.v !== CACHE_FORMAT || !Array.isArray(record.items) || !(age >= 0)
        || age > ctx.opts.cacheTtlMs) {
      ctx.storage.removeItem(state.cacheKey);
      return null;
    }
    return record;
  } catch {
    return null;
  }
}
