/**
 * client/errors.js: the one error shape of every call to the backend, and how an HTTP answer
 * becomes one.
 *
 * `ApiError`: `.status` (0 when no answer came), `.code`, `.message`, `.details`,
 * `.retryAfterMs`. The codes are the function's own (`{ error: { code, message, details } }`),
 * else `http_<status>`; without an answer: `network_error` (the request failed) or `timeout`
 * (no answer within the deadline); `token_unavailable` (getIdToken threw), `bad_response` (a
 * 2xx answer that is not what the API promises), `client_error` (a bug or an odd value caught
 * on the way). A 400 with field errors is a `ValidationError`.
 */

/** A failed call to the backend: HTTP status (0 when unreachable), error code and message. */
export class ApiError extends Error {
  constructor(message, { status = 0, code = 'error', details = undefined, retryAfterMs = undefined,
    cause = undefined } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.details = details;
    this.retryAfterMs = retryAfterMs;
  }

  /** Worth trying again later: unreachable, timed out, rate-limited or a server error. */
  get retryable() {
    return this.status === 0 || this.status === 408 || this.status === 429 || this.status >= 500;
  }
}

/** A 400 `validation_failed`: `.fields` lists every field error as `{ field, message }`. */
export class ValidationError extends ApiError {
  constructor(message, options = {}) {
    super(message, options);
    this.name = 'ValidationError';
    const fields = options.details && Array.isArray(options.details.fields)
      ? options.details.fields : [];
    this.fields = fields
      .filter((entry) => entry && typeof entry === 'object')
      .map((entry) => ({ field: String(entry.field ?? ''), message: String(entry.message ?? '') }));
  }

  /** `{ field: message }`, the first message of each field. */
  get byField() {
    const out = {};
    for (const { field, message } of this.fields) {
      if (!(field in out)) out[field] = message;
    }
    return out;
  }
}

/** `error` as an ApiError (anything else thrown on the way is a `client_error`). */
export function asApiError(error) {
  return error instanceof ApiError ? error
    : new ApiError(String(error?.message ?? error), { code: 'client_error', cause: error });
}

/** The `Retry-After` of an answer in milliseconds (seconds or an HTTP date), else undefined. */
function retryAfterMs(response) {
  const raw = response.headers.get('Retry-After');
  if (!raw) return undefined;
  const seconds = Number(raw);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(raw);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

/** The ApiError (or ValidationError) of a non-2xx answer, from its JSON error body. */
export async function errorFromResponse(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const error = body && typeof body.error === 'object' && body.error ? body.error : {};
  const code = typeof error.code === 'string' ? error.code : `http_${response.status}`;
  const message = typeof error.message === 'string' && error.message
    ? error.message : `HTTP ${response.status}`;
  const options = {
    status: response.status, code, details: error.details, retryAfterMs: retryAfterMs(response),
  };
  if (response.status === 400 && (code === 'validation_failed'
      || (error.details && Array.isArray(error.details.fields)))) {
    return new ValidationError(message, options);
  }
  return new ApiError(message, options);
}
