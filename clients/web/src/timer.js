// The payment-window "bloc": events in, display state out. No DOM, no globals, no clock of
// its own — every time it needs arrives in an event, so tests drive it with plain numbers.
//
// Time model. The deadline is server time; the device's wall clock (Date.now()) is offset from
// it by `offset`, estimated from status round trips. Wall time can jump (the user changes the
// clock, NTP steps it, a laptop wakes), so each event that carries both the wall time (`now`)
// and the monotonic time (`mono`, performance.now()) is checked: if wall and monotonic time
// disagree about how much time passed, the countdown follows the monotonic clock and asks for
// a resync, because only the server can say which of the two was right.

import { formatDeadline, formatRemaining, formatRemainingLong } from './format.js';
import { translator } from './i18n.js';

/** Minutes left at which the polite status region speaks, highest first. */
export const THRESHOLD_MINUTES = [60, 30, 15, 5, 1];

const SAMPLE_WINDOW = 5; // "the last few" round trips
const AGE_PENALTY = 1e-3; // 1 ms of uncertainty per second of sample age: far above real drift
const JUMP_TOLERANCE_MS = 1000; // wall vs monotonic disagreement tolerated before re-anchoring
const GAP_MS = 5000; // ticks come every second; a longer silence means sleep or a frozen tab
const RESYNC_EVERY_MS = 5 * 60 * 1000; // bounds drift between the server and a long-open page
const ANNOUNCE_SPACING_MS = 60 * 1000;
const TICK_MARGIN_MS = 10; // land just past the second boundary, never just before it

export const CLOSED_TEXT = translator('en')('timer.closed');

/**
 * Create a timer. `locale` and `timeZone` are the viewer's; they only shape the text, as does
 * `t` (i18n.js `translator`: the words, the buyer's or the staff's; by default the locale's).
 * Returns `{dispatch(event) -> state, state, nextTickDelay(nowMs), serverNow(nowMs)}`.
 */
