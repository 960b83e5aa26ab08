// api.js: the HTTP JSON client. Every call to /api goes through `api()`, which sends
// the session cookie, decodes {"error":{"code","message"}} bodies into ApiError, and
// reports a lost session (401 "unauthenticated") to the app once.

/** An HTTP API failure: `status` (0 when the server was unreachable), stable `code`
 *  and a human `message` that the UI shows as is. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let onUnauthenticated = null;

/** Sets what happens when a call finds the session gone (except GET /api/me). */
export function setUnauthenticatedHandler(fn) {
  onUnauthenticated = fn;
}

/** Calls the API; resolves with the decoded JSON body (null for 204). */
export async function api(method, path, body) {
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch {
    throw new ApiError(0, 'network', 'Cannot reach the server. Check your connection and try again.');
  }
  const raw = res.status === 204 ? '' : await res.text().catch(() => '');
  let data = null;
  if (raw) {
    try {
      data = JSON.parse(raw);
    } catch {
      data = null;
    }
  }
  if (!res.ok) {
    const err = (data && data.error) || {};
    const code = err.code || `http_${res.status}`;
    const message = err.message ? sentence(err.message) : defaultMessage(res.status);
    if (res.status === 401 && code === 'unauthenticated' && path !== '/api/me' && onUnauthenticated) {
      onUnauthenticated();
    }
    throw new ApiError(res.status, code, message);
  }
  return data;
}

/** The server's messages are lower-case phrases ("that username is already taken");
 *  shown alone on a line they read better as a sentence. */
export function sentence(message) {
  const s = String(message);
  return s.charAt(0).toUpperCase() + s.slice(1);
}

function defaultMessage(status) {
  if (status === 401) return 'Please sign in again.';
  if (status === 403) return 'You are not allowed to do that.';
  if (status === 404) return 'Not found.';
  if (status === 429) return 'Too many attempts. Wait a moment and try again.';
  if (status >= 500) return 'The server had a problem. Try again in a moment.';
  return `The request failed (HTTP ${status}).`;
}

export const get = (path) => api('GET', path);
export const post = (path, body) => api('POST', path, body ?? {});
export const patch = (path, body) => api('PATCH', path, body);
export const put = (path, body) => api('PUT', path, body);
export const del = (path) => api('DELETE', path);
