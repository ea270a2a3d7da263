// Uploads: a small file in one PUT, a large one in parts of PART bytes (S3 multipart through the console's
// backend), with progress and cancel. Folders keep their relative paths under the current prefix.
import { ApiError, api, bucketPath, send } from "./api.js";

export const PART = 8 * 1024 * 1024;
const CONCURRENT = 3;  // parts in flight at once

export async function uploadFile(bucket, key, file, onProgress, signal) {
  const base = bucketPath(bucket);
  if (file.size <= PART) {
    await send("PUT", `${base}/object`, { key }, file, onProgress, signal);
    return;
  }
  const { upload_id: id } = await api("POST", `${base}/uploads`, { query: { key, type: file.type } });
  const path = `${base}/uploads/${encodeURIComponent(id)}`;
  const count = Math.ceil(file.size / PART);
  const etags = new Array(count);
  const sent = new Array(count).fill(0);
  const inner = new AbortController();  // one part failing stops the others
  const stop = () => inner.abort();
  if (signal) signal.addEventListener("abort", stop, { once: true });
  let next = 0;
  async function worker() {
    while (next < count) {
      const i = next++;
      const blob = file.slice(i * PART, (i + 1) * PART);
      const progress = (loaded) => { sent[i] = loaded; onProgress(sent.reduce((a, b) => a + b, 0)); };
      const r = await send("PUT", path, { key, part: i + 1 }, blob, progress, inner.signal);
      progress(blob.size);
      etags[i] = r.etag;
    }
  }
  try {
    await Promise.all(Array.from({ length: Math.min(CONCURRENT, count) }, () => worker().catch((err) => {
      stop();
      throw err;
    })));
    await api("POST", path, { query: { key }, json: { parts: etags.map((etag, i) => ({ part: i + 1, etag })) } });
  } catch (err) {
    api("DELETE", path, { query: { key } }).catch(() => {});  // leave no upload behind
    throw signal && signal.aborted ? new ApiError(0, "Cancelled", "cancelled") : err;
  } finally {
    if (signal) signal.removeEventListener("abort", stop);
  }
}

// Files (and folders) dropped on the page, each with its path relative to the drop.
export async function droppedFiles(dataTransfer) {
  const entries = [...dataTransfer.items].map((i) => i.webkitGetAsEntry && i.webkitGetAsEntry()).filter(Boolean);
  if (!entries.length) return [...dataTransfer.files].map((f) => ({ file: f, path: f.name }));
  const out = [];
  async function walk(entry, prefix) {
    if (entry.isFile) {
      const file = await new Promise((res, rej) => entry.file(res, rej));
      out.push({ file, path: prefix + entry.name });
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((res, rej) => reader.readEntries(res, rej));
        if (!batch.length) break;
        for (const e of batch) await walk(e, `${prefix}${entry.name}/`);
      }
    }
  }
  for (const e of entries) await walk(e, "");
  return out;
}

export function pickedFiles(input) {
  return [...input.files].map((f) => ({ file: f, path: f.webkitRelativePath || f.name }));
}
