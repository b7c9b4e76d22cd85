import { test } from 'node:test';
import assert from 'node:assert/strict';

import { CLOSED_TEXT, createTimer } from '../src/timer.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const BASE = Date.parse('2025-01-15T12:00:00Z');

// A simulated world: true time `t`, the server clock (exact), the device wall clock (skewed,
// possibly drifting, possibly stepped) and the monotonic clock (never stepped).
function world({ skew = 0, drift = 0 } = {}) {
  let t = 0;
  let step = 0;
  let monoPaused = 0;
  const w = {
    server: () => BASE + t,
    wall: () => Math.round(BASE + t + skew + t * drift + step),
    mono: () => 5000 + t - monoPaused,
    advance(ms) {
      t += ms;
    },
    stepWall(ms) {
      step += ms;
    },
    // Some platforms stop the monotonic clock while the machine sleeps.
    sleepWithMonoPaused(ms) {
      t += ms;
      monoPaused += ms;
    },
    body(over = {}) {
      return {
        sessionId: 'cs_1',
        auctionId: 'auc_1',
        status: 'open',
        expiresAt: new Date(BASE + 2 * HOUR).toISOString(),
        serverTime: new Date(w.server()).toISOString(),
        remainingTime: 0,
        version: 1,
        reason: null,
        checkoutUrl: 'https://checkout.stripe.test/c/pay/cs_1',
        ...over,
      };
    },
    // One status round trip: `up` ms to reach the server, `down` ms back.
    snapshot(timer, over = {}, { up = 50, down = 50 } = {}) {
      const sentAt = w.wall();
      const sentMono = w.mono();
      w.advance(up);
      const body = w.body(over);
      w.advance(down);
      return timer.dispatch({ type: 'snapshot', body, sentAt, receivedAt: w.wall(), sentMono, receivedMono: w.mono() });
    },
    tick(timer) {
      return timer.dispatch({ type: 'tick', now: w.wall(), mono: w.mono() });
    },
  };
  return w;
}

const trueRemaining = (w, deadline = BASE + 2 * HOUR) => deadline - w.server();
const deadlineIn = (w, ms) => new Date(w.server() + ms).toISOString();

// Tick once a second (or `every` ms) for `ms`, collecting every state.
function run(w, timer, ms, every = 1000) {
  const states = [];
  for (let elapsed = 0; elapsed < ms; elapsed += every) {
    w.advance(every);
    states.push(w.tick(timer));
  }
  return states;
}

test('remaining time comes from the deadline and the estimated server clock, not the device clock', () => {
  const w = world({ skew: 7 * MIN });
  const timer = createTimer();
  const s = w.snapshot(timer);
  assert.ok(Math.abs(s.remainingMs - trueRemaining(w)) <= 1, `${s.remainingMs} vs ${trueRemaining(w)}`);
  assert.ok(Math.abs(s.offsetMs + 7 * MIN) <= 1);
  assert.equal(s.status, 'open');
  assert.equal(s.checkoutUrl, 'https://checkout.stripe.test/c/pay/cs_1');
});

test('offset is server time minus the midpoint of send and receive', () => {
  const w = world({ skew: 2000 });
  const timer = createTimer();
  const s = w.snapshot(timer, {}, { up: 100, down: 100 });
  assert.equal(s.offsetMs, -2000);
});

test('the lowest round trip wins, whatever order the samples arrive in', () => {
  const w = world({ skew: 0 });
  const timer = createTimer();
  // Asymmetric slow trips bias the midpoint; the fast symmetric one is the truth.
  w.snapshot(timer, {}, { up: 900, down: 100 });
  w.snapshot(timer, {}, { up: 20, down: 20 });
  const s = w.snapshot(timer, {}, { up: 100, down: 700 });
  assert.equal(s.offsetMs, 0);
});

test('only the last few samples count', () => {
  const w = world();
  const timer = createTimer();
  w.snapshot(timer, {}, { up: 5, down: 5 });
  let s;
  for (let i = 0; i < 5; i += 1) s = w.snapshot(timer, {}, { up: 300, down: 100 });
  assert.equal(s.offsetMs, 100, 'the fast sample has left the window; the biased ones remain');
});

