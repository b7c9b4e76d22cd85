// DOM glue for the checkout page: reads the token, talks to the API, feeds the timer bloc and
// paints what it says. All time logic lives in timer.js.

import { formatAmount } from './format.js';
import { mayOverride, mountOverride } from './override.js';
import { subscribe } from './sse.js';
import { createTimer } from './timer.js';
import { requester, takeToken } from './token.js';

const START_SAMPLES = 3; // round trips at start, so the lowest-RTT offset has a choice
const RESYNC_GAP_MS = 2_000; // resync requests closer together than this are one request
const RETRY_SYNC_MS = 10_000; // an unreachable server is retried no faster than this
const SERVER_EVENTS = new Set(['extended', 'expired', 'terminated', 'paid', 'rotated']);
const FINAL = new Set(['paid', 'expired']);

const root = document.getElementById('checkout');
const $ = (id) => document.getElementById(id);
const el = {
  auction: $('auction-id'),
  amount: $('amount'),
  countdown: $('countdown'),
  payBy: $('pay-by'),
  warning: $('warning'),
  connection: $('connection'),
  pageError: $('page-error'),
  pay: $('pay-button'),
  announcer: $('announcer'),
  alert: $('alert'),
  override: $('override'),
};
const sessionId = root.dataset.sessionId;
const base = `/payments/checkout/${encodeURIComponent(sessionId)}`;

// The page's words are English; numbers, dates and zones follow the viewer's region, so a
// reader in Germany sees "15:45 CET" in an English sentence rather than "3:45 PM".
function pickLocale(pageLanguage = document.documentElement.lang || 'en') {
  for (const tag of navigator.languages ?? [navigator.language]) {
    try {
      const locale = new Intl.Locale(tag);
      if (locale.language === pageLanguage) return locale.toString();
      if (locale.region) return `${pageLanguage}-${locale.region}`;
    } catch {
      // An invalid tag from the browser: try the next one.
    }
  }
  return pageLanguage;
}

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

const locale = pickLocale();
const timeZone = Intl.DateTimeFormat().resolvedOptions().timeZone;
const timer = createTimer({ locale, timeZone });
const token = takeToken(`payment-window-token:${sessionId}`);
const request = requester(token);
const claims = token ? readClaims(token) : {};
const clock = () => ({ now: Date.now(), mono: performance.now() });

let tickHandle = null;
let syncing = null;
let lastSyncAttempt = -Infinity;
let events = null; // AbortController of the event stream
let override = null;
let overrideChecked = false;
let stopped = false;

function announce(text) {
  // Re-setting identical text is not a change to assistive tech; clear first so it repeats.
  if (el.announcer.textContent === text) el.announcer.textContent = '';
  el.announcer.textContent = text;
}

function showPageError(text) {
  el.pageError.textContent = text;
  el.pageError.hidden = false;
  el.countdown.textContent = '—';
  el.pay.disabled = true;
  stop();
}

// aria-disabled rather than disabled once the page runs: disabling the focused button at zero
// would drop a keyboard or screen-reader user's focus to the top of the page.
function setPayable(payable) {
  el.pay.disabled = false;
  el.pay.setAttribute('aria-disabled', String(!payable));
}

function mayPay() {
  return !el.pay.disabled && el.pay.getAttribute('aria-disabled') !== 'true';
}

function paint(state) {
  if (state.status != null && el.countdown.textContent !== state.text) el.countdown.textContent = state.text;
  if (document.title !== state.title) document.title = state.title;
  if (state.expiresAt != null) {
    el.payBy.textContent = state.payBy;
    el.payBy.dateTime = new Date(state.expiresAt).toISOString();
  }
  if (state.auctionId) el.auction.textContent = state.auctionId;
  const amount = state.amount ?? root.dataset.amount;
  const currency = state.currency ?? root.dataset.currency;
  if (amount != null && currency) el.amount.textContent = formatAmount(amount, currency, locale);
  el.warning.hidden = !state.warning;
  el.connection.hidden = !state.approximate;
  setPayable(!state.closed && state.status === 'open' && Boolean(state.checkoutUrl));
  if (state.checkoutUrl) el.pay.dataset.checkoutUrl = state.checkoutUrl;
  root.dataset.state = state.status === 'paid' ? 'paid' : state.closed ? 'closed' : state.warning ? 'warning' : 'open';
  if (state.announce) announce(state.announce);
  if (state.alert) el.alert.textContent = state.alert;
  override?.update(state);
}

function apply(state) {
  paint(state);
  if (FINAL.has(state.status)) {
    stop();
  } else if (state.needsResync || state.approximate || state.status == null) {
    const gap = state.needsResync ? RESYNC_GAP_MS : RETRY_SYNC_MS;
    if (performance.now() - lastSyncAttempt > gap) sync();
  }
  return state;
}

