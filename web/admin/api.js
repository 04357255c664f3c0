/**
 * admin/api.js: the admin tools' calls to the backend (the migration panel, the status page),
 * through the data client's transport (web/client/transport.js): the admin's ID token, a
 * deadline on every request, one retry of a 401 with a refreshed token, and the one error
 * shape (`ApiError`, status 0 when no answer came).
 */

import { errorFromResponse } from '../client/errors.js';
import { createTransport } from '../client/transport.js';

export const DEFAULT_TIMEOUT_MS = 15 * 1000;
// Backward-compatible alias: the admin tools called a request that got no answer
// `unreachable` before they shared the data client's transport (`network_error`).
const ADMIN_CODES = { network_error: 'unreachable' };

/**
 * A caller of the backend's admin routes.
 * @param {{ baseUrl: string, auth?: object, getIdToken?: (force: boolean) => Promise<string|undefined>,
 *   fetch?: typeof fetch, now?: () => number, timeoutMs?: number }} options (`auth`: a
 *   Firebase Auth instance, as the data client takes it)
 */
export function createAdminApi(options) {
  const base = String(options.baseUrl ?? '').replace(/\/+$/, '');
  const now = options.now ?? (() => performance.now());
  const transport = createTransport({
    fetch: options.fetch ?? ((...args) => globalThis.fetch(...args)),
    getIdToken: options.getIdToken, auth: options.auth,
    timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
  });
  const { getIdToken } = transport;

  /** The full URL of `path` with `query` (entries whose value is undefined are left out). */
  function url(path, query = {}) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) {
      if (value !== undefined && value !== null && value !== '') params.set(key, String(value));
    }
    const qs = params.toString();
    return `${base}${path}${qs ? `?${qs}` : ''}`;
  }

  /**
   * One request: `{ status, body, headers, ms }` for a 2xx answer (body parsed when JSON),
   * else throws `ApiError`. `body`: a File or Blob is sent as is, anything else as JSON.
   */
  async function call(method, path, { query, body, timeoutMs } = {}) {
    const started = now();
    let response;
    try {
      response = await transport.send(url(path, query), { method, body, timeoutMs });
    } catch (error) {
      if (ADMIN_CODES[error.code]) error.code = ADMIN_CODES[error.code];
      throw error;
    }
    if (!response.ok) throw await errorFromResponse(response);
    const text = await response.text();
    let parsed = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      parsed = null;
    }
    return { status: response.status, body: parsed, headers: response.headers, ms: now() - started };
  }

  return { call, url, baseUrl: base, getIdToken };
}

/** The claims of a JWT, for display only (never trusted: the functions verify the token). */
export function tokenClaims(token) {
  try {
    const part = String(token).split('.')[1];
    const text = atob(part.replace(/-/g, '+').replace(/_/g, '/'));
    const bytes = Uint8Array.from(text, (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return null;
  }
}
