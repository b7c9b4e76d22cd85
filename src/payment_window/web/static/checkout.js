// The service's checkout page, built on <payment-window-timer>: the element owns the countdown
// (time, live events, resyncs, announcements); this file reads the token from the fragment,
// picks the viewer's view (buyer, maker, admin) and says what each state means for them.
// Every word comes from the message catalogues, in the browser's language.

import { formatAmount } from './format.js';
import { pickLocale, translator } from './i18n.js';
import { mayOverride, mountOverride } from './override.js';
import './payment-window-timer.js';
import { requester, takeToken } from './token.js';

const root = document.getElementById('checkout');
const $ = (id) => document.getElementById(id);
const el = {
  heading: $('heading'),
  auction: $('auction-id'),
  amount: $('amount'),
  stateFact: $('state-fact'),
  state: $('state'),
  timer: $('timer'),
  outcome: $('outcome'),
  outcomeText: $('outcome-text'),
  outcomeItem: $('outcome-item'),
  contact: $('contact'),
  pageError: $('page-error'),
  pay: $('pay-button'),
  policyNote: $('policy-note'),
  override: $('override'),
};
const sessionId = root.dataset.sessionId;

// Words follow the browser's first language we have a catalogue for; numbers, dates and zones
// follow its region ("de-AT" → German words, Austrian formats).
const locale = pickLocale(navigator.languages ?? [navigator.language], 'en-GB');
document.documentElement.lang = locale;

