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
