// DOM glue for the operations page: the summary with the repeat non-payers, a sortable table of
// windows with live countdowns and each buyer's record, and extend/terminate per row. Time logic
// is the checkout page's own timer (one per row, fed the list's serverTime); the controls are its
// override module.

import { formatRemaining } from './format.js';
import { translator } from './i18n.js';
import { mountOverride } from './override.js';
import { mountPolicy } from './ops_policy.js';
import { createTimer } from './timer.js';
import { requester, takeToken } from './token.js';

const PAGE_SIZE = 100;
// Buyer records are read one buyer at a time (the endpoint the marketplace uses too), a few at
// once, each buyer once per load however many of their windows are listed.
const RECORD_REQUESTS_AT_ONCE = 4;
const STATUS_ORDER = ['open', 'awaiting_payment_confirmation', 'paid', 'expired'];

const $ = (id) => document.getElementById(id);
const el = {
  root: $('ops'),
  serverTime: $('server-time'),
  refresh: $('refresh'),
  error: $('page-error'),
  reasons: $('expired-reasons'),
  filters: $('filters'),
  rows: $('window-rows'),
  empty: $('empty'),
  more: $('load-more'),
  announcer: $('announcer'),
  table: $('windows'),
  nonPayers: $('non-payer-rows'),
  noNonPayers: $('no-non-payers'),
  nonPayersDays: $('non-payers-days'),
  buyerFilter: $('filter-buyer'),
};
const FIGURES = {
  openCount: $('open-count'),
  dueWithinHour: $('due-within-hour'),
  overdueCount: $('overdue-count'),
  failingAtStripe: $('failing-at-stripe'),
  awaitingConfirmationOverDay: $('awaiting-over-day'),
  duplicatePayments: $('duplicate-payments'),
  undeliveredOutbox: $('undelivered-outbox'),
};

const locale = navigator.language || 'en';
const timeZone = Intl.DateTimeFormat().resolvedOptions().timeZone;
const clock = () => ({ now: Date.now(), mono: performance.now() });
// The operations page is in English; numbers and dates follow the browser's region.
const t = translator('en');

const rows = new Map(); // sessionId -> row
const records = new Map(); // buyerId -> Promise of the buyer's record (or null when unreadable)
let rowCount = 0;
let cursor = null;
let sort = { key: 'deadline', dir: 1 };
let stopped = false;
let tickHandle = null;
const serverClock = createTimer({ locale, timeZone, t }); // the summary's own drift-corrected clock

const token = takeToken('payment-window-token:ops');
const request = requester(token);

function announce(text) {
  if (el.announcer.textContent === text) el.announcer.textContent = '';
  el.announcer.textContent = text;
}

function fail(text) {
  el.error.textContent = text;
  el.error.hidden = false;
  el.root.dataset.state = 'error';
  stopped = true;
  clearTimeout(tickHandle);
}

// 401 and 403 end the page: nothing on it would work.
function refused(status, body) {
  if (status === 401) {
    fail('Your sign-in is missing or has expired. Open the operations link again.');
  } else if (status === 403) {
    fail('This page is for operations admins only: your token does not allow it.');
  } else if (status !== 200) {
    fail(body?.error?.message ?? `The server answered HTTP ${status}. Try Refresh.`);
  } else {
    return false;
  }
  return true;
}

// --- summary ---------------------------------------------------------------------------------

function describeReasons(byReason) {
  const parts = Object.entries(byReason).map(([reason, count]) => `${reason.replace(/_/g, ' ')}: ${count}`);
  return parts.length ? parts.join(', ') : 'none';
}

// The buyer's windows: the page itself, filtered. A plain link, so it opens in a new tab too.
function buyerLink(buyerId) {
  const link = document.createElement('a');
  link.href = `/ops?${new URLSearchParams({ buyerId })}`;
  link.className = 'buyer-link';
  link.textContent = buyerId;
  link.title = `Show the windows of buyer ${buyerId}`;
  link.addEventListener('click', (event) => {
    if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    showBuyer(buyerId);
  });
  return link;
}

function showBuyer(buyerId) {
  el.buyerFilter.value = buyerId;
  history.pushState(null, '', `/ops?${new URLSearchParams({ buyerId })}`);
  loadWindows({ reset: true }).then(() => announce(`Showing the windows of buyer ${buyerId}`));
}

