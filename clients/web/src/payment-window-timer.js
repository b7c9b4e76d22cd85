// <payment-window-timer>: the payment window's countdown as a standard custom element.
//
// A marketplace puts it on its own checkout page (three lines: see README.md); the service's
// own checkout page is built on it too. All time logic is timer.js (drift correction from the
// status round trips, device clock jumps, thresholds); this file is the DOM and the network:
// status reads, the live event stream, resyncs on `online` and `visibilitychange`, and the
// bearer token (the `token` property, or a `tokenProvider` called again on a 401).

import { translator } from './i18n.js';
import { subscribe } from './sse.js';
import { createTimer } from './timer.js';

const START_SAMPLES = 3; // round trips at start, so the lowest-RTT offset has a choice
const RESYNC_GAP_MS = 2_000; // resync requests closer together than this are one request
const RETRY_SYNC_MS = 10_000; // an unreachable server is retried no faster than this
const SERVER_EVENTS = new Set(['extended', 'expired', 'terminated', 'paid', 'rotated']);
const FINAL = new Set(['paid', 'expired']);
const MAX_STREAM_TOKEN_RETRIES = 3; // fresh tokens asked for in a row by the event stream

const STYLE = `
:host {
  display: block;
  color: var(--pw-timer-ink, inherit);
  font: inherit;
}
[hidden] { display: none !important; }
.timer {
  padding: var(--pw-timer-padding, 1.25rem 0);
  border-top: 1px solid var(--pw-timer-line, currentColor);
  border-bottom: 1px solid var(--pw-timer-line, currentColor);
}
.label, .pay-by { margin: 0; color: var(--pw-timer-muted, inherit); }
.countdown {
  margin: 0.25rem 0;
  font-size: var(--pw-timer-font-size, 2rem);
  font-weight: 600;
  /* Digits of equal width keep the text from shuffling every second. */
  font-variant-numeric: tabular-nums;
}
/* Once the window no longer runs, neither the label nor the deadline is an instruction. */
:host(:is([phase="closed"], [phase="paid"], [phase="awaiting"], [phase="error"])) :is(.pay-by, .label) {
  display: none;
}
:host(:is([phase="closed"], [phase="paid"], [phase="awaiting"])) .countdown {
  font-size: var(--pw-timer-final-font-size, 1.375rem);
}
.warning {
  display: flex;
  gap: 0.75rem;
  align-items: flex-start;
  margin: 1.25rem 0 0;
  padding: 0.75rem 1rem;
  color: var(--pw-timer-warn-ink, #5f3b00);
  color: var(--pw-timer-warn-ink, light-dark(#5f3b00, #ffe1a6));
  background: var(--pw-timer-warn-bg, #fff6e0);
  background: var(--pw-timer-warn-bg, light-dark(#fff6e0, #332400));
  border: 1px solid var(--pw-timer-warn-mark, #a15c00);
  border: 1px solid var(--pw-timer-warn-mark, light-dark(#a15c00, #e8a33d));
  border-left-width: 4px;
  border-radius: var(--pw-timer-radius, 8px);
}
.warning p { margin: 0; }
.warning-icon { flex: none; fill: var(--pw-timer-warn-mark, #a15c00); fill: var(--pw-timer-warn-mark, light-dark(#a15c00, #e8a33d)); }
.connection, .error {
  margin: 1.25rem 0 0;
  padding: 0.75rem 1rem;
  border-radius: var(--pw-timer-radius, 8px);
  border: 1px solid currentColor;
}
.error { color: var(--pw-timer-error, #b42318); color: var(--pw-timer-error, light-dark(#b42318, #ff9c92)); }
.announcer:not(:empty) { margin: 1rem 0 0; color: var(--pw-timer-muted, inherit); }
.visually-hidden {
  position: absolute; width: 1px; height: 1px; margin: -1px; padding: 0;
  overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; border: 0;
}
@media (forced-colors: active) { .warning-icon { fill: CanvasText; } }
`;

