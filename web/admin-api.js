/**
 * admin-api.js: what the migration panel and the status page share (no build step).
 *
 * - `createAdminApi({ baseUrl, getIdToken })`: calls to the functions with the admin's ID token
 *   and a deadline on every request; non-2xx answers throw the client's `ApiError` (status 0:
 *   unreachable or timed out), with the function's `{ error: { code, message, details } }`.
 * - `explain(error, { url })`: what happened and what to do, in plain words, for the page.
 * - small formatting helpers and `h()`, a DOM element builder.
 */

import { ApiError } from './data-client.js';

export const DEFAULT_TIMEOUT_MS = 15 * 1000;

/**
 * A caller of the backend's admin routes.
 * @param {{ baseUrl: string, getIdToken?: (force: boolean) => Promise<string|undefined>,
 *   fetch?: typeof fetch, now?: () => number, timeoutMs?: number }} options
 */
export function createAdminApi(options) {
  const base = String(options.baseUrl ?? '').replace(/\/+$/, '');
  const fetchImpl = options.fetch ?? ((...args) => globalThis.fetch(...args));
  const getIdToken = typeof options.getIdToken === 'function' ? options.getIdToken : null;
  const now = options.now ?? (() => performance.now());
  const defaultTimeout = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;

  /** The full URL of `path` with `query` (entries whose value is undefined are left out). */
  function url(path, query = {}) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) {
      if (value !== undefined && value !== null && value !== '') params.set(key, String(value));
    }
    const qs = params.toString();
    return `${base}${path}${qs ? `?${qs}` : ''}`;
  }

  async function once(method, target, { body, timeoutMs, force }) {
    const headers = {};
    const token = getIdToken ? await getIdToken(force) : undefined;
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined && !(body instanceof Blob)) headers['Content-Type'] = 'application/json';
    const controller = new AbortController();
    const timer = timeoutMs > 0 ? setTimeout(() => controller.abort(), timeoutMs) : null;
    const started = now();
    try {
      const response = await fetchImpl(target, {
        method, headers, body, signal: controller.signal, credentials: 'omit', cache: 'no-store',
      });
      const text = await response.text();
      return { response, text, ms: now() - started };
    } catch (error) {
      const timedOut = controller.signal.aborted;
      throw new ApiError(timedOut ? `no answer within ${Math.round(timeoutMs / 1000)} s`
        : `the request failed (${error?.message ?? error})`,
      { status: 0, code: timedOut ? 'timeout' : 'unreachable', cause: error });
    } finally {
      if (timer !== null) clearTimeout(timer);
    }
  }

  /**
   * One request: `{ status, body, headers, ms }` for a 2xx answer (body parsed when JSON),
   * else throws `ApiError`. A 401 is retried once with a refreshed token.
   */
  async function call(method, path, { query, body, timeoutMs = defaultTimeout } = {}) {
    const target = url(path, query);
    let attempt = await once(method, target, { body, timeoutMs, force: false });
    if (attempt.response.status === 401 && getIdToken) {
      attempt = await once(method, target, { body, timeoutMs, force: true });
    }
    const { response, text, ms } = attempt;
    let parsed = null;
    if (text) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = null;
      }
    }
    if (!response.ok) {
      const error = parsed?.error ?? {};
      throw new ApiError(error.message ?? `HTTP ${response.status}`, {
        status: response.status, code: error.code ?? `http_${response.status}`,
        details: error.details,
      });
    }
    return { status: response.status, body: parsed, headers: response.headers, ms };
  }

  return { call, url, baseUrl: base, getIdToken };
}

/**
 * What went wrong, for a person: `{ what, todo }`. `context.url` names the function called;
 * `context.written` tells whether the run may have written something before it stopped.
 */
