// The viewer's bearer token, handed over in the URL fragment.
//
// The fragment keeps the token out of server logs and Referer headers; taking it out of the
// address bar keeps it out of history. sessionStorage lets a reload in the same tab still work.
export function takeToken(storageKey) {
  const params = new URLSearchParams(location.hash.slice(1));
  const fromUrl = params.get('token');
  if (fromUrl) {
    params.delete('token');
    const rest = params.toString();
    history.replaceState(history.state, '', `${location.pathname}${location.search}${rest ? `#${rest}` : ''}`);
    try {
      sessionStorage.setItem(storageKey, fromUrl);
    } catch {
      // Storage disabled: the token still works until the page is left.
    }
    return fromUrl;
  }
  try {
    return sessionStorage.getItem(storageKey);
  } catch {
    return null;
  }
}

// A JSON request with the bearer token; the send and receive times (wall and monotonic) let
// the timer estimate the server clock from the round trip.
export function requester(token) {
  return async function request(path, init = {}) {
    const sentAt = Date.now();
    const sentMono = performance.now();
    const response = await fetch(path, {
      cache: 'no-store',
      ...init,
      headers: { Accept: 'application/json', Authorization: `Bearer ${token}`, ...init.headers },
    });
    const timing = { sentAt, sentMono, receivedAt: Date.now(), receivedMono: performance.now() };
    const body = await response.json().catch(() => null);
    return { status: response.status, body, timing };
  };
}
