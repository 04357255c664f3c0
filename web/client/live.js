/**
 * client/live.js: live mode. After the first answer of the read function, two Firestore
 * listeners per collection (the Firebase Web SDK given as `live: { sdk, db }`):
 * `updatedAt > asOf` on the collection and `recordedAt > asOf` on its tombstones
 * (`_tombstones/<name>/ids`) bring every change within milliseconds, and polling stops
 * (client/mode.js). When they fail (rules, errors) the client polls again at once and retries
 * the listeners later (`liveRetryMs`, doubling up to 10 minutes).
 */

import { isLive, mergeItem, modeOf } from './collections.js';
import { ApiError } from './errors.js';
import { dispatch } from './events.js';
import { encodeFirestoreDocument, encodeFirestoreValue } from './firestore-encoding.js';
import { modeChanged, sdkProbeUrl } from './mode.js';
import { compareTimestamps, splitTimestamp } from './timestamps.js';
import { deletedHere } from './writes.js';

export const LIVE_RETRY_MS = 30 * 1000;
export const TOMBSTONES = '_tombstones';
const LIVE_RETRY_MAX_MS = 10 * 60 * 1000;
// Google's emulator answers each change with a RESET, which the SDK reports as a moment
// "from cache": only a longer spell counts as lost.
const LIVE_GRACE_MS = 5000;
// The listeners start this much before the read's asOf: a write whose server timestamp is
// earlier than the read but that commits after it (the emulator: up to ~0.4 s) is not missed.
const LIVE_SLACK_MS = 2000;
// A snapshot's asOf is when it was written; a change reaches it through the publisher up to
// PUBLISH_WAIT_S (60 s) later: listening from a snapshot answer starts that much earlier.
const LIVE_SNAPSHOT_SLACK_MS = 60 * 1000;

/** Take the `live` option (`{ sdk, db }` or a promise of it); listen once it is there. */
export function useLive(ctx, live, probeUrl) {
  Promise.resolve(live).then((dependency) => {
    const { sdk, db } = dependency ?? {};
    const needed = ['collection', 'query', 'where', 'onSnapshot', 'Timestamp'];
    if (!sdk || !db || needed.some((name) => !sdk[name])) {
      throw new TypeError(`live needs { sdk, db }: the firebase/firestore module (${needed
        .join(', ')}) and a Firestore instance`);
    }
    ctx.live = { sdk, db };
    ctx.probe.url = probeUrl || sdkProbeUrl(db);
    for (const state of ctx.states.values()) maybeListen(ctx, state);
  }).catch((error) => {
    // No SDK (blocked, not configured): polling stays, and says why.
    ctx.liveError = error;
  });
}

/** Why a collection is not live (null when it is, or when live mode is not configured). */
export function liveProblem(ctx, state) {
  const error = state.live.error ?? ctx.liveError;
  if (error || !ctx.live || isLive(ctx, state)) return error ?? null;
  if (ctx.probe.down) return new Error(`Firestore cannot be reached (${ctx.probe.url})`);
  return new Error('the listeners have not answered from the server yet');
}

/**
 * Start the listeners once the copy has a cursor: the asOf of an answer of the function (or
 * of the tab's saved copy of one), a time up to which the copy holds every change, as the
 * next poll would assume. So live mode also runs while the functions are down.
 */
export function maybeListen(ctx, state) {
  const { live } = state;
  if (!ctx.started || !ctx.live || live.stops.length > 0 || live.retryTimer !== null
      || !state.loaded || !state.cursor) {
    return;
  }
  const { sdk, db } = ctx.live;
  const anchor = splitTimestamp(state.cursor);
  if (anchor === null) return;
  const slack = state.serverSource === 'firestore' ? LIVE_SLACK_MS : LIVE_SNAPSHOT_SLACK_MS;
  const since = sdk.Timestamp.fromMillis(Math.max(0, anchor.ms - slack));
  live.current = { docs: false, tombstones: false };
  live.answered = { docs: false, tombstones: false };
  live.generation += 1;
  const { generation } = live;
  // Answers of listeners already stopped (the other one's error, ...) are ignored.
  const listen = (kind, ref, field, apply) => sdk.onSnapshot(
    sdk.query(ref, sdk.where(field, '>', since)), { includeMetadataChanges: true },
    (snapshot) => generation === live.generation
      && onLiveSnapshot(ctx, state, kind, snapshot, apply),
    (error) => generation === live.generation && onLiveError(ctx, state, error));
  try {
    live.stops.push(listen('docs', sdk.collection(db, state.name), 'updatedAt',
      (changes) => applyDocChanges(ctx, state, changes)));
    live.stops.push(listen('tombstones', sdk.collection(db, TOMBSTONES, state.name, 'ids'),
      'recordedAt', (changes) => applyTombstones(ctx, state, changes)));
  } catch (error) {
    onLiveError(ctx, state, error);
  }
}