test('a drifting device clock is pulled back by the periodic resync', () => {
  const w = world({ drift: 0.002 }); // 2 ms fast per second: extreme, to show the effect
  const timer = createTimer();
  w.snapshot(timer, {}, { up: 10, down: 10 });
  const states = run(w, timer, 6 * MIN);
  const last = states.at(-1);
  assert.ok(last.remainingMs < trueRemaining(w) - 500, 'uncorrected, the device clock runs ahead');
  assert.equal(last.needsResync, true, 'a resync is due after five minutes');
  // A slower, fresher sample beats the old fast one because age adds uncertainty.
  const s = w.snapshot(timer, {}, { up: 60, down: 60 });
  assert.ok(Math.abs(s.remainingMs - trueRemaining(w)) <= 2, `${s.remainingMs} vs ${trueRemaining(w)}`);
  assert.equal(s.needsResync, false);
});

for (const jump of [HOUR, -HOUR]) {
  test(`a device clock jump of ${jump / HOUR} h moves the countdown by at most a second`, () => {
    const w = world();
    const timer = createTimer();
    w.snapshot(timer);
    const before = run(w, timer, 10_000).at(-1);
    w.stepWall(jump);
    w.advance(1000);
    const after = w.tick(timer);
    assert.ok(Math.abs(before.remainingMs - after.remainingMs - 1000) <= 1000);
    assert.ok(Math.abs(after.remainingMs - trueRemaining(w)) <= 1000);
    assert.equal(after.needsResync, true);
    // Later ticks keep following real time on the new wall clock.
    const later = run(w, timer, 5000).at(-1);
    assert.ok(Math.abs(later.remainingMs - trueRemaining(w)) <= 1000);
  });
}

test('a jump after a sample does not let that stale sample win again', () => {
  const w = world();
  const timer = createTimer();
  w.snapshot(timer, {}, { up: 5, down: 5 });
  w.advance(1000);
  w.tick(timer);
  w.stepWall(HOUR);
  w.advance(1000);
  w.tick(timer);
  const s = w.snapshot(timer, {}, { up: 200, down: 200 });
  assert.equal(s.offsetMs, -HOUR);
  assert.ok(Math.abs(s.remainingMs - trueRemaining(w)) <= 1);
});

test('a sample taken while the wall clock stepped is ignored', () => {
  const w = world();
  const timer = createTimer();
  w.snapshot(timer);
  const sentAt = w.wall();
  const sentMono = w.mono();
  w.advance(50);
  const body = w.body();
  w.stepWall(30 * MIN);
  w.advance(50);
  const s = timer.dispatch({ type: 'snapshot', body, sentAt, receivedAt: w.wall(), sentMono, receivedMono: w.mono() });
  assert.ok(Math.abs(s.remainingMs - trueRemaining(w)) <= 1000);
});

test('a long gap between ticks (sleep, frozen tab) asks for a resync', () => {
  const w = world();
  const timer = createTimer();
  w.snapshot(timer);
  w.tick(timer);
  w.advance(30 * MIN);
  const s = w.tick(timer);
  assert.equal(s.needsResync, true);
  assert.ok(Math.abs(s.remainingMs - trueRemaining(w)) <= 1);
});

test('sleep that pauses the monotonic clock is held, then corrected by the resync', () => {
  const w = world();
  const timer = createTimer();
  w.snapshot(timer);
  const before = w.tick(timer);
  w.sleepWithMonoPaused(30 * MIN);
  const held = w.tick(timer);
  assert.equal(held.needsResync, true);
  assert.ok(Math.abs(held.remainingMs - before.remainingMs) <= 1000, 'indistinguishable from a clock change');
  const s = w.snapshot(timer);
  assert.ok(Math.abs(s.remainingMs - trueRemaining(w)) <= 1);
});

function announcementsWhileCountingDown(w, timer, ms, every) {
  return run(w, timer, ms, every)
    .filter((s) => s.announce)
    .map((s) => [s.remainingSeconds, s.announce]);
}

test('announces at exactly 60, 30, 15, 5 and 1 minutes left, each once', () => {
  const w = world();
  const timer = createTimer();
  w.snapshot(timer, { expiresAt: deadlineIn(w, 61 * MIN + 400) });
  assert.equal(timer.state.announce, null);
  const got = announcementsWhileCountingDown(w, timer, 62 * MIN, 1000);
  assert.deepEqual(got, [
    [3600, '1 hour left to pay'],
    [1800, '30 minutes left to pay'],
    [900, '15 minutes left to pay'],
    [300, '5 minutes left to pay'],
    [60, '1 minute left to pay'],
  ]);
});

