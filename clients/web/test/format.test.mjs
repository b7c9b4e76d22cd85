import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  formatAmount,
  formatDeadline,
  formatRemaining,
  formatRemainingLong,
} from '../src/format.js';

// ICU puts narrow or non-breaking spaces in some locales; the words are what matter here.
const plain = (s) => s.replace(/[\u202f\u00a0]/g, ' ');

const JAN = Date.parse('2025-01-15T14:45:00Z'); // 15:45 in Berlin, winter time
const JUL = Date.parse('2025-07-15T13:45:00Z'); // 15:45 in Berlin, summer time
const berlin = (locale, deadline, nowMs = deadline - 3_600_000) =>
  plain(formatDeadline(deadline, { locale, timeZone: 'Europe/Berlin', nowMs }));

test('hours and minutes when an hour or more is left', () => {
  const s = 3 * 3600 + 12 * 60 + 30;
  assert.equal(formatRemaining(s, 'en-GB'), '3 hrs 12 mins');
  assert.equal(formatRemaining(s, 'en-US'), '3 hr 12 min');
  assert.equal(plain(formatRemaining(s, 'de-DE')), '3 Std., 12 Min.');
});

test('minutes and seconds under an hour', () => {
  assert.equal(formatRemaining(42 * 60 + 5, 'en-GB'), '42 mins 5 secs');
  assert.equal(formatRemaining(42 * 60 + 5, 'en-US'), '42 min 5 sec');
  assert.equal(plain(formatRemaining(42 * 60 + 5, 'de-DE')), '42 Min., 5 Sek.');
});

test('seconds only under a minute, never negative', () => {
  assert.equal(formatRemaining(45, 'en-GB'), '45 secs');
  assert.equal(formatRemaining(1, 'en-US'), '1 sec');
  assert.equal(plain(formatRemaining(45, 'de-DE')), '45 Sek.');
  assert.equal(formatRemaining(-3, 'en-GB'), '0 secs');
});

test('a fractional second still counts as a second left', () => {
  assert.equal(formatRemaining(0.2, 'en-GB'), '1 sec');
});

test('exactly one hour keeps its zero minutes so the width does not jump', () => {
  assert.equal(formatRemaining(3600, 'en-GB'), '1 hr 0 mins');
});

test('announcement durations are whole, spelled-out units', () => {
  assert.equal(formatRemainingLong(3600, 'en-GB'), '1 hour');
  assert.equal(formatRemainingLong(1800, 'en-GB'), '30 minutes');
  assert.equal(formatRemainingLong(60, 'en-US'), '1 minute');
  assert.equal(formatRemainingLong(59, 'en-US'), '1 minute');
  assert.equal(formatRemainingLong(300, 'de-DE'), '5 Minuten');
  assert.equal(formatRemainingLong(3600, 'de-DE'), '1 Stunde');
  assert.equal(formatRemainingLong(90 * 60, 'en-GB'), '1 hour 30 minutes');
});

test('en-GB deadline in Berlin shows CET in January and CEST in July', () => {
  assert.equal(berlin('en-GB', JAN), '15:45 CET');
  assert.equal(berlin('en-GB', JUL), '15:45 CEST');
});

test('en-US deadline in Berlin names the zone in words rather than GMT+1', () => {
  assert.equal(berlin('en-US', JAN), '3:45 PM Central European Standard Time');
  assert.equal(berlin('en-US', JUL), '3:45 PM Central European Summer Time');
});

test('de-DE deadline in Berlin uses the German abbreviations', () => {
  assert.equal(berlin('de-DE', JAN), '15:45 MEZ');
  assert.equal(berlin('de-DE', JUL), '15:45 MESZ');
});

test('a deadline on another day shows the date', () => {
  const dayBefore = JAN - 20 * 3_600_000;
  assert.equal(berlin('en-GB', JAN, dayBefore), 'Wed 15 Jan, 15:45 CET');
  assert.equal(berlin('en-US', JAN, dayBefore), 'Wed, Jan 15, 3:45 PM Central European Standard Time');
  assert.equal(berlin('de-DE', JUL, JUL - 20 * 3_600_000), 'Di., 15. Juli, 15:45 MESZ');
});

test('"today" is judged in the viewer time zone, not UTC', () => {
  // 23:30 UTC on the 14th is already the 15th in Berlin, the same day as the deadline.
  const lateEvening = Date.parse('2025-01-14T23:30:00Z');
  assert.equal(berlin('en-GB', JAN, lateEvening), '15:45 CET');
});

test('a zone whose short name is a real abbreviation keeps it', () => {
  const f = (timeZone, locale = 'en-US') => plain(formatDeadline(JAN, { locale, timeZone, nowMs: JAN }));
  assert.equal(f('America/Chicago'), '8:45 AM CST');
  assert.equal(f('Europe/London', 'en-GB'), '14:45 GMT');
  assert.equal(f('UTC', 'en-GB'), '14:45 UTC');
});

test('amounts in minor units respect the currency exponent', () => {
  assert.equal(formatAmount(123450, 'EUR', 'en-GB'), '€1,234.50');
  assert.equal(plain(formatAmount(123450, 'EUR', 'de-DE')), '1.234,50 €');
  assert.equal(formatAmount(5000, 'JPY', 'en-US'), '¥5,000');
  assert.equal(formatAmount('1999', 'USD', 'en-US'), '$19.99');
});
