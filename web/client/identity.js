/**
 * client/identity.js: who an ID token names, read from its payload, with no imports: the data
 * client's transport (client/transport.js) and the demo page's early start (page/early-read.js,
 * on the path before the first paint, where every import is one more file) both use it.
 */

/**
 * Who an ID token names: `{ uid, admin }` from its payload's `sub` and `admin` claims, or null
 * (no token, not a JWT). Not a verification (the functions verify): it only decides whose
 * copy of the data this browser may show and keep.
 */
export function tokenIdentity(token) {
  if (typeof token !== 'string') return null;
  const payload = token.split('.')[1];
  if (!payload) return null;
  try {
    const base64 = payload.replace(/-/g, '+').replace(/_/g, '/');
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    if (typeof claims?.sub !== 'string' || claims.sub === '') return null;
    return { uid: claims.sub, admin: claims.admin === true };
  } catch {
    return null;
  }
}
