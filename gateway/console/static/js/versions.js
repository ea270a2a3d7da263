// Bucket versioning and object lock, and the versions of one object.
import { api, bucketPath } from "./api.js";
import { bytes, clear, h, table, toast, when } from "./dom.js";

const enc = encodeURIComponent;

export function versioningControl(bucket) {
  const box = h("div", { class: "inline", id: "versioning" }, h("span", { class: "muted" }, "Versioning: …"));
  async function show() {
    let doc;
    try { doc = await api("GET", `${bucketPath(bucket)}/versioning`); }
    catch (err) { clear(box, h("span", { class: "error" }, `Versioning: ${err.code}`)); return; }
    const on = doc.status === "Enabled";
    clear(box, h("span", { id: "versioning-status" }, `Versioning: ${doc.status || "never enabled"}`),
      h("button", { type: "button", id: "versioning-toggle", onclick: async () => {
        try {
          await api("PUT", `${bucketPath(bucket)}/versioning`, { json: { status: on ? "Suspended" : "Enabled" } });
          await show();
        } catch (err) { toast(`${err.code}: ${err.message}`, "error"); }
      } }, on ? "Suspend" : "Enable"));
  }
  show();
  return box;
}

export function versionsSection(bucket, key) {
  const section = h("section", { id: "versions" });
  async function show() {
    let doc;
    try { doc = await api("GET", `${bucketPath(bucket)}/versions`, { query: { key } }); }
    catch (err) { clear(section, h("p", { class: "error" }, `${err.code}: ${err.message}`)); return; }
    if (!doc.versions.length) { clear(section); return; }
    clear(section, h("h2", {}, "Versions"), table(["Version", "Modified", "Size", ""], doc.versions.map((v) =>
      h("tr", { "data-version": v.version_id },
        h("td", { class: "mono" }, v.version_id, v.latest ? " (current)" : "", v.delete_marker ? " delete marker" : ""),
        h("td", {}, when(v.modified)), h("td", { class: "num" }, v.delete_marker ? "–" : bytes(v.size)),
        h("td", { class: "actions" },
          v.delete_marker ? "" : h("a", { class: "button", download: "",
            href: `${bucketPath(bucket)}/download?key=${enc(key)}&version=${enc(v.version_id)}` }, "Download"),
          h("button", { type: "button", class: "danger", "aria-label": `Delete version ${v.version_id}`,
            onclick: async () => {
              if (!confirm(`Delete version ${v.version_id} of ${key} for good?`)) return;
              try {
                await api("DELETE", `${bucketPath(bucket)}/object`, { query: { key, version: v.version_id } });
                await show();
              } catch (err) { toast(`${err.code}: ${err.message}`, "error"); }
            } }, "Delete"))))));
  }
  show();
  return section;
}

export function objectLockLine(bucket) {
  const line = h("p", { id: "object-lock" }, "Object lock: …");
  api("GET", `${bucketPath(bucket)}/object-lock`).then((doc) => {
    const rule = doc.mode ? `, new versions kept ${doc.days ? `${doc.days} days` : `${doc.years} years`} (${doc.mode})` : "";
    line.textContent = doc.enabled ? `Object lock: enabled${rule}` : "Object lock: off (chosen when a bucket is made)";
  }).catch((err) => { line.textContent = `Object lock: ${err.code}`; });
  return line;
}
