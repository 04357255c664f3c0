/**
 * client/polling.js: one load or poll at a time per collection, and the next poll's timer:
 * every `pollMs`, backing off exponentially (with jitter, honouring `Retry-After`) after
 * errors, paused while `document.hidden` (client/visibility.js resumes it).
 */

import { isLive } from './collections.js';
import { poll } from './reads.js';

export const DEFAULT_POLL_MS = 5000;
export const DEFAULT_RESYNC_MS = 60 * 1000;
export const MAX_BACKOFF_MS = 60 * 1000;

/** Run one load/poll at a time per collection; a caller arriving meanwhile waits for it. */
export async function run(state, task) {
  while (state.busy) await state.busy.catch(() => {});
  state.busy = task();
  try {
    await state.busy;
  } finally {
    state.busy = null;
  }
}

/** After a load or poll: the next poll, unless polling is off or the collection is live. */
export function pollLater(ctx, state) {
  const { opts } = ctx;
  if (!ctx.started || opts.pollMs <= 0 || isLive(ctx, state)) return;
  let delay = opts.pollMs;
  if (state.failures > 0) {
    const ceiling = Math.min(opts.maxBackoffMs,
      Math.max(opts.pollMs, 1000) * 2 ** Math.min(state.failures - 1, 16));
    delay = ceiling / 2 + ctx.random() * (ceiling / 2); // "equal jitter"
    if (state.error?.retryAfterMs !== undefined) delay = Math.max(delay, state.error.retryAfterMs);
  }
  schedule(ctx, state, delay);
}

/** Poll the collection in `delay` ms (replacing its pending poll); then `ctx.afterRun`. */
export function schedule(ctx, state, delay) {
  if (state.timer !== null) ctx.clearTimeout(state.timer);
  state.timer = ctx.setTimeout(() => {
    state.timer = null;
    if (!ctx.started || isLive(ctx, state)) return;
    if (ctx.document?.hidden) {
      state.paused = true; // resumed by visibilitychange
      return;
    }
    run(state, () => poll(ctx, state))
      .catch(() => {})
      .then(() => ctx.afterRun(state));
  }, delay);
}

/** Cancel the collection's pending poll. */
export function unschedule(ctx, state) {
  if (state.timer !== null) ctx.clearTimeout(state.timer);
  state.timer = null;
}