function renderNonPayers(body) {
  el.nonPayersDays.textContent = String(body.buyerPeriodDays);
  el.nonPayers.replaceChildren(
    ...body.repeatNonPayers.map((entry) => {
      const tr = document.createElement('tr');
      tr.dataset.buyerId = entry.buyerId;
      const buyer = cell('buyer');
      buyer.append(buyerLink(entry.buyerId));
      tr.append(buyer, cell('unpaid num', String(entry.unpaid)), cell('opened num', String(entry.opened)));
      return tr;
    }),
  );
  el.noNonPayers.hidden = body.repeatNonPayers.length > 0;
  $('non-payers').hidden = body.repeatNonPayers.length === 0;
}

async function loadSummary() {
  const { status, body, timing } = await request('/payments/windows/summary');
  if (refused(status, body)) return false;
  serverClock.dispatch({ type: 'snapshot', body: { serverTime: body.serverTime }, ...timing });
  for (const [key, node] of Object.entries(FIGURES)) node.textContent = String(body[key]);
  $('oldest-overdue').textContent = body.oldestOverdueSeconds == null ? '—' : formatRemaining(body.oldestOverdueSeconds, locale);
  // The shared pace now, of the configured budget (below it after a 429 from Stripe).
  const pace = new Intl.NumberFormat(locale, { maximumFractionDigits: 1 });
  $('stripe-budget').textContent = `${pace.format(body.stripeBudgetRps)} / ${pace.format(body.stripeBudgetMaxRps)}`;
  $('stripe-budget').parentElement.dataset.slowed = String(body.stripeBudgetRps < body.stripeBudgetMaxRps);
  el.root.querySelectorAll('.figures .alarm').forEach((node) => {
    node.dataset.alarm = String(node.querySelector('dd').textContent !== '0' && node.querySelector('dd').textContent !== '—');
  });
  el.reasons.textContent = describeReasons(body.expiredLast24hByReason);
  renderNonPayers(body);
  return true;
}

// --- webhook endpoints -------------------------------------------------------------------------

// Shown only when PW_WEBHOOK_ENDPOINTS names some; a failure to read them never stops the page.
async function loadEndpoints() {
  const { status, body } = await request('/payments/webhooks/endpoints');
  const section = $('webhooks');
  if (status !== 200 || !Array.isArray(body) || body.length === 0) {
    section.hidden = true;
    return;
  }
  const when = (value) => (value ? new Date(value).toLocaleString(locale, { timeZone }) : 'never');
  $('webhook-rows').replaceChildren(
    ...body.map((endpoint) => {
      const tr = document.createElement('tr');
      tr.dataset.destination = endpoint.destination;
      tr.dataset.alarm = String(!endpoint.active || endpoint.parked > 0 || endpoint.consecutiveFailures > 0);
      tr.append(
        cell('url', endpoint.url),
        cell('state', endpoint.active ? 'active' : `disabled: ${endpoint.disabledReason ?? ''}`),
        cell('last-success', when(endpoint.lastSuccessAt)),
        cell('failures num', `${endpoint.failures} (${endpoint.consecutiveFailures} in a row)`),
        cell('backlog num', String(endpoint.backlog)),
        cell('parked num', String(endpoint.parked)),
        cell('last-error', endpoint.lastError ?? ''),
      );
      return tr;
    }),
  );
  section.hidden = false;
}

// --- rows ------------------------------------------------------------------------------------

function cell(className, text = '') {
  const td = document.createElement('td');
  td.className = className;
  td.textContent = text;
  return td;
}

function createRow(item, timing) {
  rowCount += 1;
  const tr = document.createElement('tr');
  tr.dataset.sessionId = item.sessionId;
  const deadline = document.createElement('time');
  const row = {
    id: item.sessionId,
    item,
    timer: createTimer({ locale, timeZone, t }),
    tr,
    prefix: `w${rowCount}-`,
    cells: {
      session: cell('session', item.sessionId),
      auction: cell('auction', item.auctionId),
      maker: cell('maker', item.stripeAccount ? `${item.makerId} · ${item.stripeAccount} (${item.charge})` : item.makerId),
      buyer: cell('buyer'),
      status: cell('status'),
      deadline: cell('deadline'),
      left: cell('time-left'),
      attempts: cell('attempts num'),
      error: cell('stripe-error'),
      actions: cell('actions'),
    },
    deadline,
    panel: null,
    override: null,
  };
  row.cells.deadline.append(deadline);
  const record = document.createElement('span');
  record.className = 'buyer-record';
  record.textContent = '…';
  row.cells.buyer.append(buyerLink(item.buyerId), ' ', record);
  row.record = record;
  tr.append(...Object.values(row.cells));
  // The controls open in a full-width row of their own beneath, so the table stays readable.
  const panel = document.createElement('tr');
  panel.className = 'manage-row';
  panel.hidden = true;
  const panelCell = document.createElement('td');
  panelCell.colSpan = Object.keys(row.cells).length;
  const box = document.createElement('section');
  box.className = 'override';
  box.id = `${row.prefix}override`;
  box.setAttribute('aria-labelledby', `${row.prefix}override-heading`);
  box.hidden = true;
  panelCell.append(box);
  panel.append(panelCell);
  row.panel = panel;
  const toggle = document.createElement('button');
  toggle.type = 'button';
  toggle.className = 'manage';
  toggle.textContent = 'Manage';
  toggle.setAttribute('aria-expanded', 'false');
  toggle.setAttribute('aria-controls', box.id);
  toggle.setAttribute('aria-label', `Manage ${item.sessionId}`);
  toggle.addEventListener('click', () => {
    const opening = panel.hidden;
    panel.hidden = !opening;
    toggle.setAttribute('aria-expanded', String(opening));
    if (opening && !row.override) mountRowOverride(row, box);
    if (opening) box.querySelector('input')?.focus({ preventScroll: true });
  });
  row.cells.actions.append(toggle);
  update(row, item, timing);
  return row;
}