// Display only: the server verifies the token on every request.
function readClaims(jwt) {
  try {
    const part = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const bytes = Uint8Array.from(atob(part), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return {};
  }
}

const token = takeToken(`payment-window-token:${sessionId}`);
const claims = token ? readClaims(token) : {};
const staff = claims.role === 'maker' || claims.role === 'admin';
const t = translator(locale, { audience: staff ? 'staff' : 'buyer' });
const request = requester(token);
let override = null;
let overrideChecked = false;

// Reasons the store records, grouped by what they mean to a reader of this page.
const REASON_KEY = {
  window_elapsed: 'window_elapsed',
  stripe_expired: 'window_elapsed',
  admin_terminated: 'terminated',
  maker_terminated: 'terminated',
  payment_failed: 'payment_failed',
  checkout_missing: 'checkout_missing',
};

function reasonKey(reason) {
  return REASON_KEY[reason] ?? 'window_elapsed';
}

function paintStaticWords() {
  $('auction-label').textContent = t('page.fact.auction');
  $('amount-label').textContent = t('page.fact.amount');
  $('state-label').textContent = t('page.fact.state');
  el.pay.textContent = t('page.pay');
  el.heading.textContent = staff ? t('page.heading.staff') : t('page.heading.open');
  document.title = t('title.base');
}

// PW_SUPPORT_CONTACT: a URL becomes a link, an address a mailto: link, anything else text.
function contactNode(contact) {
  if (/^https?:\/\//i.test(contact)) {
    const a = document.createElement('a');
    a.href = contact;
    a.textContent = contact.replace(/^https?:\/\//i, '').replace(/\/$/, '');
    return a;
  }
  if (/^[^@\s]+@[^@\s]+$/.test(contact)) {
    const a = document.createElement('a');
    a.href = `mailto:${contact}`;
    a.textContent = contact;
    return a;
  }
  return document.createTextNode(contact);
}

function paintContact() {
  const contact = root.dataset.supportContact;
  if (!contact) {
    el.contact.textContent = t('page.contact.none');
    return;
  }
  const [before, after] = t('page.contact', { contact: '\u0000' }).split('\u0000');
  el.contact.replaceChildren(document.createTextNode(before), contactNode(contact), document.createTextNode(after ?? ''));
}

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

// Closing while the Pay button has focus must not drop a keyboard user's focus to the top of
// the page: it moves to the heading that now says what happened.
function hidePay() {
  if (el.pay.hidden) return;
  const hadFocus = document.activeElement === el.pay;
  el.pay.hidden = true;
  if (hadFocus) el.heading.focus();
}

function paintBuyer(body, phase) {
  const open = phase === 'open' || phase === 'warning';
  if (body.checkoutUrl) el.pay.dataset.checkoutUrl = body.checkoutUrl;
  if (open && body.checkoutUrl) {
    el.pay.hidden = false;
  } else if (phase !== 'loading') {
    hidePay();
  }
  let heading = t('page.heading.open');
  let text = null;
  let item = null;
  let contact = false;
  if (phase === 'paid') {
    heading = t('page.heading.paid');
    text = t('page.paid.next');
  } else if (phase === 'awaiting') {
    heading = t('page.heading.awaiting');
    text = t('page.awaiting.next');
    contact = true;
  } else if (phase === 'closed') {
    heading = t('page.heading.closed');
    // At a local zero the server may not have closed the window yet: the reason comes later.
    text = t(`page.closed.${reasonKey(body.status === 'expired' ? body.reason : 'window_elapsed')}`);
    item = t('page.closed.item');
    contact = true;
  }
  setText(el.heading, heading);
  el.outcome.hidden = text == null;
  if (text != null) setText(el.outcomeText, text);
  el.outcomeItem.hidden = item == null;
  if (item != null) setText(el.outcomeItem, item);
  el.contact.hidden = !contact;
}

function paintStaff(body, phase) {
  hidePay();
  el.stateFact.hidden = false;
  let text;
  if (body.status === 'expired') text = t(`page.staff.closed.${reasonKey(body.reason)}`);
  else if (body.status === 'paid') text = t('page.staff.paid');
  else if (body.status === 'awaiting_payment_confirmation') text = t('page.staff.awaiting');
  else text = null;
  setText(el.state, t(`page.state.${body.status}`));
  el.outcome.hidden = text == null;
  if (text != null) setText(el.outcomeText, text);
  el.outcomeItem.hidden = true;
  el.contact.hidden = true;
  if (phase === 'closed' && body.status === 'open') setText(el.state, t('page.state.expired'));
}

function onChange(event) {
  const body = event.detail;
  const phase = body.phase;
  root.dataset.state = phase === 'awaiting' ? 'awaiting' : phase;
  if (body.auctionId) setText(el.auction, body.auctionId);
  if (body.amount != null && body.currency) setText(el.amount, formatAmount(body.amount, body.currency, locale));
  if (staff) paintStaff(body, phase);
  else paintBuyer(body, phase);
  const state = el.timer.state;
  if (state?.title && document.title !== state.title) document.title = state.title;
  override?.update(state);
  if (!overrideChecked && body.status) setUpOverride(body);
}

// The title follows the countdown every second, as before the element existed.
function followTitle() {
  const state = el.timer.state;
  if (state?.title && document.title !== state.title) document.title = state.title;
  if (el.timer.phase !== 'error') setTimeout(followTitle, 1000 - (Date.now() % 1000) + 20);
}

function showPageError(code) {
  const key = { unauthorized: 'error.unauthorized', not_found: 'error.notFound', missing_token: 'error.missingToken' }[code];
  el.pageError.textContent = t(key);
  el.pageError.hidden = false;
  el.heading.textContent = t('page.heading.error');
  el.timer.hidden = true;
  el.outcome.hidden = true;
  el.override.hidden = true;
  el.pay.hidden = true;
  root.dataset.state = 'error';
}

async function setUpOverride(body) {
  overrideChecked = true;
  if (!mayOverride(claims, body.makerId)) return;
  if (claims.role === 'maker') {
    // Say so rather than show controls the server would only refuse; if the policy cannot be
    // read, let the server decide.
    const policy = await request(`/makers/${encodeURIComponent(claims.makerId)}/policy`).catch(() => null);
    if (policy?.status === 200 && policy.body?.makersMayOverride === false) {
      el.policyNote.textContent = t('page.staff.policy');
      el.policyNote.hidden = false;
      return;
    }
  }
  override = mountOverride({
    container: el.override,
    locale,
    t,
    announce: (text) => announce(text),
    post: (request) => el.timer.request(`/payments/window/${encodeURIComponent(sessionId)}/override`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(request),
    }),
    applied: (answer, timing) => el.timer.applyStatus(answer, timing),
  });
  override.update(el.timer.state);
}

// The element's polite status region is the page's one voice.
function announce(text) {
  const region = el.timer.shadowRoot?.getElementById('announcer');
  if (!region) return;
  if (region.textContent === text) region.textContent = '';
  region.textContent = text;
}

function start() {
  paintStaticWords();
  paintContact();
  el.timer.setAttribute('locale', locale);
  if (staff) el.timer.setAttribute('view', 'staff');
  el.timer.addEventListener('payment-window:change', onChange);
  el.timer.addEventListener('payment-window:error', (event) => showPageError(event.detail.code));
  if (!token) {
    showPageError('missing_token');
    // Pasting the link into this tab only changes the fragment, which does not reload the page.
    addEventListener('hashchange', () => {
      if (new URLSearchParams(location.hash.slice(1)).has('token')) location.reload();
    });
    return;
  }
  el.pay.addEventListener('click', () => {
    const url = el.timer.status?.checkoutUrl;
    const phase = el.timer.phase;
    if (url && (phase === 'open' || phase === 'warning')) location.assign(url);
  });
  el.timer.token = token;
  followTitle();
}

customElements.whenDefined('payment-window-timer').then(start);
