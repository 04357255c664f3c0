/**
 * ui/explain.js: the page's one error explainer. Any failure of a call to the backend (an
 * `ApiError` of web/client/errors.js: status 0 when no answer came, else the function's own
 * `{ error: { code, message, details } }`) as what happened and what to do, in plain words.
 */

/**
 * What went wrong, for a person: `{ what, todo }`. `context.url` names the function called;
 * `context.written` tells whether the run may have written something before it stopped.
 */
export function explain(error, context = {}) {
  const message = error?.message ?? String(error);
  if (typeof error?.status !== 'number') return { what: message, todo: '' }; // not a call's
  const code = error.code ?? '';
  const { status } = error;
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
      todo: 'Migration, writes and the backend checks are for admins. An admin grants the '
        + `claim with: ${grantCommand(context.email || 'YOUR_EMAIL')} (then "Check `
        + 'my access again", or sign in again).' };
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
    precondition_failed: {
      what: `Someone changed this document meanwhile (${message}).`,
      todo: 'Reload it, then make your change again.',
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

/** Why live updates are off: a refusal of the rules says who may listen, in a sentence, not
 * the rules engine's own words ("Property admin is undefined on object. for 'list' @ L73");
 * any other error, its message. */
export function liveOffSentence(error) {
  const code = error?.cause?.code ?? error?.code; // the SDK's, or the client's wrapping of it
  if (code === 'permission-denied' || code === 'live_permission_denied') {
    return 'only admins may listen to Firestore (the rules refuse this account: it has no admin '
      + 'claim), so the page polls the functions';
  }
  return String(error?.message ?? error);
}

/** The command an admin runs to give `email` the admin claim. */
export function grantCommand(email) {
  return `python -m ops admin grant ${email || 'EMAIL'}`;
}

/** The sentence for a signed-in user without the admin claim (what they may not do: `what`). */
export function viewerSentence(email, what = 'add, edit or delete records, migrate or run the backend checks') {
  return `Signed in as ${email || 'a user'} without the admin claim: you can see what the `
    + `rules let you read, but not ${what}. An admin grants the claim with: `
    + `${grantCommand(email)}`;
}