function sync() {
  if (syncing) return syncing;
  lastSyncAttempt = performance.now();
  syncing = request(`${base}/status`)
    .then(({ status, body, timing }) => {
      if (status === 401) return showPageError('This payment link has expired or is not valid. Please open the latest link from your email.');
      if (status === 404) return showPageError('We could not find this payment. Please check the link from your email.');
      if (status !== 200 || !body) return null;
      const state = apply(timer.dispatch({ type: 'snapshot', body, ...timing }));
      if (!overrideChecked) setUpOverride(state);
      return state;
    })
    .catch(() => {
      // Unreachable: keep counting on the last offset and say the time may be off.
      apply(timer.dispatch({ type: 'offline', ...clock() }));
    })
    .finally(() => {
      syncing = null;
    });
  return syncing;
}

function tick() {
  apply(timer.dispatch({ type: 'tick', ...clock() }));
  schedule();
}

function schedule() {
  clearTimeout(tickHandle);
  if (stopped) return;
  // Before the first status, and at a local zero while the server has not confirmed, keep a
  // plain one-second beat so clock jumps are still noticed.
  const delay = timer.nextTickDelay(Date.now()) ?? 1000;
  tickHandle = setTimeout(tick, Math.min(delay, 1010));
}

function onServerEvent({ event, data }) {
  let payload = {};
  try {
    payload = JSON.parse(data) ?? {};
  } catch {
    // A comment-like or empty payload: the event name alone still tells us to look.
  }
  if (SERVER_EVENTS.has(event)) apply(timer.dispatch({ ...payload, type: event, ...clock() }));
  else sync();
}

function listen() {
  if (events || stopped) return;
  events = new AbortController();
  let first = true;
  subscribe(`${base}/events`, {
    token,
    signal: events.signal,
    onEvent: onServerEvent,
    // Anything may have happened while disconnected; the status endpoint is the truth.
    onOpen: () => {
      if (!first) sync();
      first = false;
    },
    onFatal: () => {
      events = null;
    },
  });
}

function stop() {
  stopped = true;
  clearTimeout(tickHandle);
  events?.abort();
  events = null;
}

async function setUpOverride(state) {
  overrideChecked = true;
  if (!mayOverride(claims, state.makerId ?? root.dataset.makerId)) return;
  if (claims.role === 'maker') {
    // Hide controls the server would only refuse; if the policy cannot be read, let it decide.
    const policy = await request(`/makers/${encodeURIComponent(claims.makerId)}/policy`).catch(() => null);
    if (policy?.status === 200 && policy.body?.makersMayOverride === false) return;
  }
  override = mountOverride({
    container: el.override,
    locale,
    announce,
    post: (body) => request(`/payments/window/${encodeURIComponent(sessionId)}/override`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    }),
    applied: (body, timing) => apply(timer.dispatch({ type: 'snapshot', body, ...timing })),
  });
  override.update(timer.state);
}

function wireLifecycle() {
  el.pay.addEventListener('click', () => {
    const url = timer.state?.checkoutUrl;
    if (url && mayPay()) location.assign(url);
  });
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && !stopped) apply(timer.dispatch({ type: 'visible', ...clock() }));
  });
  addEventListener('online', () => !stopped && apply(timer.dispatch({ type: 'online', ...clock() })));
  addEventListener('offline', () => !stopped && apply(timer.dispatch({ type: 'offline', ...clock() })));
  // An open stream keeps the page out of the back/forward cache; reopen it on the way back.
  addEventListener('pagehide', () => {
    events?.abort();
    events = null;
  });
  addEventListener('pageshow', (event) => {
    if (!event.persisted || stopped) return;
    apply(timer.dispatch({ type: 'visible', ...clock() }));
    listen();
    schedule();
  });
}

async function start() {
  if (root.dataset.amount && root.dataset.currency) {
    el.amount.textContent = formatAmount(root.dataset.amount, root.dataset.currency, locale);
  }
  if (!token) {
    showPageError('This page needs the payment link from your email. Please open that link again.');
    // Pasting the link into this tab only changes the fragment, which does not reload the page.
    addEventListener('hashchange', () => {
      if (new URLSearchParams(location.hash.slice(1)).has('token')) location.reload();
    });
    return;
  }
  wireLifecycle();
  if (!navigator.onLine) apply(timer.dispatch({ type: 'offline', ...clock() }));
  for (let i = 0; i < START_SAMPLES && !stopped; i += 1) {
    const state = await sync();
    if (!state) break;
    if (i === 0) schedule();
  }
  if (!stopped) {
    schedule();
    listen();
  }
}

start();
