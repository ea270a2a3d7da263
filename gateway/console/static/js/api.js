// The console's JSON API: the session's CSRF token on every change; errors thrown as ApiError.

export const session = { csrf: "", root: false, access_key: "" };

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code);
    this.status = status;
    this.code = code;
  }
}

export const signedOut = new EventTarget();

export function url(path, query) {
  const qs = query ? new URLSearchParams(Object.entries(query).filter(([, v]) => v !== undefined && v !== "")) : null;
  return qs && [...qs].length ? `${path}?${qs}` : path;
}

export async function api(method, path, { query, json } = {}) {
  const headers = {};
  if (method !== "GET") headers["X-CSRF-Token"] = session.csrf;
  if (json !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(url(path, query), {
    method, headers, body: json !== undefined ? JSON.stringify(json) : undefined, credentials: "same-origin",
  });
  return answer(resp.status, await resp.text(), path);
}

function answer(status, text, path) {
  let doc = {};
  try { doc = text ? JSON.parse(text) : {}; } catch { doc = { error: `HTTP${status}`, message: text.slice(0, 200) }; }
  if (status >= 400) {
    if (status === 401 && path !== "/api/session") signedOut.dispatchEvent(new Event("signedout"));
    throw new ApiError(status, doc.error || `HTTP${status}`, doc.message || "");
  }
  return doc;
}

// A body sent with progress events, abortable through signal (fetch has no upload progress).
export function send(method, path, query, body, onProgress, signal) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, url(path, query));
    xhr.setRequestHeader("X-CSRF-Token", session.csrf);
    xhr.setRequestHeader("Content-Type", body.type || "application/octet-stream");
    xhr.upload.onprogress = (e) => onProgress && onProgress(e.loaded);
    xhr.onload = () => {
      try { resolve(answer(xhr.status, xhr.responseText, path)); } catch (e) { reject(e); }
    };
    xhr.onerror = () => reject(new ApiError(0, "NetworkError", "the upload was cut off"));
    xhr.onabort = () => reject(new ApiError(0, "Cancelled", "cancelled"));
    if (signal) {
      if (signal.aborted) { reject(new ApiError(0, "Cancelled", "cancelled")); return; }
      signal.addEventListener("abort", () => xhr.abort(), { once: true });
    }
    xhr.send(body);
  });
}

export function bucketPath(bucket) {
  return `/api/buckets/${encodeURIComponent(bucket)}`;
}
