// The element's pure parts, and the catalogues: no DOM needed.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { CATALOGUES, catalogueLanguage, pickLocale, translator } from '../src/i18n.js';
import { apiBaseFor, phaseOf, splitAround } from '../src/payment-window-timer.js';
import { createTimer } from '../src/timer.js';

const placeholders = (text) => [...text.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();

test('German has every English key, no other, with the same placeholders', () => {
  const en = CATALOGUES.en;
  const de = CATALOGUES.de;
  assert.deepEqual(Object.keys(de).sort(), Object.keys(en).sort());
  for (const key of Object.keys(en)) {
    assert.deepEqual(placeholders(de[key]), placeholders(en[key]), key);
    assert.notEqual(de[key].trim(), '', key);
  }
});

test('every staff key has a buyer key it stands in for', () => {
  for (const key of Object.keys(CATALOGUES.en).filter((k) => k.startsWith('staff.'))) {
    assert.ok(key.slice('staff.'.length) in CATALOGUES.en, key);
  }
});

test('locale tags pick a catalogue by language, English otherwise', () => {
  assert.equal(catalogueLanguage('de-AT'), 'de');
  assert.equal(catalogueLanguage('en-US'), 'en');
  assert.equal(catalogueLanguage('fr-FR'), 'en');
  assert.equal(catalogueLanguage('not a tag!'), 'en');
  assert.equal(pickLocale(['fr-FR', 'de-CH', 'en-GB']), 'de-CH');
  assert.equal(pickLocale(['fr-FR', 'x!'], 'en-GB'), 'en-GB');
});

test('translator fills placeholders, prefers staff words for staff, falls back to the key', () => {
  const buyer = translator('de-DE');
  const staff = translator('en-GB', { audience: 'staff' });
  assert.equal(buyer('announce.threshold', { duration: '5 Minuten' }), 'Noch 5 Minuten zum Bezahlen');
  assert.equal(staff('timer.label'), 'Time left for the buyer to pay');
  assert.equal(staff('timer.closed'), 'The payment window has closed');
  assert.equal(buyer('no.such.key'), 'no.such.key');
});

test('the timer speaks German: countdown, threshold, closing, title', () => {
  const t0 = Date.parse('2026-03-01T12:00:00Z');
  const timer = createTimer({ locale: 'de-DE', timeZone: 'Europe/Berlin' });
  const body = { status: 'open', expiresAt: new Date(t0 + 61 * 60_000).toISOString(), serverTime: new Date(t0).toISOString(), version: 1 };
  let s = timer.dispatch({ type: 'snapshot', body, sentAt: t0, receivedAt: t0, sentMono: 0, receivedMono: 0 });
  assert.match(s.text, /^1 Std\.,? 1 Min\.$/);
  assert.match(s.title, /^Noch 1 Std/);
  s = timer.dispatch({ type: 'tick', now: t0 + 2 * 60_000, mono: 2 * 60_000 });
  assert.equal(s.announce, 'Noch 59 Minuten zum Bezahlen');
  s = timer.dispatch({ type: 'expired', version: 2, reason: 'window_elapsed', now: t0 + 2 * 60_000 + 10, mono: 2 * 60_000 + 10 });
  assert.equal(s.text, 'Das Zahlungsfenster ist geschlossen');
  assert.equal(s.alert, 'Das Zahlungsfenster ist geschlossen');
});

test('phaseOf: loading, open, warning, closed at a local zero, paid, awaiting', () => {
  assert.equal(phaseOf(null), 'loading');
  assert.equal(phaseOf({ status: null }), 'loading');
  assert.equal(phaseOf({ status: 'open', closed: false, warning: false }), 'open');
  assert.equal(phaseOf({ status: 'open', closed: false, warning: true }), 'warning');
  assert.equal(phaseOf({ status: 'open', closed: true, warning: false }), 'closed');
  assert.equal(phaseOf({ status: 'expired', closed: true }), 'closed');
  assert.equal(phaseOf({ status: 'paid', closed: true }), 'paid');
  assert.equal(phaseOf({ status: 'awaiting_payment_confirmation', closed: true }), 'awaiting');
});

test('apiBaseFor: the attribute without trailing slashes, else the module origin', () => {
  assert.equal(apiBaseFor('https://pay.example/', 'https://cdn.example/x.js'), 'https://pay.example');
  assert.equal(apiBaseFor(null, 'https://pay.example/static/payment-window-timer.js'), 'https://pay.example');
  assert.equal(apiBaseFor('  ', 'http://127.0.0.1:8000/static/a.js'), 'http://127.0.0.1:8000');
});

test('splitAround keeps the words on both sides of the deadline', () => {
  assert.deepEqual(splitAround('Pay by \u0000', '\u0000'), ['Pay by ', '']);
  assert.deepEqual(splitAround('Frist: \u0000 Uhr', '\u0000'), ['Frist: ', ' Uhr']);
  assert.deepEqual(splitAround('no marker', '\u0000'), ['no marker', '']);
});
