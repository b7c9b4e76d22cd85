// Message lookup: one catalogue per locale (messages.<language>.js), English the fallback.
// Pure: no DOM, so node tests drive it directly.

import de from './messages.de.js';
import en from './messages.en.js';

export const CATALOGUES = Object.freeze({ en, de });

/** The catalogue language for a BCP 47 tag ("de-AT" → "de"); English when none matches. */
export function catalogueLanguage(locale) {
  let language = 'en';
  try {
    language = new Intl.Locale(locale || 'en').language;
  } catch {
    // An invalid tag: English.
  }
  return Object.hasOwn(CATALOGUES, language) ? language : 'en';
}

/** The first of `preferred` (e.g. navigator.languages) with a catalogue, else `fallback`. */
export function pickLocale(preferred, fallback = 'en') {
  for (const tag of preferred ?? []) {
    try {
      const locale = new Intl.Locale(tag);
      if (Object.hasOwn(CATALOGUES, locale.language)) return locale.toString();
    } catch {
      // An invalid tag from the browser: try the next one.
    }
  }
  return fallback;
}

/**
 * `t(key, params)` for `locale`. `audience` "staff" prefers the `staff.` variant of a key (the
 * maker's and the admin's words). A key missing from the locale's catalogue falls back to
 * English; a key missing everywhere comes back as itself, so a gap shows rather than hides.
 */
export function translator(locale, { audience = 'buyer' } = {}) {
  const catalogue = CATALOGUES[catalogueLanguage(locale)];
  const lookup = (key) => catalogue[key] ?? en[key];
  return function t(key, params = {}) {
    const text = (audience === 'staff' ? lookup(`staff.${key}`) : undefined) ?? lookup(key) ?? key;
    return text.replace(/\{(\w+)\}/g, (whole, name) => (name in params ? String(params[name]) : whole));
  };
}
