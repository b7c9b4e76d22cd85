// Locale-aware text for the checkout page. Pure: every function takes its locale and
// time zone, so tests pin them and the page passes the viewer's own.

const cache = new Map();

// Intl constructors are slow enough that rebuilding them every second shows up on low-end phones.
function cached(kind, locale, options) {
  const key = `${kind}|${locale}|${JSON.stringify(options)}`;
  let value = cache.get(key);
  if (!value) {
    value = new Intl[kind](locale, options);
    cache.set(key, value);
  }
  return value;
}

function unit(locale, name, count, display) {
  return cached('NumberFormat', locale, { style: 'unit', unit: name, unitDisplay: display }).format(count);
}

function joinUnits(locale, parts) {
  return cached('ListFormat', locale, { type: 'unit', style: 'narrow' }).format(parts);
}

/**
 * The countdown text: hours and minutes an hour or more out, minutes and seconds under an
 * hour, seconds under a minute ("3 hrs 12 mins", "42 mins 5 secs", "45 secs" in en-GB).
 * Zero-valued trailing parts stay so the text does not change width every minute.
 */
export function formatRemaining(seconds, locale) {
  const s = Math.max(0, Math.ceil(seconds));
  const hours = Math.floor(s / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  if (hours > 0) {
    return joinUnits(locale, [unit(locale, 'hour', hours, 'short'), unit(locale, 'minute', minutes, 'short')]);
  }
  if (minutes > 0) {
    return joinUnits(locale, [unit(locale, 'minute', minutes, 'short'), unit(locale, 'second', s % 60, 'short')]);
  }
  return unit(locale, 'second', s, 'short');
}

/**
 * Spoken-style duration for announcements ("1 hour", "30 minutes", "1 minute"): whole
 * minutes, because a screen reader reading "29 minutes 59 seconds" is noise.
 */
export function formatRemainingLong(seconds, locale) {
  const minutes = Math.max(1, Math.round(seconds / 60));
  if (minutes >= 60 && minutes % 60 === 0) return unit(locale, 'hour', minutes / 60, 'long');
  if (minutes > 60) {
    return joinUnits(locale, [
      unit(locale, 'hour', Math.floor(minutes / 60), 'long'),
      unit(locale, 'minute', minutes % 60, 'long'),
    ]);
  }
  return unit(locale, 'minute', minutes, 'long');
}

// "GMT+1" tells a reader little; a locale without a short name for the zone gets the long one.
const OFFSET_NAME = /^(GMT|UTC)[+\-\u2212]\d/;

function zoneNameStyle(locale, timeZone, date) {
  const parts = cached('DateTimeFormat', locale, { timeZone, timeZoneName: 'short' }).formatToParts(date);
  const name = parts.find((p) => p.type === 'timeZoneName')?.value ?? '';
  return OFFSET_NAME.test(name) ? 'long' : 'short';
}

function calendarDay(locale, timeZone, date) {
  return cached('DateTimeFormat', 'en-CA', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit' }).format(date);
}

/**
 * The "pay by" deadline in the viewer's zone: "15:45 CET" (en-GB), "3:45 PM Central European
 * Standard Time" (en-US, whose short name would be "GMT+1"), with the date when it is not
 * today in that zone.
 */
export function formatDeadline(deadlineMs, { locale, timeZone, nowMs }) {
  const date = new Date(deadlineMs);
  const options = { timeZone, hour: 'numeric', minute: '2-digit', timeZoneName: zoneNameStyle(locale, timeZone, date) };
  if (calendarDay(locale, timeZone, date) !== calendarDay(locale, timeZone, new Date(nowMs))) {
    Object.assign(options, { weekday: 'short', day: 'numeric', month: 'short' });
  }
  return cached('DateTimeFormat', locale, options).format(date);
}

/** A Stripe-style amount in minor units ("1999", "EUR") as "€19.99" in the viewer's locale. */
export function formatAmount(minorUnits, currency, locale) {
  const format = cached('NumberFormat', locale, { style: 'currency', currency });
  const digits = format.resolvedOptions().maximumFractionDigits;
  return format.format(Number(minorUnits) / 10 ** digits);
}
