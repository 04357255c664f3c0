/**
 * client/copy-format.js: a saved copy's format and who may be shown it, with no storage behind
 * it: the data client's cache (client/cache.js) and the demo page's early start
 * (page/early.js, which paints a copy before anything else of the client has loaded) both read
 * copies through `parseCopy`. A copy is one JSON text
 * `{ v, uid, admin, savedAt, asOf, source, checkedAt, freshAt, items }`.
 */

import { CACHE_FORMAT, collectionDetail } from './collections.js';

export const MAX_CACHE_AGE_MS = 7 * 24 * 60 * 60 * 1000; // older copies are never shown
export const CACHE_LABEL_AGE_MS = 5 * 60 * 1000; // older ones are labelled `outdated`
export const MAX_CACHE_BYTES = 4 * 1024 * 1024; // per collection, as UTF-8 JSON

/** The UTF-8 length of `text`, counted only when it may be over `MAX_CACHE_BYTES`. */
export function byteLength(text) {
  // UTF-8 is at most 3 bytes per UTF-16 unit: measure only what may be over the bound.
  return text.length * 3 <= MAX_CACHE_BYTES ? text.length : new TextEncoder().encode(text).length;
}

/**
 * The saved copy `text` as a record when `who` (`{ uid, admin }`) may be shown it now: it
 * parses, has this format, is `who`'s (and not saved with an admin claim `who` lacks), is at
 * most `maxCacheAgeMs` old and `maxCacheBytes` long. Null otherwise (the caller deletes it).
 */
export function parseCopy(text, who, now, { maxCacheAgeMs = MAX_CACHE_AGE_MS, maxCacheBytes = MAX_CACHE_BYTES } = {}) {
  if (typeof text !== 'string' || !who) return null;
  let record = null;
  try {
    record = JSON.parse(text);
  } catch {
    return null;
  }
  const age = now - record?.savedAt;
  const usable = record && record.v === CACHE_FORMAT && Array.isArray(record.items)
    && record.uid === who.uid && !(record.admin && !who.admin)
    && age >= 0 && age <= maxCacheAgeMs && byteLength(text) <= maxCacheBytes;
  return usable ? record : null;
}

/**
 * The collection state a saved copy `record` (parseCopy's) stands for: its items by id, its
 * times, `source: 'cache'`, stale. The data client takes it on (client/cache.js); the demo page's
 * early start announces it before the client exists (page/early.js).
 */
export function copyState(record) {
  return {
    items: new Map(record.items.filter((item) => typeof item?.id === 'string')
      .map((item) => [item.id, item])),
    asOf: record.asOf ?? null,
    cursor: record.asOf ?? null,
    serverSource: record.source ?? null,
    freshAt: record.freshAt ?? record.savedAt,
    checkedAt: record.checkedAt ?? null,
    cachedAt: record.savedAt,
    source: 'cache',
    stale: true,
    loaded: true,
  };
}

/**
 * The `<name>DataChanged` detail of the saved copy `record` shown as it is, at `now`: what the
 * data client announces when it shows a copy (`source: 'cache'`, mode `cache`). The demo page's
 * early start (page/early.js) announces it before the client exists.
 */
export function copyDetail(name, record, now, cacheLabelAgeMs = CACHE_LABEL_AGE_MS) {
  return collectionDetail({ name, ...copyState(record) }, 'cache', now, cacheLabelAgeMs);
}
