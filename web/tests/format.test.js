/**
 * ui/format.js: money and dates are formatted by hand in the common case (the early start's first
 * paint must not wait for the locale data), and must read exactly as Intl's en-US formats would.
 */

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { formatCount, formatDate, formatMoney } from '../ui/format.js';

const intlMoney = new Intl.NumberFormat('en-US',
  { style: 'currency', currency: 'USD', maximumFractionDigits: 0 });
const intlDay = new Intl.DateTimeFormat('en-US',
  { year: 'numeric', month: 'short', day: 'numeric', timeZone: 'UTC' });

/** A deterministic stream of numbers in [0, 1) (no Math.random: a failure replays). */
function* uniform(seed = 7) {
  let state = seed;
  for (;;) {
    state = (state * 1103515245 + 12345) % 2147483648;
    yield state / 2147483648;
  }
}

test('money reads as Intl reads it: whole dollars, grouped, halves away from zero', () => {
  const values = [0, 0.49, 0.5, 1, 9, 99.5, 999, 999.5, 1000, 1694.5, 12345.678, 999999.5,
    1e6, 2 ** 31, 123456789012.5, 1e15 - 1, 0.49999999999999994, 2.5000000000000004,
    -0, -1, -2.5, NaN, Infinity, -Infinity, 1e15, 1e21, '73', null, undefined];
  const next = uniform();
  for (let i = 0; i < 5000; i += 1) {
    const magnitude = 10 ** Math.floor(next.next().value * 15);
    values.push(next.next().value * magnitude, Math.round(next.next().value * magnitude) + 0.5);
  }
  for (const value of values) assert.equal(formatMoney(value), intlMoney.format(value), String(value));
});

test('dates read as Intl reads them, in UTC; anything else is a dash', () => {
  const values = ['2023-08-14T10:00:00Z', '2024-02-29T23:59:59.999Z', '2025-01-01T00:00:00+14:00',
    '1970-01-01T00:00:00Z', '1000-01-01T00:00:00Z', '9999-12-31T23:59:59Z', '0999-12-31T00:00:00Z',
    '+010000-01-01T00:00:00Z', '-000001-06-01T00:00:00Z', '2024-06-01'];
  const next = uniform(11);
  const lo = Date.parse('1000-01-01T00:00:00Z');
  const hi = Date.parse('9999-12-31T23:59:59Z');
  for (let i = 0; i < 5000; i += 1) {
    values.push(new Date(lo + Math.floor(next.next().value * (hi - lo))).toISOString());
  }
  for (const value of values) {
    assert.equal(formatDate(value), intlDay.format(Date.parse(value)), value);
  }
  for (const value of ['', 'soon', null, undefined]) assert.equal(formatDate(value), '—');
});

test('counts still come from Intl', () => {
  assert.equal(formatCount(1234567), '1,234,567');
  assert.equal(formatCount(Number.NaN), '—');
});
