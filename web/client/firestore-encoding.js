/**
 * client/firestore-encoding.js: documents of the Firebase Web SDK (live mode) in the JSON the
 * read API answers with (shared/encoding.py), so both paths fill the same copy.
 */

import { formatTimestamp } from './timestamps.js';

/**
 * A Firestore value from the Web SDK as the read API encodes it (shared/encoding.py):
 * timestamps as RFC 3339 UTC strings (fraction only when present), GeoPoints as
 * `{ latitude, longitude }`, references as document paths, bytes as base64, NaN and the
 * infinities as strings.
 */
export function encodeFirestoreValue(value, sdk) {
  if (value === null || value === undefined || typeof value === 'boolean'
      || typeof value === 'string') return value ?? null;
  if (typeof value === 'number') {
    if (Number.isNaN(value)) return 'NaN';
    if (!Number.isFinite(value)) return value > 0 ? 'Infinity' : '-Infinity';
    return value;
  }
  if (Array.isArray(value)) return value.map((item) => encodeFirestoreValue(item, sdk));
  if (sdk.Timestamp && value instanceof sdk.Timestamp) return formatTimestamp(value);
  if (sdk.GeoPoint && value instanceof sdk.GeoPoint) {
    return { latitude: value.latitude, longitude: value.longitude };
  }
  if (sdk.DocumentReference && value instanceof sdk.DocumentReference) return value.path;
  if (sdk.Bytes && value instanceof sdk.Bytes) return value.toBase64();
  const out = {};
  for (const [key, item] of Object.entries(value)) out[key] = encodeFirestoreValue(item, sdk);
  return out;
}

/** A document as the read API lists it: `id` first, then its fields sorted by name. */
export function encodeFirestoreDocument(id, data, sdk) {
  const item = { id };
  for (const key of Object.keys(data).sort()) {
    if (key !== 'id') item[key] = encodeFirestoreValue(data[key], sdk);
  }
  return item;
}