const MARKUP = `
<div id="root">
<section class="timer" part="timer" aria-labelledby="label">
  <p id="label" class="label" part="label"></p>
  <!-- The timer itself never speaks: once a second would drown a screen reader. The status
       region below says the milestones instead. -->
  <p id="countdown" class="countdown" part="countdown" role="timer" aria-live="off" aria-atomic="true"
     aria-labelledby="label">…</p>
  <p id="pay-by-line" class="pay-by" part="deadline"></p>
</section>
<div id="warning" class="warning" part="warning" hidden>
  <svg class="warning-icon" viewBox="0 0 24 24" width="24" height="24" aria-hidden="true" focusable="false">
    <path d="M12 2 1 21h22L12 2Zm0 6a1 1 0 0 1 1 1v6a1 1 0 1 1-2 0V9a1 1 0 0 1 1-1Zm0 12.2a1.3 1.3 0 1 1 0-2.6 1.3 1.3 0 0 1 0 2.6Z"/>
  </svg>
  <p><strong id="warning-lead"></strong> <span id="warning-body"></span></p>
</div>
<p id="connection" class="connection" part="connection" hidden></p>
<p id="error" class="error" part="error" hidden></p>
<div id="announcer" class="announcer" part="status" role="status" aria-live="polite" aria-atomic="true"></div>
<div id="alert" class="visually-hidden" role="alert" aria-atomic="true"></div>
</div>
`;

/** The phase the host page sees (the `phase` attribute): a pure function of a timer state. */
export function phaseOf(state) {
  if (state == null || state.status == null) return 'loading';
  if (state.status === 'paid') return 'paid';
  if (state.status === 'awaiting_payment_confirmation') return 'awaiting';
  if (state.closed) return 'closed';
  return state.warning ? 'warning' : 'open';
}

/** The API origin: `api-base` when given, else the origin this module was loaded from. */
export function apiBaseFor(attribute, moduleUrl) {
  const base = (attribute ?? '').trim() || new URL(moduleUrl).origin;
  return base.replace(/\/+$/, '');
}

/** "Pay by {deadline}" split around the deadline, so the deadline can be a <time> element. */
export function splitAround(text, marker) {
  const at = text.indexOf(marker);
  return at === -1 ? [text, ''] : [text.slice(0, at), text.slice(at + marker.length)];
}

const clock = () => ({ now: Date.now(), mono: performance.now() });
const isoOrNull = (ms) => (ms == null ? null : new Date(ms).toISOString());
const sameInstant = (text, ms) => text != null && ms != null && Date.parse(text) === ms;

// Node (the package's tests) has no DOM: the pure helpers above still import there.
const Base = globalThis.HTMLElement ?? class {};

export class PaymentWindowTimer extends Base {
  static get observedAttributes() {
    return ['session-id', 'api-base', 'locale', 'view'];
  }

  #token = null;
  #tokenProvider = null;
  #timer = null;
  #t = null;
  #locale = 'en';
  #body = null; // the latest status body (live events merged in)
  #phase = null;
  #running = false;
  #stopped = false;
  #tickHandle = null;
  #syncing = null;
  #lastSyncAttempt = -Infinity;
  #events = null;
  #streamRetries = 0;
  #generation = 0; // bumps on every restart, so a late answer of an old run is dropped
  #el = {};
  #listeners = [];

  constructor() {
    super();
    const root = this.attachShadow({ mode: 'open' });
    root.innerHTML = `<style>${STYLE}</style>${MARKUP}`;
    for (const id of ['root', 'label', 'countdown', 'pay-by-line', 'warning', 'warning-lead', 'warning-body', 'connection', 'error', 'announcer', 'alert']) {
      this.#el[id] = root.getElementById(id);
    }
  }