function mountRowOverride(row, box) {
  row.override = mountOverride({
    container: box,
    locale,
    t,
    announce,
    idPrefix: row.prefix,
    heading: `Manage ${row.id}`,
    headingLevel: 3,
    post: (body) => request(`/payments/window/${encodeURIComponent(row.id)}/override`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    }),
    applied: (body, timing) => {
      update(row, { ...row.item, ...body }, timing);
      loadSummary();
      return row.timer.state;
    },
  });
  row.override.update(row.timer.state);
}

// A newer version of a row replaces it; an older one (a page read before a change) is ignored.
function update(row, item, timing) {
  if (row.item && item.version < row.item.version) return;
  row.item = item;
  row.timer.dispatch({ type: 'snapshot', body: item, ...timing });
  row.cells.status.textContent = item.status.replace(/_/g, ' ');
  row.cells.status.dataset.status = item.status;
  row.cells.attempts.textContent = String(item.attempts);
  row.cells.error.textContent = item.lastStripeError ?? '';
  row.cells.error.title = item.lastStripeError ?? '';
  paintRow(row, row.timer.state);
  row.override?.update(row.timer.state);
}

function paintRow(row, state) {
  row.deadline.dateTime = new Date(state.expiresAt).toISOString();
  row.deadline.textContent = state.payBy;
  let text = '—';
  let mood = 'closed';
  if (state.status === 'open') {
    if (state.remainingMs > 0) {
      text = state.text;
      mood = state.warning ? 'soon' : 'open';
    } else {
      // The shared timer stops at zero; how late a window is matters here, so count on.
      const late = (row.timer.serverNow(Date.now()) - state.expiresAt) / 1000;
      text = `overdue ${formatRemaining(Math.max(1, late), locale)}`;
      mood = 'overdue';
    }
  }
  if (row.cells.left.textContent !== text) row.cells.left.textContent = text;
  row.tr.dataset.mood = mood;
}

function tick() {
  if (stopped) return;
  const now = clock();
  for (const row of rows.values()) paintRow(row, row.timer.dispatch({ type: 'tick', ...now }));
  const server = serverClock.serverNow(now.now);
  el.serverTime.textContent = new Date(server).toLocaleTimeString(locale, { timeZone, timeZoneName: 'short' });
  el.serverTime.dateTime = new Date(server).toISOString();
  clearTimeout(tickHandle);
  tickHandle = setTimeout(tick, 1000 - (Date.now() % 1000) + 10);
}

// --- buyer records ---------------------------------------------------------------------------

function describeRecord(record) {
  if (!record) return 'record unavailable';
  return `${record.unpaid} of ${record.opened} unpaid in ${record.days} days`;
}

async function readRecord(buyerId) {
  const { status, body } = await request(`/payments/buyers/${encodeURIComponent(buyerId)}/record`);
  return status === 200 ? body : null;
}

// At most RECORD_REQUESTS_AT_ONCE record requests in flight; the rest wait their turn.
let recordSlots = RECORD_REQUESTS_AT_ONCE;
const recordQueue = [];

function nextRecordRequest() {
  while (recordSlots > 0 && recordQueue.length) {
    recordSlots -= 1;
    recordQueue.shift()().finally(() => {
      recordSlots += 1;
      nextRecordRequest();
    });
  }
}

function queuedRecord(buyerId) {
  return new Promise((resolve) => {
    recordQueue.push(() => readRecord(buyerId).then(resolve, () => resolve(null)));
    nextRecordRequest();
  });
}

