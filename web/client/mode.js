/**
 * client/mode.js: which way each collection is kept fresh ('live' | 'polling' | 'snapshot' |
 * 'cache'), what changes when that changes (polling stops while live, resumes at once when live
 * is lost), and the reachability probe of Firestore's host that tells a lost Firestore within
 * seconds (the SDK notices only after its own retries, about 30 s; the probe is a plain request
 * to the host, which Firestore does not bill).
 */

import { saveCopy } from './cache.js';
import { markFresh, modeOf } from './collections.js';
import { emit } from './events.js';
import { schedule, unschedule } from './polling.js';

export const LIVE_PROBE_MS = 5000;
const PROBE_TIMEOUT_MS = 3000;
const PROBE_CONFIRM_MS = 1000; // a failed probe is tried again this soon before it counts
// After an outage, the host answers but the listeners have not answered from the server this
// long after the reconnection: reconnect again (a reconnection made while the backend was still
// starting can leave the SDK in its own back-off, up to a minute: seen in CI).
export const RECONNECT_AGAIN_MS = 15 * 1000;

/** The probe's state, kept in `ctx.probe`. */
export function newProbe() {
  return { url: null, timer: null, down: false, working: false, paused: false, failed: 0,
    reconnectedAt: null };
}

/** The URL that says whether the SDK's Firestore host answers (Firestore bills nothing). */
export function sdkProbeUrl(db) {
  try {
    const settings = db?.toJSON?.().settings;
    if (!settings || typeof settings.host !== 'string') return null;
    return `${settings.ssl === false ? 'http' : 'https'}://${settings.host}/`;
  } catch {
    return null;
  }
}

/** After anything that may change the mode: stop or restart polling, emit, save. */
export function modeChanged(ctx, state, before, changed) {
  const after = modeOf(ctx, state);
  if (after === 'live') {
    unschedule(ctx, state);
    state.paused = false;
    if (before !== 'live') {
      state.source = 'firestore';
      state.serverSource = 'firestore';
      state.stale = false;
      markFresh(ctx, state, 'firestore');
      // The first probe at once, while the listeners prove the host answers: a probe that
      // fails then (blocked by a policy?) is never trusted.
      scheduleProbe(ctx, ctx.probe.working ? ctx.opts.liveProbeMs : 0);
    }
  } else if (before === 'live' && ctx.started && ctx.opts.pollMs > 0) {
    schedule(ctx, state, 0); // what changed meanwhile, through the function, now
  }
  if (changed || after !== before) emit(ctx, state);
  if (changed) saveCopy(ctx, state);
}

/** Apply `change` (to what every collection's mode depends on), then each one's consequences. */
function eachMode(ctx, change) {
  const before = new Map([...ctx.states.values()].map((state) => [state, modeOf(ctx, state)]));
  change();
  for (const [state, mode] of before) modeChanged(ctx, state, mode, false);
}

/** Probe Firestore's host in `delay` ms (unless a probe is pending or there is no URL). */
export function scheduleProbe(ctx, delay) {
  const { probe } = ctx;
  if (!probe.url || probe.timer !== null || ctx.opts.liveProbeMs <= 0) return;
  probe.paused = false;
  probe.timer = ctx.setTimeout(() => {
    probe.timer = null;
    runProbe(ctx);
  }, delay);
}

/** Cancel the pending probe. */
export function stopProbe(ctx) {
  if (ctx.probe.timer !== null) ctx.clearTimeout(ctx.probe.timer);
  ctx.probe.timer = null;
}

async function runProbe(ctx) {
  const { probe } = ctx;
  const listening = [...ctx.states.values()].some((state) => state.live.stops.length > 0);
  if (!ctx.started || !listening || !probe.url) return;
  if (ctx.document?.hidden) {
    probe.paused = true; // resumed by visibilitychange
    return;
  }
  const ok = await probeOnce(ctx, probe.url);
  if (ok) {
    probe.working = true;
    probe.failed = 0;
    if (probe.down) {
      // Live again once the listeners have answered from the server after reconnecting.
      const reconnects = Boolean(ctx.live?.sdk.disableNetwork && ctx.live?.sdk.enableNetwork);
      eachMode(ctx, () => {
        probe.down = false;
        if (reconnects) for (const state of ctx.states.values()) state.live.up = false;
      });
      await reconnect(ctx);
    } else if (probe.reconnectedAt !== null) {
      const back = [...ctx.states.values()].every((state) => state.live.stops.length === 0
        || state.live.up);
      if (back) probe.reconnectedAt = null;
      else if (ctx.now() - probe.reconnectedAt >= RECONNECT_AGAIN_MS) await reconnect(ctx);
    }
  } else if (!probe.working) {
    probe.url = null; // it never answered (blocked by a policy?): rely on the SDK alone
    return;
  } else if (!probe.down) {
    // Two failures in a row: one may be a busy moment.
    probe.failed += 1;
    if (probe.failed < 2) {
      scheduleProbe(ctx, PROBE_CONFIRM_MS);
      return;
    }
    eachMode(ctx, () => { probe.down = true; });
  }
  scheduleProbe(ctx, ctx.opts.liveProbeMs);
}

async function probeOnce(ctx, url) {
  const controller = new AbortController();
  const timer = ctx.setTimeout(() => controller.abort(), PROBE_TIMEOUT_MS);
  try {
    await ctx.fetch(url, {
      method: 'GET', mode: 'no-cors', cache: 'no-store', credentials: 'omit',
      signal: controller.signal,
    });
    return true;
  } catch {
    return false;
  } finally {
    ctx.clearTimeout(timer);
  }
}

/** Firestore is back: have the SDK reconnect now rather than after its backoff. */
async function reconnect(ctx) {
  const { sdk, db } = ctx.live ?? {};
  if (!sdk?.disableNetwork || !sdk?.enableNetwork) return;
  ctx.probe.reconnectedAt = ctx.now();
  try {
    await sdk.disableNetwork(db);
    await sdk.enableNetwork(db);
  } catch {
    // the listeners recover on the SDK's own schedule
  }
}
