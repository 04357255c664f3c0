/**
 * client/timestamps.js: RFC 3339 timestamps as the backend writes them (UTC, `Z`, up to
 * nanoseconds), compared without losing the digits a JavaScript Date drops.
 */

/**
 * Compare two RFC 3339 timestamps as the backend writes them (UTC, `Z`, up to nanoseconds):
 * negative, zero or positive. Unparseable values sort first.
 */
export function compareTimestamps(a, b) {
  const pa = splitTimestamp(a);
  const pb = splitTimestamp(b);
  if (pa === null || pb === null) return (pa === null ? 0 : 1) - (pb === null ? 0 : 1);
  if (pa.ms !== pb.ms) return pa.ms < pb.ms ? -1 : 1;
  return pa.frac < pb.frac ? -1 : pa.frac > pb.frac ? 1 : 0;
}

/** `{ ms, frac }`: the milliseconds since the epoch and the 9-digit fraction, or null. */
export function splitTimestamp(text) {
  if (typeof text !== 'string') return null;
  const match = /^(.*?:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/i.exec(text.trim());
  if (!match) {
    const ms = Date.parse(text);
    return Number.isNaN(ms) ? null : { ms, frac: '000000000' };
  }
  const ms = Date.parse(match[1] + match[3]);
  if (Number.isNaN(ms)) return null;
  return { ms, frac: (match[2] || '').padEnd(9, '0').slice(0, 9) };
}

/** `{ seconds, nanoseconds }` (a Firestore Timestamp) as the read API writes it. */
export function formatTimestamp({ seconds, nanoseconds }) {
  const text = new Date(seconds * 1000).toISOString().slice(0, 19);
  const fraction = String(nanoseconds).padStart(9, '0').replace(/0+$/, '');
  return `${text}${fraction ? `.${fraction}` : ''}Z`;
}
