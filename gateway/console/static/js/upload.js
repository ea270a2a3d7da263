// Uploads: a small file in one PUT, a large one in parts of PART bytes (S3 multipart through the console's
// backend), with progress and cancel. Folders keep their relative paths under the current prefix.
import { api, bucketPath, send } from "./api.js";

export const PART = 8 * 1024 * 1024;

export async function uploadFile(bucket, key, file, onProgress, signal) {
  const base = bucketPath(bucket);
  if (file.size <= PART) {
    await send("PUT", `${base}/object`, { key }, file, onProgress, signal);
    return;
  }
  const { upload_id: id } = await api("POST", `${base}/uploads`, { query: { key, type: file.type } });
  const path = `${base}/uploads/${encodeURIComponent(id)}`;
  try {
    const parts = [];
    let done = 0;
    for (let n = 1, start = 0; start < file.size; n++, start += PART) {
      const blob = file.slice(start, start + PART);
      const r = await send("PUT", path, { key, part: n }, blob, (loaded) => onProgress(done + loaded), signal);
      done += blob.size;
      parts.push({ part: n, etag: r.etag });
    }
    await api("POST", path, { query: { key }, json: { parts } });
  } catch (err) {
    api("DELETE", path, { query: { key } }).catch(() => {});  // leave no upload behind
    throw err;
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
