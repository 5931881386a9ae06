// The studio's HTTP client: JSON calls, the API key, server-sent events over POST, downloads.
// The contract is docs/studio-api.md.

const KEY_STORAGE = 'dvoinik.apiKey';

/** A failed call. `status` 0 means the server could not be reached at all. */
export class ApiError extends Error {
  constructor(status, message, { type = '', retryAfter = null } = {}) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.type = type;
    this.retryAfter = retryAfter; // seconds, from Retry-After on a 503
  }

  /** The server is down or unreachable: worth retrying later, and what the writer typed must be kept. */
  get offline() {
    return this.status === 0 || this.status === 502 || this.status === 504;
  }
}

// Asked for an API key when a call gets 401; studio.js installs a dialog. Several calls may
// fail at once, so they share one question rather than stacking dialogs.
let keyPrompt = null;
let pendingPrompt = null;

export function setKeyPrompt(ask) {
  keyPrompt = ask;
}

export function apiKey() {
  return localStorage.getItem(KEY_STORAGE) || '';
}

function headers(withBody) {
  const result = {};
  if (withBody) result['Content-Type'] = 'application/json';
  const key = apiKey();
  if (key) result.Authorization = `Bearer ${key}`;
  return result;
}

async function askForKey() {
  if (!keyPrompt) return false;
  pendingPrompt ??= keyPrompt().finally(() => { pendingPrompt = null; });
  const key = await pendingPrompt;
  if (!key) return false;
  localStorage.setItem(KEY_STORAGE, key);
  return true;
}

async function errorOf(response) {
  let message = `${response.status} ${response.statusText}`;
  let type = '';
  try {
    const body = await response.json();
    const detail = body.detail ?? body.error ?? body;
    if (typeof detail === 'string') message = detail;
    else if (detail && typeof detail.msg === 'string') { message = detail.msg; type = detail.type ?? ''; }
    else if (detail && typeof detail.message === 'string') { message = detail.message; type = detail.type ?? ''; }
  } catch { /* not JSON: keep the status line */ }
  const retry = Number.parseInt(response.headers.get('Retry-After') ?? '', 10);
  return new ApiError(response.status, message, { type, retryAfter: Number.isFinite(retry) ? retry : null });
}

/**
 * Call the API. Returns the parsed JSON (null for 204), or the Response itself with `raw`.
 * Throws ApiError; an AbortError passes through untouched so callers can tell "stopped" from "failed".
 */
export async function api(path, { method = 'GET', body, signal, raw = false, keepalive = false } = {}) {
  for (;;) {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    let response;
    try {
      response = await fetch(path, {
        method,
        headers: headers(payload !== undefined),
        body: payload,
        signal,
        // keepalive lets a save outlive the page, but browsers cap such bodies at 64 KiB (of UTF-8).
        keepalive: keepalive && new TextEncoder().encode(payload ?? '').length < 60000,
      });
    } catch (error) {
      if (error.name === 'AbortError') throw error;
      throw new ApiError(0, error.message || 'network error', { type: 'network' });
    }
    if (response.status === 401 && (await askForKey())) continue;
    if (!response.ok) throw await errorOf(response);
    if (raw) return response;
    if (response.status === 204) return null;
    return response.json();
  }
}

/**
 * The server-sent events of a streaming response, as {event, data} with data parsed from JSON.
 * The stream is a POST, so EventSource cannot read it: this is the same parser over fetch's body.
 */
export async function* readEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      buffer += decoder.decode(value ?? new Uint8Array(), { stream: !done });
      buffer = buffer.replace(/\r\n?/g, '\n');
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event = parseEvent(block);
        if (event) yield event;
      }
      if (done) break;
    }
    const last = parseEvent(buffer);
    if (last) yield last;
  } finally {
    reader.releaseLock();
  }
}

function parseEvent(block) {
  let event = 'message';
  const data = [];
  for (const line of block.split('\n')) {
    if (!line || line.startsWith(':')) continue; // keep-alive comments
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'event') event = value;
    else if (field === 'data') data.push(value);
  }
  if (!data.length) return null;
  const text = data.join('\n');
  try {
    return { event, data: JSON.parse(text) };
  } catch {
    return { event, data: text };
  }
}

/**
 * Download a file from the API. A plain link cannot send the API key, so the file is fetched
 * and handed to the browser as a blob.
 */
export async function download(path, fallbackName) {
  const response = await api(path, { raw: true });
  const blob = await response.blob();
  const disposition = response.headers.get('Content-Disposition') ?? '';
  const star = /filename\*=UTF-8''([^;]+)/i.exec(disposition);
  const plain = /filename="?([^";]+)"?/i.exec(disposition);
  const name = star ? decodeURIComponent(star[1]) : plain ? plain[1] : fallbackName;
  const url = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
  return name;
}