function onLiveSnapshot(ctx, state, kind, snapshot, apply) {
  const { live } = state;
  const before = modeOf(ctx, state);
  const changes = snapshot.docChanges();
  // Billed as Firestore bills a listener: each document added or changed, and one read for
  // an empty first answer. (Google's emulator resends the whole result after every change;
  // the SDK reports only what changed, as production sends it.)
  let reads = changes.filter((change) => change.type !== 'removed').length;
  if (!snapshot.metadata.fromCache && !live.answered[kind]) {
    live.answered[kind] = true;
    if (snapshot.size === 0) reads += 1;
  }
  state.usage.listenReads += reads;
  const changed = changes.length > 0 && apply(changes);
  live.current[kind] = !snapshot.metadata.fromCache;
  if (live.current.docs && live.current.tombstones) {
    if (live.graceTimer !== null) ctx.clearTimeout(live.graceTimer);
    live.graceTimer = null;
    live.up = true;
    live.failures = 0;
    live.error = null;
  } else if (live.up && live.graceTimer === null) {
    live.graceTimer = ctx.setTimeout(() => {
      live.graceTimer = null;
      if (live.current.docs && live.current.tombstones) return;
      const was = modeOf(ctx, state);
      live.up = false;
      modeChanged(ctx, state, was, false);
    }, LIVE_GRACE_MS);
  }
  modeChanged(ctx, state, before, changed);
}

/** `updatedAt > asOf` on the collection: added and changed documents are merged; one that
 * leaves the result was deleted (updatedAt only grows). */
function applyDocChanges(ctx, state, changes) {
  const { sdk } = ctx.live;
  let changed = false;
  for (const change of changes) {
    const item = encodeFirestoreDocument(change.doc.id, change.doc.data(), sdk);
    if (change.type !== 'removed') {
      if (!deletedHere(state, item)) changed = mergeItem(state, item) || changed;
    } else {
      changed = removeUnlessNewer(state, item.id, item.updatedAt) || changed;
    }
  }
  return changed;
}

/** `recordedAt > asOf` on the tombstones: each one deletes its document, unless the copy
 * holds a version written after the deletion (the document was created again). */
function applyTombstones(ctx, state, changes) {
  const { sdk } = ctx.live;
  let changed = false;
  for (const change of changes) {
    if (change.type === 'removed') continue; // pruned
    const data = change.doc.data();
    const deletedAt = encodeFirestoreValue(data.deletedAt ?? data.recordedAt, sdk);
    changed = removeUnlessNewer(state, change.doc.id, deletedAt) || changed;
  }
  return changed;
}

function removeUnlessNewer(state, id, version) {
  const known = state.items.get(id);
  if (!known) return false;
  if (known.updatedAt && typeof version === 'string'
      && compareTimestamps(known.updatedAt, version) > 0) return false;
  state.items.delete(id);
  state.docEtags.delete(id);
  return true;
}

function onLiveError(ctx, state, error) {
  const before = modeOf(ctx, state);
  const { live } = state;
  stopListening(ctx, state);
  live.failures += 1;
  live.error = new ApiError(`live updates stopped: ${error?.message ?? error}`, {
    status: error?.code === 'permission-denied' ? 403 : 0,
    code: `live_${String(error?.code ?? 'error').replace(/[^a-z]+/gi, '_')}`,
    cause: error,
  });
  const delay = Math.min(LIVE_RETRY_MAX_MS, ctx.opts.liveRetryMs * 2 ** (live.failures - 1));
  live.retryTimer = ctx.setTimeout(() => {
    live.retryTimer = null;
    maybeListen(ctx, state); // else after the next answer of the function from Firestore
  }, delay);
  modeChanged(ctx, state, before, false);
  dispatch(ctx, 'dataError', { collection: state.name, error: live.error,
    failures: live.failures });
}

/** Stop the collection's listeners (live is down until they answer again). */
export function stopListening(ctx, state) {
  const { live } = state;
  live.generation += 1;
  for (const stop of live.stops.splice(0)) {
    try {
      stop();
    } catch {
      // already stopped
    }
  }
  if (live.graceTimer !== null) ctx.clearTimeout(live.graceTimer);
  live.graceTimer = null;
  live.up = false;
}

/** `stop()`: the listeners and their pending retry. */
export function stopLive(ctx, state) {
  stopListening(ctx, state);
  if (state.live.retryTimer !== null) ctx.clearTimeout(state.live.retryTimer);
  state.live.retryTimer = null;
}