test('jittery ticks and a resync that nudges the clock back do not repeat an announcement', () => {
  const w = world();
  const timer = createTimer();
  const expiresAt = deadlineIn(w, 30 * MIN + 3000);
  // A lopsided trip: the estimate runs 100 ms ahead of the server.
  w.snapshot(timer, { expiresAt }, { up: 300, down: 100 });
  const got = announcementsWhileCountingDown(w, timer, 2550, 50);
  assert.deepEqual(got, [[1800, '30 minutes left to pay']]);
  // A faster sample corrects it: the countdown goes back over the 30-minute mark and crosses it again.
  const nudged = w.snapshot(timer, { expiresAt }, { up: 10, down: 10 });
  assert.equal(nudged.remainingSeconds, 1801);
  const again = announcementsWhileCountingDown(w, timer, 3000, 170);
  assert.deepEqual(again, []);
});

test('a page that opens already under a threshold stays quiet until the next one', () => {
  const w = world();
  const timer = createTimer();
  const first = w.snapshot(timer, { expiresAt: deadlineIn(w, 45 * MIN) });
  assert.equal(first.announce, null);
  assert.equal(first.warning, true);
  const got = announcementsWhileCountingDown(w, timer, 16 * MIN, 1000);
  assert.deepEqual(got, [[1800, '30 minutes left to pay']]);
});

test('crossing several thresholds at once gives one announcement of the real time left', () => {
  const w = world();
  const timer = createTimer();
  w.snapshot(timer, { expiresAt: deadlineIn(w, 40 * MIN) });
  w.tick(timer);
  w.advance(30 * MIN); // asleep
  const s = w.tick(timer);
  assert.equal(s.announce, '10 minutes left to pay');
  assert.deepEqual(announcementsWhileCountingDown(w, timer, 6 * MIN, 1000), [[300, '5 minutes left to pay']]);
});

test('never two threshold announcements within a minute', () => {
  const w = world();
  const timer = createTimer();
  w.snapshot(timer, { expiresAt: deadlineIn(w, 30 * MIN + 2000) });
  assert.equal(announcementsWhileCountingDown(w, timer, 3000, 1000).length, 1);
  // An extension of 20 seconds puts the 30-minute mark back ahead, 20 s later it is crossed again.
  const extended = timer.dispatch({ type: 'extended', expiresAt: new Date(timer.state.expiresAt + 20_000).toISOString(), version: 2, now: w.wall(), mono: w.mono() });
  assert.match(extended.announce, /^Payment window extended — pay by /);
  assert.deepEqual(announcementsWhileCountingDown(w, timer, 30_000, 1000), []);
});

test('an extension re-arms the thresholds it moved ahead of', () => {
  const w = world();
  const timer = createTimer();
  w.snapshot(timer, { expiresAt: deadlineIn(w, 20 * MIN) });
  run(w, timer, 10_000);
  timer.dispatch({ type: 'extended', expiresAt: deadlineIn(w, 60 * MIN + 5000), version: 2, now: w.wall(), mono: w.mono() });
  const got = announcementsWhileCountingDown(w, timer, 10_000, 1000);
  assert.deepEqual(got, [[3600, '1 hour left to pay']]);
});

test('warning is on under 60 minutes only', () => {
  const w = world();
  const timer = createTimer();
  assert.equal(w.snapshot(timer, { expiresAt: deadlineIn(w, 60 * MIN + 2000) }).warning, false);
  const states = run(w, timer, 3000);
  assert.deepEqual(states.map((s) => s.warning), [false, true, true]);
});

test('reaching zero closes the window and alerts exactly once', () => {
  const w = world();
  const timer = createTimer();
  w.snapshot(timer, { expiresAt: deadlineIn(w, 3000) });
  const states = run(w, timer, 6000);
  assert.deepEqual(states.filter((s) => s.alert).map((s) => s.alert), [CLOSED_TEXT]);
  const last = states.at(-1);
  assert.equal(last.closed, true);
  assert.equal(last.text, CLOSED_TEXT);
  assert.equal(last.remainingSeconds, 0);
  assert.equal(timer.nextTickDelay(w.wall()), null);
  // The server's own expiry arriving afterwards is not news.
  const s = timer.dispatch({ type: 'expired', reason: 'deadline', version: 2, now: w.wall(), mono: w.mono() });
  assert.equal(s.alert, null);
  assert.equal(s.status, 'expired');
});

