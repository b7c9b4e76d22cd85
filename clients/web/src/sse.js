// Server-sent events over fetch. EventSource cannot send an Authorization header, and the
// token must not go in the URL (it would reach server logs), so the stream is read by hand.

/**
 * An incremental parser for the text/event-stream format (WHATWG HTML §9.2.6).
 * `push(text)` takes decoded chunks split anywhere; `onEvent({event, data, id})` fires per event;
 * `onRetry(ms)` when the server suggests a reconnection delay.
 */
export function createSseParser(onEvent, onRetry = () => {}) {
  let buffer = '';
  let data = [];
  let type = '';
  let lastEventId = '';
  let pendingCR = false;

  function line(text) {
    if (text === '') {
      if (data.length > 0) onEvent({ event: type || 'message', data: data.join('\n'), id: lastEventId });
      data = [];
      type = '';
      return;
    }
    if (text.startsWith(':')) return;
    const colon = text.indexOf(':');
    const field = colon === -1 ? text : text.slice(0, colon);
    let value = colon === -1 ? '' : text.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') data.push(value);
    else if (field === 'event') type = value;
    else if (field === 'id' && !value.includes('\0')) lastEventId = value;
    else if (field === 'retry' && /^\d+$/.test(value)) onRetry(Number(value));
  }

  function push(chunk) {
    let text = chunk;
    // A CRLF split across chunks must not count as two line ends.
    if (pendingCR && text.startsWith('\n')) text = text.slice(1);
    pendingCR = text.endsWith('\r');
    buffer += text;
    const parts = buffer.split(/\r\n|\r|\n/);
    buffer = parts.pop();
    parts.forEach(line);
  }

  return {
    push,
    get lastEventId() {
      return lastEventId;
    },
  };
}

/** Delay before reconnect attempt `n` (0-based): doubling from `base`, capped, half jittered. */
export function backoffDelay(n, { base = 1000, cap = 30_000, random = Math.random } = {}) {
  const full = Math.min(cap, base * 2 ** n);
  return full / 2 + random() * (full / 2);
}

// The server answering these will not change its mind on a retry.
const FATAL = new Set([204, 401, 403, 404]);

/**
 * Keep a stream open until `signal` aborts: reconnect with backoff, resume with Last-Event-ID.
 * `onOpen()` fires on every (re)connection, so the caller can resync what it may have missed.
 * `onFatal(status)` fires once when the server refuses for good. Resolves when it stops.
 */
export async function subscribe(url, {
  token,
  onEvent,
  onOpen = () => {},
  onFatal = () => {},
  signal,
  fetchImpl = fetch,
  sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  random = Math.random,
}) {
  let base = 1000;
  let attempt = 0;
  let lastEventId = '';
  while (!signal?.aborted) {
    const parser = createSseParser(onEvent, (ms) => { base = ms; });
    try {
      const headers = { Accept: 'text/event-stream', Authorization: `Bearer ${token}` };
      if (lastEventId) headers['Last-Event-ID'] = lastEventId;
      const response = await fetchImpl(url, { headers, signal, cache: 'no-store' });
      if (FATAL.has(response.status)) {
        onFatal(response.status);
        return;
      }
      if (!response.ok || !response.body) throw new Error(`events: HTTP ${response.status}`);
      attempt = 0;
      onOpen();
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        parser.push(value);
        lastEventId = parser.lastEventId;
      }
    } catch (error) {
      if (signal?.aborted) return;
    }
    lastEventId = parser.lastEventId || lastEventId;
    await sleep(backoffDelay(attempt, { base, random }));
    attempt += 1;
  }
}
