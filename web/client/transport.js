/**
 * client/transport.js: the one way the page calls the backend, shared by the data client and
 * the admin tools (web/admin/api.js).
 *
 * Every request: `Authorization: Bearer <ID token>` when `auth` (a Firebase Auth instance: its
 * `currentUser.getIdToken`) or `getIdToken` is given (asked before each request, and once more
 * with `forceRefresh = true` after a 401, then the request is sent again once), a deadline (an
 * AbortController, `timeoutMs`), no cookies (`credentials: 'omit'`: the ID token is the
 * credential). A request that gets no answer throws an `ApiError` with
 * status 0 and code `network_error` or `timeout`; a token that cannot be had throws
 * `token_unavailable`. Any answer, 2xx or not, is returned as is: `errorFromResponse`
 * (client/errors.js) makes the error of a failed one.
 */

import { ApiError } from './errors.js';
import { tokenIdentity } from './identity.js';

export { tokenIdentity } from './identity.js'; // who a token names (client/identity.js)

export const REQUEST_TIMEOUT_MS = 15 * 1000;
export const OFFLINE_MESSAGE = 'you are offline: nothing was sent and nothing was saved; '
  + 'try again when the network is back';

/**
 * The `getIdToken(forceRefresh)` of a Firebase Auth instance (`getAuth(app)` of the Web SDK,
 * injected: this module imports nothing): the signed-in user's ID token, refreshed by the SDK
 * when it nears expiry, fresh when forced; none while nobody is signed in.
 */
export function idTokenOf(auth) {
  return async (forceRefresh) => auth.currentUser?.getIdToken(forceRefresh) ?? null;
}

/**
 * A sender of requests. Options: `fetch`, `auth` (a Firebase Auth instance) or
 * `getIdToken(forceRefresh)` (async; neither: no Authorization header), `timeoutMs` (the
 * default deadline; 0: none), `setTimeout` and `clearTimeout` (the deadline's timers: the
 * globals by default).
 */
export function createTransport(options = {}) {
  if (typeof (options.fetch ?? globalThis.fetch) !== 'function') throw new TypeError('no fetch available');
  const fetchImpl = options.fetch ?? ((...args) => globalThis.fetch(...args));
  const getIdToken = typeof options.getIdToken === 'function' ? options.getIdToken
    : options.auth ? idTokenOf(options.auth) : null;
  const defaultTimeoutMs = options.timeoutMs ?? REQUEST_TIMEOUT_MS;
  const setTimer = options.setTimeout ?? ((fn, ms) => globalThis.setTimeout(fn, ms));
  const clearTimer = options.clearTimeout ?? ((id) => globalThis.clearTimeout(id));

  let lastToken; // the token of the latest request (undefined before the first)

  async function authorization(forceRefresh) {
    if (!getIdToken) return null;
    let token;
    try {
      token = await getIdToken(forceRefresh);
      lastToken = token;
    } catch (error) {
      throw new ApiError(`could not get an ID token: ${error?.message ?? error}`,
        { status: 401, code: 'token_unavailable', cause: error });
    }
    return token ? `Bearer ${token}` : null;
  }

  async function attempt(url, request, forceRefresh) {
    const { method = 'GET', body, cache = 'no-store', timeoutMs = defaultTimeoutMs } = request;
    if (method !== 'GET' && globalThis.navigator?.onLine === false) {
      // A write or a migration is refused at once, never queued: the page keeps the input.
      throw new ApiError(OFFLINE_MESSAGE, { status: 0, code: 'offline' });
    }
    const headers = { Accept: 'application/json', ...request.headers };
    const raw = body === undefined || (typeof Blob === 'function' && body instanceof Blob);
    if (!raw) headers['Content-Type'] = 'application/json';
    const bearer = await authorization(forceRefresh);
    if (bearer) headers.Authorization = bearer;
    const controller = new AbortController();
    const timer = timeoutMs > 0 ? setTimer(() => controller.abort(), timeoutMs) : null;
    request.onAttempt?.();
    try {
      return await fetchImpl(url, {
        method, headers, body: raw ? body : JSON.stringify(body), cache, credentials: 'omit',
        signal: controller.signal,
      });
    } catch (error) {
      const timedOut = controller.signal.aborted;
      throw new ApiError(timedOut ? `no answer from ${url} within ${timeoutMs} ms`
        : `cannot reach ${url}: ${error?.message ?? error}`,
      { status: 0, code: timedOut ? 'timeout' : 'network_error', cause: error });
    } finally {
      if (timer !== null) clearTimer(timer);
    }
  }

  /**
   * Send one request and resolve to its Response. `request`: `method`, `body` (JSON-encoded
   * unless a Blob such as a File), `headers`, `cache` (the fetch cache mode, `no-store` by
   * default), `timeoutMs`, `onAttempt` (called before each send: counts calls).
   */
  async function send(url, request = {}) {
    const response = await attempt(url, request, false);
    if (response.status !== 401 || !getIdToken) return response;
    return attempt(url, request, true); // an expired token: a fresh one, once
  }

  /**
   * Who the token names (`tokenIdentity`), or null: no token, or none to be had. The token of
   * the latest request when there was one (no extra call to the token source), else one asked for.
   */
  async function identity() {
    if (!getIdToken) return null;
    try {
      return tokenIdentity(lastToken !== undefined ? lastToken : await getIdToken(false));
    } catch {
      return null;
    }
  }

  return { send, getIdToken, identity };
}