  // A property set before the element was defined sits on the instance; take it over.
  #upgradeProperty(name) {
    if (Object.hasOwn(this, name)) {
      const value = this[name];
      delete this[name];
      this[name] = value;
    }
  }

  /** The bearer token for the status API; setting it (re)starts the element. */
  get token() {
    return this.#token;
  }

  set token(value) {
    this.#token = value || null;
    this.#maybeStart();
  }

  /** `async () => token`: asked first when no token is set, and again after every 401. */
  get tokenProvider() {
    return this.#tokenProvider;
  }

  set tokenProvider(fn) {
    this.#tokenProvider = typeof fn === 'function' ? fn : null;
    this.#maybeStart();
  }

  /** The timer's display state (timer.js), or null before the first status. */
  get state() {
    return this.#timer?.state ?? null;
  }

  /** The latest status body, as `payment-window:change` last carried it. */
  get status() {
    return this.#body;
  }

  get phase() {
    return this.#phase ?? 'loading';
  }

  get apiBase() {
    return apiBaseFor(this.getAttribute('api-base'), import.meta.url);
  }

  connectedCallback() {
    this.#upgradeProperty('token');
    this.#upgradeProperty('tokenProvider');
    this.#setUp();
    this.#maybeStart();
  }

  disconnectedCallback() {
    this.#stop();
    this.#running = false;
    for (const off of this.#listeners.splice(0)) off();
  }

  attributeChangedCallback(name, oldValue, newValue) {
    if (oldValue === newValue || !this.isConnected) return;
    this.#stop();
    this.#running = false;
    this.#setUp();
    this.#maybeStart();
  }

  /** Read the status now (the element does so by itself; a host may after its own changes). */
  refresh() {
    return this.#sync();
  }

  /** Feed a status body the host received (an override's answer) as if the element read it. */
  applyStatus(body, timing = {}) {
    return this.#apply(this.#timer.dispatch({ type: 'snapshot', body, ...timing }));
  }

  // ---- set-up and painting -------------------------------------------------------------

  #setUp() {
    this.#locale = this.getAttribute('locale') || document.documentElement.lang || navigator.language || 'en';
    const audience = this.getAttribute('view') === 'staff' ? 'staff' : 'buyer';
    this.#t = translator(this.#locale, { audience });
    const timeZone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    this.#timer = createTimer({ locale: this.#locale, timeZone, t: this.#t });
    this.#body = null;
    this.#phase = null;
    const t = this.#t;
    const el = this.#el;
    // The element speaks its own language even inside a page in another one.
    if (this.getAttribute('locale')) this.#el.root.setAttribute('lang', this.#locale);
    else this.#el.root.removeAttribute('lang');
    el.label.textContent = t('timer.label');
    el.countdown.textContent = '…';
    this.#paintPayBy('…', null);
    el['warning-lead'].textContent = t('timer.warning.lead');
    el['warning-body'].textContent = t('timer.warning.body');
    el.connection.textContent = t('timer.offline');
    el.error.hidden = true;
    el.warning.hidden = true;
    el.connection.hidden = true;
    el.announcer.textContent = '';
    el.alert.textContent = '';
    this.#setPhase('loading');
  }

  #paintPayBy(deadlineText, expiresAt) {
    const line = this.#el['pay-by-line'];
    const [before, after] = splitAround(this.#t('timer.payBy', { deadline: '\u0000' }), '\u0000');
    let time = line.querySelector('time');
    if (!time || line.childNodes.length !== 3 || line.firstChild.textContent !== before) {
      time = document.createElement('time');
      time.id = 'pay-by';
      time.setAttribute('part', 'deadline-time');
      line.replaceChildren(document.createTextNode(before), time, document.createTextNode(after));
    }
    if (time.textContent !== deadlineText) time.textContent = deadlineText;
    if (expiresAt != null) time.dateTime = new Date(expiresAt).toISOString();
  }

  #announce(text) {
    const node = this.#el.announcer;
    // Re-setting identical text is not a change to assistive tech; clear first so it repeats.
    if (node.textContent === text) node.textContent = '';
    node.textContent = text;
  }

  #setPhase(phase) {
    if (this.#phase === phase) return false;
    this.#phase = phase;
    this.setAttribute('phase', phase);
    return true;
  }

  #emit(name, detail) {
    this.dispatchEvent(new CustomEvent(name, { detail, bubbles: true, composed: true }));
  }

  #paint(state) {
    const el = this.#el;
    if (state.status != null && el.countdown.textContent !== state.text) el.countdown.textContent = state.text;
    if (state.expiresAt != null) this.#paintPayBy(state.payBy, state.expiresAt);
    el.warning.hidden = !state.warning;
    el.connection.hidden = !state.approximate;
    if (state.announce) this.#announce(state.announce);
    if (state.alert) el.alert.textContent = state.alert;
  }

  // The status body as the host sees it: the last one read, with live changes merged in.
  #mergeBody(state) {
    if (state.status == null) return false;
    const before = this.#body;
    const body = {
      ...(before ?? {}),
      status: state.status,
      reason: state.reason,
      version: state.version,
      expiresAt: sameInstant(before?.expiresAt, state.expiresAt) ? before.expiresAt : isoOrNull(state.expiresAt),
      checkoutUrl: state.checkoutUrl ?? before?.checkoutUrl ?? null,
    };
    const changed = !before || ['status', 'reason', 'version', 'expiresAt', 'checkoutUrl'].some((k) => before[k] !== body[k]);
    this.#body = body;
    return changed;
  }

  #apply(state, snapshotBody = null) {
    if (snapshotBody && this.#body) this.#body = { ...this.#body, ...snapshotBody };
    else if (snapshotBody) this.#body = { ...snapshotBody };
    this.#paint(state);
    const bodyChanged = this.#mergeBody(state);
    const phaseChanged = this.#setPhase(phaseOf(state));
    if ((bodyChanged || phaseChanged) && this.#body) this.#emit('payment-window:change', { ...this.#body, phase: this.#phase });
    if (FINAL.has(state.status)) {
      this.#stop();
    } else if (state.needsResync || state.approximate || state.status == null) {
      const gap = state.needsResync ? RESYNC_GAP_MS : RETRY_SYNC_MS;
      if (performance.now() - this.#lastSyncAttempt > gap) this.#sync();
    }
    return state;
  }

  #fail(code, status) {
    const key = { unauthorized: 'error.unauthorized', not_found: 'error.notFound', missing_token: 'error.missingToken' }[code];
    this.#el.error.textContent = this.#t(key);
    this.#el.error.hidden = false;
    this.#el.countdown.textContent = '—';
    this.#el.warning.hidden = true;
    this.#stop();
    this.#setPhase('error');
    this.#emit('payment-window:error', { code, status });
    return null;
  }

  // ---- network --------------------------------------------------------------------------

  async #currentToken(fresh = false) {
    if ((fresh || !this.#token) && this.#tokenProvider) {
      const token = await this.#tokenProvider();
      this.#token = token || null;
    }
    return this.#token;
  }

  // A JSON request with the bearer token; on a 401 the provider is asked once for a new one.
  // The send and receive times (wall and monotonic) let the timer estimate the server clock.
  async #request(path, init = {}) {
    let fresh = false;
    for (;;) {
      const token = await this.#currentToken(fresh);
      const sentAt = Date.now();
      const sentMono = performance.now();
      const response = await fetch(`${this.apiBase}${path}`, {
        cache: 'no-store',
        credentials: 'omit',
        ...init,
        headers: { Accept: 'application/json', Authorization: `Bearer ${token}`, ...init.headers },
      });
      const timing = { sentAt, sentMono, receivedAt: Date.now(), receivedMono: performance.now() };
      const body = await response.json().catch(() => null);
      if (response.status === 401 && !fresh && this.#tokenProvider) {
        fresh = true;
        continue;
      }
      return { status: response.status, body, timing };
    }
  }

  /** The host's own calls (the override controls) with the element's token handling. */
  request(path, init) {
    return this.#request(path, init);
  }

  #sessionPath() {
    return `/payments/checkout/${encodeURIComponent(this.getAttribute('session-id') ?? '')}`;
  }

  #sync() {
    if (this.#syncing) return this.#syncing;
    if (this.#stopped) return Promise.resolve(null);
    const generation = this.#generation;
    this.#lastSyncAttempt = performance.now();
    this.#syncing = this.#request(`${this.#sessionPath()}/status`)
      .then(({ status, body, timing }) => {
        if (generation !== this.#generation) return null;
        if (status === 401 || status === 403) return this.#fail('unauthorized', status);
        if (status === 404) return this.#fail('not_found', status);
        if (status !== 200 || !body) return null;
        return this.#apply(this.#timer.dispatch({ type: 'snapshot', body, ...timing }), body);
      })
      .catch(() => {
        if (generation !== this.#generation || this.#stopped) return null;
        // Unreachable: keep counting on the last offset and say the time may be off.
        this.#apply(this.#timer.dispatch({ type: 'offline', ...clock() }));
        return null;
      })
      .finally(() => {
        this.#syncing = null;
      });
    return this.#syncing;
  }

  #tick = () => {
    this.#apply(this.#timer.dispatch({ type: 'tick', ...clock() }));
    this.#schedule();
  };

  #schedule() {
    clearTimeout(this.#tickHandle);
    if (this.#stopped) return;
    // Before the first status, and at a local zero while the server has not confirmed, keep a
    // plain one-second beat so clock jumps are still noticed.
    const delay = this.#timer.nextTickDelay(Date.now()) ?? 1000;
    this.#tickHandle = setTimeout(this.#tick, Math.min(delay, 1010));
  }

  #onServerEvent = ({ event, data }) => {
    let payload = {};
    try {
      payload = JSON.parse(data) ?? {};
    } catch {
      // A comment-like or empty payload: the event name alone still tells us to look.
    }
    if (SERVER_EVENTS.has(event)) this.#apply(this.#timer.dispatch({ ...payload, type: event, ...clock() }));
    else this.#sync();
  };

  async #listen() {
    if (this.#events || this.#stopped) return;
    const controller = new AbortController();
    this.#events = controller;
    let first = true;
    const token = await this.#currentToken(false).catch(() => null);
    if (controller.signal.aborted) return;
    subscribe(`${this.apiBase}${this.#sessionPath()}/events`, {
      token,
      signal: controller.signal,
      onEvent: this.#onServerEvent,
      // Anything may have happened while disconnected; the status endpoint is the truth.
      onOpen: () => {
        this.#streamRetries = 0;
        if (!first) this.#sync();
        first = false;
      },
      onFatal: async (status) => {
        if (this.#events === controller) this.#events = null;
        // An expired token: a provider gives a new one and the stream goes on.
        if (status === 401 && this.#tokenProvider && this.#streamRetries < MAX_STREAM_TOKEN_RETRIES) {
          this.#streamRetries += 1;
          await this.#currentToken(true).catch(() => null);
          this.#listen();
        }
      },
    });
  }

  #stop() {
    this.#stopped = true;
    clearTimeout(this.#tickHandle);
    this.#events?.abort();
    this.#events = null;
  }

  #on(target, type, handler) {
    target.addEventListener(type, handler);
    this.#listeners.push(() => target.removeEventListener(type, handler));
  }

  #wireLifecycle() {
    for (const off of this.#listeners.splice(0)) off();
    const alive = () => !this.#stopped;
    this.#on(document, 'visibilitychange', () => {
      if (document.visibilityState === 'visible' && alive()) this.#apply(this.#timer.dispatch({ type: 'visible', ...clock() }));
    });
    this.#on(window, 'online', () => alive() && this.#apply(this.#timer.dispatch({ type: 'online', ...clock() })));
    this.#on(window, 'offline', () => alive() && this.#apply(this.#timer.dispatch({ type: 'offline', ...clock() })));
    // An open stream keeps the page out of the back/forward cache; reopen it on the way back.
    this.#on(window, 'pagehide', () => {
      this.#events?.abort();
      this.#events = null;
    });
    this.#on(window, 'pageshow', (event) => {
      if (!event.persisted || !alive()) return;
      this.#apply(this.#timer.dispatch({ type: 'visible', ...clock() }));
      this.#listen();
      this.#schedule();
    });
  }

  #maybeStart() {
    if (this.#running || !this.isConnected || !this.#timer) return;
    if (!this.getAttribute('session-id') || (!this.#token && !this.#tokenProvider)) return;
    this.#running = true;
    this.#start();
  }

  async #start() {
    this.#generation += 1;
    const generation = this.#generation;
    this.#stopped = false;
    this.#streamRetries = 0;
    this.#wireLifecycle();
    if (!navigator.onLine) this.#apply(this.#timer.dispatch({ type: 'offline', ...clock() }));
    for (let i = 0; i < START_SAMPLES && !this.#stopped; i += 1) {
      const state = await this.#sync();
      if (generation !== this.#generation) return;
      if (!state) break;
      if (i === 0) this.#schedule();
    }
    if (!this.#stopped && generation === this.#generation) {
      this.#schedule();
      this.#listen();
    }
  }
}

if (globalThis.customElements && !customElements.get('payment-window-timer')) {
  customElements.define('payment-window-timer', PaymentWindowTimer);
}
