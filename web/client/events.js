/**
 * client/events.js: what the data client tells the page. `<collection>DataChanged` with
 * `detail = { collection, items, source, stale, asOf, checkedAt, freshAt, mode, cachedAt,
 * outdated }`, and
 * `dataError` with `detail = { collection, error, failures }`, dispatched on the client (an
 * EventTarget) and on its `eventTarget` (`window` by default).
 */

import { collectionDetail, modeOf } from './collections.js';

/** The detail of a collection's `DataChanged` event, with fresh times. */
export function detailOf(ctx, state) {
  return collectionDetail(state, modeOf(ctx, state), ctx.now(), ctx.opts.cacheLabelAgeMs);
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
