/**
 * client/visibility.js: the page's signals the client follows. A tab shown again catches up
 * at once (polls and probes pause while `document.hidden`); the browser back online retries
 * failed collections at once.
 */

import { isLive } from './collections.js';
import { scheduleProbe } from './mode.js';
import { schedule } from './polling.js';

/** Listen to `visibilitychange` and `online`; returns `[target, type, handler]` to remove. */
export function watchPage(ctx) {
  const listeners = [];
  const doc = ctx.document;
  if (doc && typeof doc.addEventListener === 'function') {
    const onVisibility = () => {
      if (doc.hidden || !ctx.started) return;
      if (ctx.probe.paused) scheduleProbe(ctx, 0);
      for (const state of ctx.states.values()) {
        if (isLive(ctx, state)) continue;
        if (state.paused || (state.checkedAt !== null
            && ctx.now() - state.checkedAt >= ctx.opts.pollMs)) {
          state.paused = false;
          schedule(ctx, state, 0);
        }
      }
    };
    doc.addEventListener('visibilitychange', onVisibility);
    listeners.push([doc, 'visibilitychange', onVisibility]);
  }
  const win = typeof window !== 'undefined' ? window : null;
  if (win && typeof win.addEventListener === 'function') {
    const onOnline = () => {
      for (const state of ctx.states.values()) if (state.failures > 0) schedule(ctx, state, 0);
    };
    win.addEventListener('online', onOnline);
    listeners.push([win, 'online', onOnline]);
  }
  return listeners;
}
