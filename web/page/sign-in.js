/**
 * page/sign-in.js: who is signed in, and what they may do. Firebase Authentication's sign-in
 * (Google, email and password: the providers dashboard-config.js lists), the header's chip
 * (email, admin or viewer, Sign out), and the sentence a user without the admin claim reads,
 * with the exact command an admin runs to grant it.
 *
 * `access` is the one answer to "may this person change things?": the claims of their current
 * ID token (`getIdTokenResult`), updated whenever the SDK gets a new token (its hourly
 * refresh, a forced one after a 401, "Check my access again"). The page's parts subscribe to
 * it; `<body data-access="admin|viewer|signed-out|open">` hides what a viewer may not use.
 * The backend checks every call anyway: this only spares a person buttons that would fail.
 */

import { h } from '../ui/dom.js';
import { viewerSentence } from '../ui/explain.js';

const $ = (selector) => document.querySelector(selector);

/** `{ user, claims, admin, email, subscribe(fn) }`: the signed-in person, kept current. */
export function createAccess() {
  const listeners = new Set();
  const state = { user: null, claims: null, admin: false, email: null, known: false };
  return {
    get user() { return state.user; },
    get claims() { return state.claims; },
    get admin() { return state.admin; },
    get email() { return state.email; },
    get known() { return state.known; },
    /** A new user or token: `claims` are the token's (null: nobody signed in). */
    set(user, claims) {
      const before = state.known ? `${state.user?.uid}:${state.admin}` : null;
      Object.assign(state, { user, claims, known: true, admin: claims?.admin === true,
        email: claims?.email ?? user?.email ?? null });
      document.body.dataset.access = state.admin ? 'admin' : user ? 'viewer' : 'signed-out';
      if (`${state.user?.uid}:${state.admin}` !== before) for (const fn of listeners) fn(state);
    },
    /** `fn(state)` now and whenever the user or their admin claim changes. */
    subscribe(fn) {
      listeners.add(fn);
      if (state.known) fn(state);
      return () => listeners.delete(fn);
    },
  };
}

/** A sign-in failure of the Firebase SDK, as a sentence. */
export function signInProblem(error) {
  const code = String(error?.code ?? '');
  const sentences = {
    'auth/invalid-credential': 'Wrong email or password.',
    'auth/wrong-password': 'Wrong email or password.',
    'auth/user-not-found': 'Wrong email or password.',
    'auth/invalid-email': 'The email must be an email address (name@example.com).',
    'auth/missing-password': 'Type your password.',
    'auth/user-disabled': 'This account is disabled: ask an admin.',
    'auth/too-many-requests': 'Too many attempts: wait a minute, then try again.',
    'auth/network-request-failed': 'Firebase Authentication cannot be reached: check the '
      + 'connection (on the local stack: that make dev runs).',
    'auth/operation-not-allowed': 'This sign-in method is not turned on for the project '
      + '(Firebase console, Authentication, Sign-in method).',
    'auth/unauthorized-domain': `This page's domain (${location.hostname}) is not an authorized `
      + 'domain of the project (Firebase console, Authentication, Settings).',
    'auth/popup-blocked': 'The browser blocked the Google window: allow pop-ups for this page.',
    'auth/popup-closed-by-user': 'The Google window was closed before signing in.',
    'auth/user-token-expired': 'Your session ended (revoked, or the account changed): sign in again.',
  };
  return sentences[code] ?? `Sign-in failed: ${error?.message ?? error}`;
}

/**
 * Mount the sign-in card (`#sign-in`), the header's chip and Sign out (`#auth-chip`,
 * `#sign-out`) and the viewer's sentence (`#access-note`). `firebase`: page/firebase.js's
 * `{ auth, authSdk, web }`. `onSignOut()`: the page's own clean-up, before the SDK signs out.
 */
