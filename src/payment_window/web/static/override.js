// Extend / terminate controls for makers and admins. Display only: the server decides who may
// act and within what policy; this module just asks and reports the answer in words.

import { formatRemainingLong } from './format.js';
import { translator } from './i18n.js';

// `prefix` keeps ids unique when one page holds several sets of controls (the operations table).
const markup = (prefix, heading, level, t) => `
  <h${level} id="${prefix}override-heading">${heading}</h${level}>
  <form id="${prefix}extend-form" class="extend-form" novalidate>
    <label for="${prefix}extend-minutes">${t('override.minutes')}</label>
    <input id="${prefix}extend-minutes" name="minutes" type="number" min="1" step="1" inputmode="numeric"
           value="30" required aria-describedby="${prefix}override-error">
    <label for="${prefix}override-reason">${t('override.reason')}</label>
    <input id="${prefix}override-reason" name="reason" type="text" maxlength="200" autocomplete="off">
    <div class="actions">
      <button id="${prefix}extend-button" type="submit">${t('override.extend')}</button>
      <button id="${prefix}terminate-button" class="danger" type="button">${t('override.terminate')}</button>
    </div>
  </form>
  <p id="${prefix}override-error" class="override-error" hidden></p>`;

const CONFIRM_FOR_MS = 8000;

/** Whether this viewer gets the controls at all: admins, and the session's own maker. */
export function mayOverride(claims, sessionMakerId) {
  if (claims.role === 'admin') return true;
  if (claims.role !== 'maker' || !claims.makerId) return false;
  // The status API answers a maker only for their own sessions, so an unknown maker id
  // on a page that loaded its status means it is theirs.
  return sessionMakerId == null || String(sessionMakerId) === String(claims.makerId);
}

function describeError(status, body, t) {
  const message = body?.error?.message;
  switch (status) {
    case 401:
    case 403:
    case 409:
      return t(`override.error.${status}`);
    case 422:
      return message ? t('override.error.422', { message }) : t('override.error.422.plain');
    default:
      return message ?? t('override.error.other', { status });
  }
}

/**
 * Render the controls into `container`.
 * `post(body)` sends the override and resolves to `{status, body, timing}` (or throws when the
 * network fails); `applied(body, timing)` feeds a success into the timer and returns its state;
 * `announce(text)` speaks in the page's status region. `idPrefix`, `heading` and `headingLevel`
 * let a page hold several sets (the heading text is the caller's, inserted as markup: no user data).
 */
export function mountOverride({
  container,
  post,
  applied,
  announce,
  locale = 'en',
  t = translator(locale),
  idPrefix = '',
  heading = t('override.heading'),
  headingLevel = 2,
}) {
  container.innerHTML = markup(idPrefix, heading, headingLevel, t);
  container.hidden = false;
  const find = (id) => container.querySelector(`#${idPrefix}${id}`);
  const form = find('extend-form');
  const minutes = find('extend-minutes');
  const reason = find('override-reason');
  const extendButton = find('extend-button');
  const terminateButton = find('terminate-button');
  const error = find('override-error');
  let busy = false;
  let windowOpen = true;
  let confirmTimer = null;

  // aria-disabled rather than disabled: a disabled button drops focus, and focus must stay put.
  function setEnabled() {
    for (const button of [extendButton, terminateButton]) {
      button.setAttribute('aria-disabled', String(busy || !windowOpen));
    }
  }

  function showError(text, invalid = false) {
    error.textContent = text;
    error.hidden = false;
    minutes.setAttribute('aria-invalid', String(invalid));
    announce(text);
  }

  function clearError() {
    error.textContent = '';
    error.hidden = true;
    minutes.removeAttribute('aria-invalid');
  }

  function resetConfirm() {
    clearTimeout(confirmTimer);
    terminateButton.textContent = t('override.terminate');
    terminateButton.dataset.confirming = 'false';
  }

  async function send(request, describeSuccess) {
    busy = true;
    setEnabled();
    try {
      const { status, body, timing } = await post(request);
      if (status === 200) {
        clearError();
        const state = applied(body, timing);
        announce(describeSuccess(state));
      } else {
        showError(describeError(status, body, t), status === 422);
      }
    } catch {
      showError(t('override.error.network'));
    } finally {
      busy = false;
      setEnabled();
    }
  }

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    if (busy || !windowOpen) return;
    const value = Number(minutes.value);
    if (!Number.isInteger(value) || value < 1) {
      showError(t('override.error.minutes'), true);
      return;
    }
    const request = { action: 'extend', minutes: value };
    if (reason.value.trim()) request.reason = reason.value.trim();
    send(request, (state) => t('override.extended', { duration: formatRemainingLong(value * 60, locale), deadline: state.payBy }));
  });

  // Two presses, so a stray click or Enter cannot end a buyer's chance to pay.
  terminateButton.addEventListener('click', () => {
    if (busy || !windowOpen) return;
    if (terminateButton.dataset.confirming !== 'true') {
      terminateButton.textContent = t('override.confirm');
      terminateButton.dataset.confirming = 'true';
      announce(t('override.confirmHint'));
      confirmTimer = setTimeout(resetConfirm, CONFIRM_FOR_MS);
      return;
    }
    resetConfirm();
    const request = { action: 'terminate' };
    if (reason.value.trim()) request.reason = reason.value.trim();
    send(request, () => t('override.terminated'));
  });

  setEnabled();
  return {
    /** Follow the timer: the controls stay visible but inert once the window is not open. */
    update(state) {
      // Not `closed`: at a local zero the server may not have expired it yet, and may extend.
      const open = state.status === 'open';
      if (open === windowOpen) return;
      windowOpen = open;
      if (!open) resetConfirm();
      setEnabled();
    },
  };
}