function paintRecord(row, record) {
  row.record.textContent = describeRecord(record);
  row.record.dataset.unpaid = String(record?.unpaid ?? 0);
}

// Each listed row gets its buyer's record; each buyer is asked for once per load.
function loadRecords() {
  for (const row of rows.values()) {
    const { buyerId } = row.item;
    if (!records.has(buyerId)) records.set(buyerId, queuedRecord(buyerId));
    records.get(buyerId).then((record) => paintRecord(row, record));
  }
}

// --- sorting ---------------------------------------------------------------------------------

const byDeadline = (a, b) => Date.parse(a.item.expiresAt) - Date.parse(b.item.expiresAt) || (a.id < b.id ? -1 : 1);
const COMPARE = {
  deadline: byDeadline,
  status: (a, b) => STATUS_ORDER.indexOf(a.item.status) - STATUS_ORDER.indexOf(b.item.status),
  maker: (a, b) => a.item.makerId.localeCompare(b.item.makerId, locale),
};

function render() {
  const ordered = [...rows.values()].sort((a, b) => sort.dir * COMPARE[sort.key](a, b) || byDeadline(a, b));
  // Moving existing rows keeps an open "Manage" panel and its focus intact.
  for (const row of ordered) el.rows.append(row.tr, row.panel);
  el.empty.hidden = rows.size > 0;
  for (const th of el.table.querySelectorAll('th[data-sort]')) {
    const active = th.dataset.sort === sort.key;
    th.setAttribute('aria-sort', active ? (sort.dir > 0 ? 'ascending' : 'descending') : 'none');
  }
}

function wireSorting() {
  el.table.querySelector('thead').addEventListener('click', (event) => {
    const button = event.target.closest('button[data-sort]');
    if (!button) return;
    const key = button.dataset.sort;
    sort = { key, dir: sort.key === key ? -sort.dir : 1 };
    render();
    announce(`Sorted by ${key}, ${sort.dir > 0 ? 'ascending' : 'descending'}`);
  });
}

// --- loading ---------------------------------------------------------------------------------

function filterParams() {
  const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
  const status = $('filter-status').value;
  const maker = $('filter-maker').value.trim();
  const buyer = el.buyerFilter.value.trim();
  if (status) params.set('status', status);
  if (maker) params.set('makerId', maker);
  if (buyer) params.set('buyerId', buyer);
  if ($('filter-overdue').checked) params.set('overdue', 'true');
  return params;
}

async function loadWindows({ reset }) {
  if (reset) {
    rows.clear();
    el.rows.replaceChildren();
    cursor = null;
  }
  const params = filterParams();
  if (cursor) params.set('cursor', cursor);
  const { status, body, timing } = await request(`/payments/windows?${params}`);
  if (refused(status, body)) return false;
  for (const item of body.items) {
    const known = rows.get(item.sessionId);
    if (known) update(known, item, timing);
    else rows.set(item.sessionId, createRow(item, timing));
  }
  cursor = body.nextCursor;
  el.more.hidden = cursor == null;
  render();
  loadRecords();
  return true;
}

async function reload() {
  el.root.dataset.state = 'loading';
  records.clear();
  try {
    if ((await loadSummary()) && (await loadWindows({ reset: true }))) el.root.dataset.state = 'ready';
    await loadEndpoints();
  } catch {
    fail('Could not reach the server. Check your connection and try Refresh.');
    el.refresh.disabled = false;
  }
}

async function start() {
  if (!token) {
    fail('This page needs an admin token: open it as /ops#token=…');
    return;
  }
  wireSorting();
  // A link to a buyer's windows (/ops?buyerId=…) opens the page with that filter set.
  el.buyerFilter.value = new URLSearchParams(location.search).get('buyerId') ?? '';
  window.addEventListener('popstate', () => {
    el.buyerFilter.value = new URLSearchParams(location.search).get('buyerId') ?? '';
    loadWindows({ reset: true });
  });
  el.refresh.addEventListener('click', () => {
    stopped = false;
    el.error.hidden = true;
    reload().then(() => !stopped && tick());
  });
  el.filters.addEventListener('submit', (event) => {
    event.preventDefault();
    const buyerId = el.buyerFilter.value.trim();
    history.replaceState(null, '', buyerId ? `/ops?${new URLSearchParams({ buyerId })}` : '/ops');
    loadWindows({ reset: true });
  });
  el.more.addEventListener('click', () => loadWindows({ reset: false }));
  mountPolicy({ request, refused });
  await reload();
  if (!stopped) tick();
}

start();
