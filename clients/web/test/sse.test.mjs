import { test } from 'node:test';
import assert from 'node:assert/strict';

import { backoffDelay, createSseParser, subscribe } from '../src/sse.js';

function collect() {
  const events = [];
  const parser = createSseParser((e) => events.push(e));
  return { events, parser };
}

test('parses event, data and id fields', () => {
  const { events, parser } = collect();
  parser.push('id: 7\nevent: extended\ndata: {"expiresAt":"2025-01-15T14:00:00Z","version":3}\n\n');
  assert.deepEqual(events, [{ event: 'extended', data: '{"expiresAt":"2025-01-15T14:00:00Z","version":3}', id: '7' }]);
  assert.equal(parser.lastEventId, '7');
});

test('chunks split anywhere, including inside a CRLF, give the same events', () => {
  const text = 'event: paid\r\ndata: {"version":4}\r\nid: 9\r\n\r\n: keep-alive\r\n\r\nevent: expired\r\ndata: a\r\ndata: b\r\n\r\n';
  for (let cut = 1; cut < text.length; cut += 1) {
    const { events, parser } = collect();
    parser.push(text.slice(0, cut));
    parser.push(text.slice(cut));
    assert.deepEqual(events, [
      { event: 'paid', data: '{"version":4}', id: '9' },
      { event: 'expired', data: 'a\nb', id: '9' },
    ], `cut at ${cut}`);
  }
});

test('comments and events without data dispatch nothing; a bare data line is a message', () => {
  const { events, parser } = collect();
  parser.push(': ping\n\nevent: extended\n\ndata\n\n');
  assert.deepEqual(events, [{ event: 'message', data: '', id: '' }]);
});

test('retry sets the reconnection base', () => {
  const seen = [];
  const parser = createSseParser(() => {}, (ms) => seen.push(ms));
  parser.push('retry: 2500\nretry: soon\n\n');
  assert.deepEqual(seen, [2500]);
});

test('backoff doubles up to a cap, with at most half of it jittered away', () => {
  const top = (n) => backoffDelay(n, { random: () => 1 });
  const bottom = (n) => backoffDelay(n, { random: () => 0 });
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6].map(top), [1000, 2000, 4000, 8000, 16000, 30000, 30000]);
  assert.equal(bottom(2), 2000);
});

function streamOf(text) {
  return new Response(new ReadableStream({
    start(controller) {
      controller.enqueue(new TextEncoder().encode(text));
      controller.close();
    },
  }), { status: 200, headers: { 'Content-Type': 'text/event-stream' } });
}

test('reconnects after a drop with backoff and Last-Event-ID, then stops on a fatal status', async () => {
  const requests = [];
  const replies = [
    () => streamOf('id: 1\nevent: extended\ndata: {}\n\n'),
    () => { throw new TypeError('network down'); },
    () => streamOf('id: 2\nevent: paid\ndata: {}\n\n'),
    () => new Response('', { status: 401 }),
  ];
  const events = [];
  const sleeps = [];
  let opens = 0;
  let fatal = null;
  await subscribe('/payments/checkout/cs_1/events', {
    token: 'tok',
    onEvent: (e) => events.push(e.event),
    onOpen: () => { opens += 1; },
    onFatal: (status) => { fatal = status; },
    fetchImpl: async (url, init) => {
      requests.push({ ...init.headers });
      return replies[requests.length - 1]();
    },
    sleep: async (ms) => { sleeps.push(ms); },
    random: () => 1,
  });
  assert.deepEqual(events, ['extended', 'paid']);
  assert.equal(opens, 2);
  assert.equal(fatal, 401);
  assert.deepEqual(requests.map((h) => h['Last-Event-ID']), [undefined, '1', '1', '2']);
  assert.ok(requests.every((h) => h.Authorization === 'Bearer tok'));
  assert.deepEqual(sleeps, [1000, 2000, 1000], "a failed connect doubles the wait; a good one resets it");
});

test('aborting stops the loop', async () => {
  const controller = new AbortController();
  let calls = 0;
  await subscribe('/events', {
    token: 't',
    onEvent: () => {},
    signal: controller.signal,
    fetchImpl: async () => {
      calls += 1;
      controller.abort();
      throw new DOMException('aborted', 'AbortError');
    },
    sleep: async () => {},
  });
  assert.equal(calls, 1);
});
