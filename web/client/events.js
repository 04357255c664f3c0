/**
 * client/events.js: what the data client tells the page. `<collection>DataChanged` with
 * `detail = { collection, items, source, stale, asOf, checkedAt, freshAt, mode, cachedAt,
 * outdated }`, and
 * `dataError` with `detail = { collection, error, failures }`, dispatched on the client (an
 * EventTarget) and on its `eventTarget` (`window` by default).
 */

import { byId, modeOf } from './collections.js';

/** The detail of a collection's `DataChanged` event, with fresh times. */
export function detailOf(ctx, state) {
  const mode = modeOf(ctx, state);
  // Current listeners confirm the copy all the time.
  const now = mode === 'live' ? ctx.now() : null;
  const outdated = state.stale && state.freshAt !== null
    && ctx.now() - state.freshAt > ctx.opts.cacheLabelAgeMs;
  return {
    collection: state.name,
    items: [...state.items.values()].sort(byId),
    source: state.source,
    stale: state.stale,
    asOf: state.asOf,
    checkedAt: now ?? state.checkedAt,
    freshAt: now ?? state.freshAt,
    mode,
    cachedAt: state.source === 'cache' ? state.cachedAt : null, // the saved copy's save time
    outdated, // stale, and older than `cacheLabelAgeMs`: say so louder
  };
}

/** `<collection>DataChanged` with the collection's current detail. */
export function emit(ctx, state) {
  dispatch(ctx, `${state.name}DataChanged`, detailOf(ctx, state));
}

/** A CustomEvent of `type` on the client and on its event target. */
export function dispatch(ctx, type, detail) {
  ctx.client.dispatchEvent(new CustomEvent(type, { detail }));
  const { target } = ctx;
  if (target && target !== ctx.client && typeof target.dispatchEvent === 'function') {
    target.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