test('a page that loads already expired does not alert', () => {
  const w = world();
  const timer = createTimer();
  w.tick(timer);
  const s = w.snapshot(timer, { status: 'expired', reason: 'deadline', expiresAt: deadlineIn(w, -MIN) });
  assert.equal(s.closed, true);
  assert.equal(s.alert, null);
  assert.equal(s.text, CLOSED_TEXT);
});

test('termination by an admin closes an open window with one alert', () => {
  const w = world();
  const timer = createTimer();
  w.snapshot(timer);
  const s = timer.dispatch({ type: 'terminated', version: 2, now: w.wall(), mono: w.mono() });
  assert.equal(s.closed, true);
  assert.equal(s.status, 'expired');
  assert.equal(s.reason, 'terminated');
  assert.equal(s.alert, CLOSED_TEXT);
  assert.equal(w.tick(timer).alert, null);
});

test('payment closes the window with an announcement, not an alert', () => {
  const w = world();
  const timer = createTimer();
  w.snapshot(timer);
  const s = timer.dispatch({ type: 'paid', version: 2, now: w.wall(), mono: w.mono() });
  assert.equal(s.closed, true);
  assert.equal(s.alert, null);
  assert.equal(s.announce, 'Payment received — thank you');
  assert.equal(s.title, 'Paid · Checkout');
});

test('offline marks the time approximate; online clears it and asks for a resync', () => {
  const w = world();
  const timer = createTimer();
  w.snapshot(timer);
  const off = timer.dispatch({ type: 'offline', now: w.wall(), mono: w.mono() });
  assert.equal(off.approximate, true);
  w.advance(1000);
  assert.equal(w.tick(timer).approximate, true, 'the countdown keeps running offline');
  const on = timer.dispatch({ type: 'online', now: w.wall(), mono: w.mono() });
  assert.equal(on.approximate, false);
  assert.equal(on.needsResync, true);
  assert.equal(w.snapshot(timer).needsResync, false);
});

test('becoming visible asks for a resync', () => {
  const w = world();
  const timer = createTimer();
  w.snapshot(timer);
  assert.equal(timer.dispatch({ type: 'visible', now: w.wall(), mono: w.mono() }).needsResync, true);
});

test('events older than what is shown are ignored', () => {
  const w = world();
  const timer = createTimer();
  w.snapshot(timer, { version: 5 });
  const s = timer.dispatch({ type: 'expired', version: 4, now: w.wall(), mono: w.mono() });
  assert.equal(s.status, 'open');
  const stale = w.snapshot(timer, { version: 3, status: 'expired' });
  assert.equal(stale.status, 'open');
});

test('a rotated checkout URL replaces the old one', () => {
  const w = world();
  const timer = createTimer();
  w.snapshot(timer);
  const s = timer.dispatch({ type: 'rotated', checkoutUrl: 'https://checkout.stripe.test/c/pay/cs_2', now: w.wall(), mono: w.mono() });
  assert.equal(s.checkoutUrl, 'https://checkout.stripe.test/c/pay/cs_2');
});

test('the next tick lands just after the displayed second changes', () => {
  const w = world();
  const timer = createTimer();
  w.snapshot(timer, { expiresAt: deadlineIn(w, 5300) }, { up: 0, down: 0 });
  assert.equal(timer.nextTickDelay(w.wall()), 310);
  w.advance(310);
  assert.equal(w.tick(timer).remainingSeconds, 5);
  assert.equal(timer.nextTickDelay(w.wall()), 1000);
});

test('text and title follow the time left', () => {
  const w = world();
  const timer = createTimer({ locale: 'en-GB', timeZone: 'Europe/Berlin' });
  const s = w.snapshot(timer, { expiresAt: deadlineIn(w, 3 * HOUR + 12 * MIN + 30_000) }, { up: 0, down: 0 });
  assert.equal(s.text, '3 hrs 12 mins');
  assert.equal(s.title, '3 hrs 12 mins left to pay · Checkout');
  assert.equal(s.payBy, '16:12 CET');
});