export function explain(error, context = {}) {
  const message = error?.message ?? String(error);
  const code = error?.code ?? '';
  const status = error?.status ?? 0;
  const kept = context.written
    ? 'What was written so far is kept: Resume continues from there.'
    : 'Nothing was written.';
  const details = error?.details ?? {};
  if (status === 0) {
    return {
      what: `The function at ${context.url ?? 'the API'} cannot be reached: ${message}.`,
      todo: 'Check that the functions are deployed (or that make dev runs), that this page '
        + 'points at them (<meta name="dashboard-api">) and that its origin is in '
        + `ALLOWED_ORIGINS; then try again. ${'written' in context ? kept : ''}`.trim(),
    };
  }
  if (status === 401) {
    return { what: `You are not signed in, or your sign-in has expired (${message}).`,
      todo: 'Sign in again, then retry.' };
  }
  if (status === 403) {
    return { what: `Your account may not do this: ${message}.`,
      todo: 'Migration and the backend checks are for admins. An admin can grant the claim '
        + 'with `python -m functions admin grant YOUR_EMAIL`; sign in again afterwards.' };
  }
  const byCode = {
    invalid_json: {
      what: `The file is not valid JSON: ${message}.`,
      todo: `${details.line ? `Fix it at line ${details.line}, column ${details.column}, or `
        : 'Fix it, or '}export it again, and retry. ${kept}`,
    },
    invalid_shape: {
      what: `The file is JSON, but not a list of records: ${message}.`,
      todo: 'It must be an array of records, an object wrapping one ({"users": [...]}) or an '
        + `object keyed by id. ${kept}`,
    },
    unknown_collection: {
      what: `The backend does not serve this collection: ${message}.`,
      todo: 'Pick a configured collection, or add it to COLLECTIONS (with its '
        + `schemas/<name>.schema.json) and deploy. ${kept}`,
    },
    payload_too_large: {
      what: `The file is larger than the function accepts in a request: ${message}.`,
      todo: 'Upload it to Cloud Storage (gcloud storage cp FILE gs://BUCKET/PATH) and migrate '
        + `it by its gs:// address. ${kept}`,
    },
    source_not_found: { what: `${message}.`, todo: `Check the gs:// address. ${kept}` },
    invalid_source: { what: `${message}.`, todo: `Choose a file or a gs:// address. ${kept}` },
    run_mismatch: {
      what: `This run was started with another file or other options (${message}).`,
      todo: 'Choose the file the run started with, or start a new run.',
    },
    run_in_progress: {
      what: `This run is in progress elsewhere (another tab or process): ${message}.`,
      todo: 'Its progress shows here; wait for it to end.',
    },
  };
  if (byCode[code]) return byCode[code];
  if (status === 503) {
    return { what: `The backend is unavailable: ${message}.`,
      todo: `Try again in a minute. ${context.written === false ? 'Nothing was written.' : kept}` };
  }
  return { what: `${message} (HTTP ${status}, ${code}).`,
    todo: context.written ? kept : 'Try again; if it persists, copy the status page for support.' };
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

const integer = new Intl.NumberFormat('en-US');

/** 1234 -> "1,234". */
export function formatCount(value) {
  return Number.isFinite(value) ? integer.format(value) : '—';
}

/** Bytes as "12.3 MB" (decimal units, as file managers show them). */
export function formatBytes(bytes) {
  if (!Number.isFinite(bytes)) return '?';
  const units = ['bytes', 'KB', 'MB', 'GB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return unit === 0 ? `${value} bytes` : `${value.toFixed(1)} ${units[unit]}`;
}

/** Seconds as "0:01:05" (hours:minutes:seconds), "—" when unknown. */
export function formatDuration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return '—';
  const s = Math.round(seconds);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, '0');
  return `${Math.floor(s / 3600)}:${mm}:${String(s % 60).padStart(2, '0')}`;
}

/** An age in milliseconds as "12 s", "3 min", "2 h", "4 d". */
export function formatAge(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 90) return `${s} s`;
  if (s < 90 * 60) return `${Math.round(s / 60)} min`;
  if (s < 48 * 3600) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} d`;
}

/**
 * A DOM element: `h('td', { class: 'num', text: '3' }, child, ...)`. Attributes named `data-*`,
 * `aria-*` and a few others are set as attributes, the rest as properties.
 */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else if (/^(data-|aria-)|^(title|type|for|role|href|download|name|value|accept)$/.test(key)) {
      node.setAttribute(key, value === true ? '' : value);
    } else node[key] = value;
  }
  for (const child of children.flat()) if (child != null && child !== false) node.append(child);
  return node;
}
