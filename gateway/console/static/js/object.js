// One object: what S3 says of it, where its fragments live (for the root), download, share link, delete.
import { api, bucketPath, session } from "./api.js";
import { bytes, clear, h, table, toast, when } from "./dom.js";
import { tagsEditor } from "./tags.js";
import { versionsSection } from "./versions.js";

const enc = encodeURIComponent;

export async function objectView(main, bucket, key) {
  const folder = key.includes("/") ? key.slice(0, key.lastIndexOf("/") + 1) : "";
  const head = h("nav", { class: "crumbs", "aria-label": "Breadcrumb" },
    h("a", { href: "#/buckets" }, "Buckets"), " / ", h("a", { href: `#/b/${enc(bucket)}/${enc(folder)}` }, bucket));
  clear(main, head, h("h1", { class: "key" }, key), h("p", { class: "muted" }, "Loading…"));
  let doc;
  try {
    doc = await api("GET", `${bucketPath(bucket)}/object`, { query: { key } });
  } catch (err) {
    // No current version (deleted in a versioned bucket, say): its older versions may still be there.
    clear(main, head, h("h1", { class: "key" }, key), h("p", { class: "error" }, `${err.code}: ${err.message}`),
      versionsSection(bucket, key));
    return;
  }
  const facts = h("dl", { class: "facts", id: "object-facts" },
    h("dt", {}, "Size"), h("dd", { id: "object-size" }, `${bytes(doc.size)} (${doc.size} bytes)`),
    h("dt", {}, "ETag"), h("dd", { class: "mono" }, doc.etag),
    h("dt", {}, "Type"), h("dd", {}, doc.content_type || "–"),
    h("dt", {}, "Modified"), h("dd", {}, when(doc.modified)),
    doc.version_id ? [h("dt", {}, "Version"), h("dd", { class: "mono" }, doc.version_id)] : [],
    Object.entries(doc.lock).map(([k, v]) => [h("dt", {}, `Object lock ${k}`), h("dd", {}, k.includes("date") ? when(v) : v)]),
    Object.entries(doc.checksums).map(([k, v]) => [h("dt", {}, `Checksum ${k}`), h("dd", { class: "mono" }, v)]),
    Object.entries(doc.metadata).map(([k, v]) => [h("dt", {}, `x-amz-meta-${k}`), h("dd", {}, v)]));

  const expires = h("select", { id: "share-expires", "aria-label": "Link expires after" },
    [["3600", "1 hour"], ["86400", "1 day"], ["604800", "7 days"], ["300", "5 minutes"]]
      .map(([v, t]) => h("option", { value: v }, t)));
  const link = h("input", { id: "share-link", readonly: true, class: "mono wide", "aria-label": "Share link" });
  const share = h("form", { class: "inline", id: "share" }, expires,
    h("button", { type: "submit" }, "Make share link"), link);
  share.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const r = await api("POST", `${bucketPath(bucket)}/share`, { query: { key, expires: expires.value } });
      link.value = r.url;
      link.select();
      toast("Share link made: anyone with it can download the object until it expires");
    } catch (err) { toast(`${err.code}: ${err.message}`, "error"); }
  });
  const actions = h("div", { class: "inline" },
    h("a", { class: "button", id: "download", href: `${bucketPath(bucket)}/download?key=${enc(key)}`, download: "" },
      "Download"),
    h("button", { type: "button", class: "danger", id: "delete-object", onclick: async () => {
      if (!confirm(`Delete ${key}?`)) return;
      try {
        await api("DELETE", `${bucketPath(bucket)}/object`, { query: { key } });
        toast(`${key} deleted`);
        location.hash = `#/b/${enc(bucket)}/${enc(folder)}`;
      } catch (err) { toast(`${err.code}: ${err.message}`, "error"); }
    } }, "Delete"));
  const hold = h("div", { class: "inline", id: "legal-hold" });
  api("GET", `${bucketPath(bucket)}/object-lock`).then((lock) => {
    if (!lock.enabled) return;  // a legal hold needs a bucket made with object lock
    const on = doc.lock["legal-hold"] === "ON";
    clear(hold, h("span", {}, `Legal hold: ${on ? "on" : "off"}`),
      h("button", { type: "button", id: "legal-hold-toggle", onclick: async () => {
        try {
          await api("PUT", `${bucketPath(bucket)}/legal-hold`, { query: { key }, json: { status: on ? "OFF" : "ON" } });
          await objectView(main, bucket, key);
        } catch (err) { toast(`${err.code}: ${err.message}`, "error"); }
      } }, on ? "Release" : "Place legal hold"));
  }).catch(() => {});
  const fragments = h("section", { id: "fragments" }, h("h2", {}, "Fragments"));
  clear(main, head, h("h1", { class: "key" }, key), actions, facts, hold, h("h2", {}, "Share"), share,
    h("h2", {}, "Tags"), tagsEditor(bucket, key), versionsSection(bucket, key), fragments);
  if (!session.root) {
    fragments.append(h("p", { class: "muted" }, "Where fragments live is shown to the root user only."));
    return;
  }
  try {
    const ins = await api("GET", "/api/inspect", { query: { bucket, key } });
    fragments.append(h("p", {}, "Health: ", h("strong", { class: `health ${ins.health}`, id: "object-health" }, ins.health)));
    for (const part of ins.parts) {
      fragments.append(h("h3", {}, `Part ${part.number}: ${bytes(part.size)}, EC ${part.ec}, `
        + (part.inline ? "kept inline in the index" : `${part.healthy} fragments healthy`)));
      if (!part.inline) {
        fragments.append(table(["#", "State", "Node", "Zone", "Drive", "Size"], part.fragments.map((f) =>
          h("tr", { class: f.state === "ok" ? "" : "bad" },
            h("td", {}, f.index), h("td", {}, f.state), h("td", {}, f.node), h("td", {}, f.zone),
            h("td", { class: "mono" }, f.drive), h("td", { class: "num" }, bytes(f.size))))));
      }
    }
  } catch (err) { fragments.append(h("p", { class: "error" }, `${err.code}: ${err.message}`)); }
}