export function mountSignIn({ firebase, access, onSignOut }) {
  const { auth, authSdk, web } = firebase;
  const providers = web.providers ?? [];
  const card = $('#sign-in');
  const problem = h('p', { class: 'form-error', id: 'sign-in-error', role: 'alert', hidden: true });
  const say = (text) => { problem.textContent = text; problem.hidden = !text; };
  const parts = [h('h2', { text: 'Sign in' }),
    h('p', { class: 'muted', text: `Project ${web.projectId ?? '?'}${web.emulators?.auth ? ' · Auth emulator (local stack)' : ''}` })];
  if (providers.includes('google')) {
    const google = h('button', { type: 'button', class: 'primary', id: 'sign-in-google', text: 'Sign in with Google' });
    google.addEventListener('click', async () => {
      say('');
      try {
        await authSdk.signInWithPopup(auth, new authSdk.GoogleAuthProvider());
      } catch (error) {
        say(signInProblem(error));
      }
    });
    parts.push(google);
  }
  if (providers.includes('password')) {
    const email = h('input', { id: 'sign-in-email', name: 'email', type: 'email', autocomplete: 'username', required: true });
    const password = h('input', { id: 'sign-in-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
    const form = h('form', { id: 'sign-in-form', noValidate: true },
      h('div', { class: 'field' }, h('label', { for: 'sign-in-email', text: 'Email' }), email),
      h('div', { class: 'field' }, h('label', { for: 'sign-in-password', text: 'Password' }), password),
      h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'primary', id: 'sign-in-submit', text: 'Sign in' })));
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      say('');
      try {
        await authSdk.signInWithEmailAndPassword(auth, email.value.trim(), password.value);
        password.value = '';
      } catch (error) {
        say(signInProblem(error));
      }
    });
    parts.push(form);
  }
  if (!providers.length) {
    parts.push(h('p', { text: 'No sign-in method is configured: list one in web/dashboard-config.js (providers).' }));
  }
  parts.push(problem);
  card.replaceChildren(h('div', { class: 'card sign-in-card' }, ...parts));

  const chip = $('#auth-chip');
  const signOut = $('#sign-out');
  signOut.addEventListener('click', async () => {
    signOut.disabled = true;
    await onSignOut?.();
    await authSdk.signOut(auth);
  });
  const note = $('#access-note');
  const recheck = h('button', { type: 'button', class: 'link', id: 'access-recheck', text: 'Check my access again' });
  const noteText = h('span', { id: 'access-note-text' });
  const checked = h('span', { class: 'muted', id: 'access-checked' });
  note.replaceChildren(noteText, ' ', recheck, ' ', checked);
  recheck.addEventListener('click', async () => {
    checked.textContent = 'checking…';
    try {
      await auth.currentUser?.getIdToken(true); // a new token: the claims an admin just granted
      checked.textContent = access.admin ? '' : `Still no admin claim (checked ${new Date().toLocaleTimeString()}).`;
    } catch (error) {
      checked.textContent = signInProblem(error);
    }
  });

  access.subscribe(({ user, admin, email }) => {
    card.hidden = Boolean(user);
    chip.hidden = !user;
    signOut.hidden = !user;
    signOut.disabled = false;
    chip.textContent = user ? `${email ?? user.uid} · ${admin ? 'admin' : 'viewer (no admin claim)'}` : '';
    chip.title = user ? `Signed in with ${user.providerData?.[0]?.providerId ?? 'Firebase'}` : '';
    note.hidden = !user || admin;
    noteText.textContent = user && !admin ? viewerSentence(email) : '';
    if (admin) checked.textContent = '';
  });
}

/** Keep `access` current from the SDK: every new ID token (sign-in, refresh, sign-out). */
export function watchUser({ auth, authSdk }, access) {
  authSdk.onIdTokenChanged(auth, async (user) => {
    if (!user) {
      access.set(null, null);
      return;
    }
    try {
      const { claims } = await user.getIdTokenResult();
      access.set(user, claims);
    } catch {
      access.set(user, { email: user.email });
    }
  });
}
