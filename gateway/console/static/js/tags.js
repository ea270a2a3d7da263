// Tags of a bucket (key "") or an object: shown and replaced as "key=value" lines.
import { api, bucketPath } from "./api.js";
import { h, toast } from "./dom.js";

export function tagsEditor(bucket, key = "") {
  const id = key ? "object-tags" : "bucket-tags";
  const area = h("textarea", { id, rows: 3, class: "mono wide", spellcheck: "false",
    "aria-label": key ? "Object tags, one key=value a line" : "Bucket tags, one key=value a line" });
  const form = h("form", { class: "inline", id: `${id}-form` }, area, h("button", { type: "submit" }, "Save tags"));
  const path = `${bucketPath(bucket)}/tags`;
  const query = key ? { key } : undefined;
  api("GET", path, { query }).then((r) => {
    area.value = Object.entries(r.tags).map(([k, v]) => `${k}=${v}`).join("\n");
  }).catch((err) => { area.placeholder = `${err.code}: ${err.message}`; area.disabled = true; });
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const tags = {};
    for (const line of area.value.split("\n").map((l) => l.trim()).filter(Boolean)) {
      const at = line.indexOf("=");
      tags[at < 0 ? line : line.slice(0, at).trim()] = at < 0 ? "" : line.slice(at + 1).trim();
    }
    try {
      await api("PUT", path, { query, json: { tags } });
      toast("Tags saved");
    } catch (err) { toast(`${err.code}: ${err.message}`, "error"); }
  });
  return form;
}