export function createTimer({ locale = 'en-GB', timeZone = 'UTC', t = translator(locale) } = {}) {
  const m = {
    status: null,
    reason: null,
    expiresAt: null,
    version: null,
    checkoutUrl: null,
    details: {},
    offset: 0,
    samples: [],
    lastWall: null,
    lastMono: null,
    lastSyncMono: null,
    offline: false,
    needsResync: false,
    prevSeconds: null,
    announced: new Set(),
    lastAnnounceMono: null,
    alerted: false,
  };
  let state = null;

  const serverNow = (wall) => wall + m.offset;

  // Re-anchor on monotonic time when the wall clock disagrees with it; flag long gaps.
  function observeClocks(now, mono) {
    if (now == null) return;
    if (mono != null && m.lastWall != null && m.lastMono != null) {
      const wallDelta = now - m.lastWall;
      const monoDelta = mono - m.lastMono;
      if (Math.abs(wallDelta - monoDelta) > JUMP_TOLERANCE_MS) {
        m.offset += monoDelta - wallDelta;
        // Earlier samples were measured against the old wall clock; they no longer apply.
        m.samples = [];
        m.needsResync = true;
      } else if (monoDelta > GAP_MS) {
        m.needsResync = true;
      }
    }
    if (mono != null && m.lastSyncMono != null && mono - m.lastSyncMono > RESYNC_EVERY_MS) {
      m.needsResync = true;
    }
    m.lastWall = now;
    if (mono != null) m.lastMono = mono;
  }

  // Lowest round trip wins; age adds uncertainty so a stale sample cannot hold out forever.
  function addSample(ev, body) {
    const { sentAt, receivedAt } = ev;
    if (sentAt == null || receivedAt == null || !body.serverTime) return;
    const wallRtt = receivedAt - sentAt;
    const monoRtt = ev.sentMono != null && ev.receivedMono != null ? ev.receivedMono - ev.sentMono : wallRtt;
    // The wall clock moved during the request: its midpoint means nothing.
    if (Math.abs(wallRtt - monoRtt) > JUMP_TOLERANCE_MS || monoRtt < 0) return;
    const sample = {
      offset: Date.parse(body.serverTime) - (sentAt + receivedAt) / 2,
      rtt: monoRtt,
      mono: ev.receivedMono ?? m.lastMono ?? 0,
    };
    m.samples = [...m.samples, sample].slice(-SAMPLE_WINDOW);
    const at = sample.mono;
    const score = (s) => s.rtt / 2 + (at - s.mono) * AGE_PENALTY;
    m.offset = m.samples.reduce((best, s) => (score(s) < score(best) ? s : best)).offset;
    m.lastSyncMono = at;
    m.needsResync = false;
  }

  // Returns true when the event is newer than what is shown (or carries no version).
  function accept(version, allowEqual) {
    if (version == null || m.version == null) return true;
    return allowEqual ? version >= m.version : version > m.version;
  }

  function applyBody(body) {
    if (body.status) m.status = body.status;
    if ('reason' in body) m.reason = body.reason ?? null;
    if (body.expiresAt) m.expiresAt = Date.parse(body.expiresAt);
    if (body.version != null) m.version = body.version;
    if (body.checkoutUrl) m.checkoutUrl = body.checkoutUrl;
    for (const key of ['sessionId', 'auctionId', 'amount', 'currency', 'makerId']) {
      if (body[key] != null) m.details[key] = body[key];
    }
  }

  function remainingMs(wall) {
    if (m.expiresAt == null || wall == null) return null;
    return Math.max(0, m.expiresAt - serverNow(wall));
  }

  // Threshold announcements: each once per descent, at most one a minute, none for
  // thresholds already behind us when the page first learns the deadline.
  function thresholdAnnouncement(seconds) {
    if (m.prevSeconds == null) {
      for (const t of THRESHOLD_MINUTES) if (seconds <= t * 60) m.announced.add(t);
      return null;
    }
    // An extension puts thresholds back ahead of us; they may speak again on the way down.
    for (const t of THRESHOLD_MINUTES) if (seconds > t * 60) m.announced.delete(t);
    const crossed = THRESHOLD_MINUTES.filter((t) => seconds <= t * 60 && !m.announced.has(t));
    if (crossed.length === 0 || seconds === 0) {
      crossed.forEach((t) => m.announced.add(t));
      return null;
    }
    crossed.forEach((t) => m.announced.add(t));
    const mono = m.lastMono ?? m.lastWall ?? 0;
    if (m.lastAnnounceMono != null && mono - m.lastAnnounceMono < ANNOUNCE_SPACING_MS) return null;
    m.lastAnnounceMono = mono;
    return t('announce.threshold', { duration: formatRemainingLong(seconds, locale) });
  }

  function render(wall, extraAnnounce = null) {
    const ms = remainingMs(wall);
    const seconds = ms == null ? null : Math.ceil(ms / 1000);
    const open = m.status === 'open';
    const closed = m.status != null && (!open || seconds === 0);
    let announce = null;
    let alert = null;
    let text;
    let title;
    if (open && seconds != null) {
      announce = thresholdAnnouncement(seconds);
      m.prevSeconds = seconds;
      if (seconds > 0) m.alerted = false;
    }
    if (m.status === 'paid') {
      text = t('timer.paid');
      title = t('title.paid');
    } else if (m.status === 'awaiting_payment_confirmation') {
      text = t('timer.awaiting');
      title = t('title.awaiting');
    } else if (closed) {
      text = t('timer.closed');
      title = t('title.closed');
    } else if (seconds != null) {
      text = formatRemaining(seconds, locale);
      title = t('title.open', { remaining: text });
    } else {
      text = '';
      title = t('title.base');
    }
    if (closed && m.status !== 'paid' && m.status !== 'awaiting_payment_confirmation' && !m.alerted) {
      // Only a closing seen while the page was open is news; a page that loads closed says so.
      if (state && state.status === 'open' && !state.closed) alert = t('timer.closed');
      m.alerted = true;
    }
    state = Object.freeze({
      status: m.status,
      reason: m.reason,
      version: m.version,
      expiresAt: m.expiresAt,
      payBy: m.expiresAt == null ? '' : formatDeadline(m.expiresAt, { locale, timeZone, nowMs: serverNow(wall ?? 0) }),
      remainingMs: ms,
      remainingSeconds: seconds,
      text,
      title,
      warning: open && ms != null && ms > 0 && ms < 3_600_000,
      closed,
      announce: extraAnnounce ?? announce,
      alert,
      approximate: m.offline,
      needsResync: m.needsResync,
      checkoutUrl: m.checkoutUrl,
      offsetMs: m.offset,
      ...m.details,
    });
    return state;
  }

  function dispatch(ev) {
    const now = ev.now ?? ev.receivedAt ?? m.lastWall;
    observeClocks(ev.now ?? ev.receivedAt, ev.mono ?? ev.receivedMono);
    let extra = null;
    switch (ev.type) {
      case 'snapshot':
        addSample(ev, ev.body);
        if (accept(ev.body.version, true)) applyBody(ev.body);
        m.offline = false;
        break;
      case 'tick':
        break;
      case 'offline':
        m.offline = true;
        break;
      case 'online':
      case 'visible':
        if (ev.type === 'online') m.offline = false;
        m.needsResync = true;
        break;
      case 'extended':
        if (accept(ev.version, false)) {
          applyBody({ status: 'open', expiresAt: ev.expiresAt, version: ev.version });
          extra = t('announce.extended', { deadline: formatDeadline(m.expiresAt, { locale, timeZone, nowMs: serverNow(now ?? 0) }) });
        }
        break;
      case 'expired':
      case 'terminated':
        if (accept(ev.version, false)) {
          applyBody({ status: 'expired', reason: ev.reason ?? (ev.type === 'terminated' ? 'terminated' : 'deadline'), version: ev.version });
        }
        break;
      case 'paid':
        if (accept(ev.version, false) && m.status !== 'paid') {
          applyBody({ status: 'paid', version: ev.version });
          extra = t('announce.paid');
        }
        break;
      case 'rotated':
        if (ev.checkoutUrl) m.checkoutUrl = ev.checkoutUrl;
        break;
      default:
        throw new Error(`unknown timer event: ${ev.type}`);
    }
    return render(now, extra);
  }

  /** Milliseconds until the displayed second next changes, or null when nothing will. */
  function nextTickDelay(nowMs) {
    const ms = remainingMs(nowMs);
    if (ms == null || ms <= 0 || m.status !== 'open') return null;
    return (ms % 1000 || 1000) + TICK_MARGIN_MS;
  }

  return {
    dispatch,
    nextTickDelay,
    serverNow,
    get state() {
      return state;
    },
  };
}
