/**
 * ui/format.js: numbers, sizes, durations, ages, money and dates as the page shows them.
 */

// The Intl formatters are made on first use, and money and dates, which the tables show on a
// repeat visit's first paint, are formatted by hand in the common case: a renderer's first Intl
// formatter loads the locale data (12-36 ms of main thread in fresh renderers, measured), which
// in a new tab came before its first rows (docs/benchmarks.md, "A screenful first").
// web/tests/format.test.js checks the hand-made text against Intl's for every case it takes.
let integer = null;
let money = null;
let day = null;
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** 1234 -> "1,234". */
export function formatCount(value) {
  return Number.isFinite(value) ? (integer ??= new Intl.NumberFormat('en-US')).format(value) : '—';
}

/** `n` and its noun, singular for one: "1 record", "2,400 records". */
export function countOf(value, noun, plural = `${noun}s`) {
  return `${formatCount(value)} ${Number(value) === 1 ? noun : plural}`;
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

/** An age in milliseconds as "12 s", "3 min", "2 h", "4 d" ("just now" under `justNowMs`). */
export function formatAge(ms, { justNowMs = 0 } = {}) {
  if (ms < justNowMs) return 'just now';
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 90) return `${s} s`;
  if (s < 90 * 60) return `${Math.round(s / 60)} min`;
  if (s < 48 * 3600) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} d`;
}

/** 73 -> "$73", 1694.5 -> "$1,695" (whole US dollars, as Intl's en-US currency format). */
export function formatMoney(value) {
  if (typeof value !== 'number' || !(value >= 0 && value < 1e15) || Object.is(value, -0)) {
    money ??= new Intl.NumberFormat('en-US',
      { style: 'currency', currency: 'USD', maximumFractionDigits: 0 });
    return money.format(value); // negative, huge, not a number: Intl's own
  }
  // Intl rounds half away from zero; 0 <= value < 1e15: every whole dollar is exact.
  return `$${String(Math.round(value)).replace(/\B(?=(\d{3})+$)/g, ',')}`;
}

/** An RFC 3339 date as "Jun 1, 2025" (UTC), "—" when it is not one. */
export function formatDate(value) {
  const time = Date.parse(value ?? '');
  if (Number.isNaN(time)) return '—';
  const date = new Date(time);
  const year = date.getUTCFullYear();
  if (year < 1000 || year > 9999) { // eras, padding: Intl's own
    day ??= new Intl.DateTimeFormat('en-US',
      { year: 'numeric', month: 'short', day: 'numeric', timeZone: 'UTC' });
    return day.format(time);
  }
  return `${MONTHS[date.getUTCMonth()]} ${date.getUTCDate()}, ${year}`;
}
