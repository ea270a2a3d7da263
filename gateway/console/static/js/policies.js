// Policies: a user's (built-in name or JSON document) and a bucket's (JSON document).
import { api, bucketPath } from "./api.js";
import { clear, h, toast } from "./dom.js";

function docArea(id, label, value) {
  return h("textarea", { id, rows: 8, class: "mono wide", spellcheck: "false", "aria-label": label }, value || "");
}

export function bucketPolicyEditor(bucket) {
  const box = h("div", { id: "bucket-policy" }, h("span", { class: "muted" }, "Policy: …"));
  (async () => {
    let doc;
    try { doc = await api("GET", `${bucketPath(bucket)}/policy`); }
    catch (err) { clear(box, h("span", { class: "error" }, `Policy: ${err.code}`)); return; }
    const area = docArea("bucket-policy-text", "Bucket policy (JSON; empty: none)", doc.document);
    const form = h("form", { class: "inline", id: "bucket-policy-form" }, area, h("button", { type: "submit" }, "Save policy"));
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      try {
        await api("PUT", `${bucketPath(bucket)}/policy`, { json: { document: area.value.trim() } });
        toast(area.value.trim() ? "Bucket policy saved" : "Bucket policy removed");
      } catch (err) { toast(`${err.code}: ${err.message}`, "error"); }
    });
    clear(box, h("p", { class: "muted" }, "Policy"), form);
  })();
  return box;
}

// A dialog-like panel under the users table for one user's policy.
export async function userPolicyPanel(panel, name) {
  let doc;
  try { doc = await api("GET", `/api/users/${encodeURIComponent(name)}/policy`); }
  catch (err) { clear(panel, h("p", { class: "error" }, `${err.code}: ${err.message}`)); return; }
  const current = doc.policy || "custom";
  const choice = h("select", { id: "user-policy-choice", "aria-label": `Policy of ${name}` },
    ["readwrite", "readonly", "custom"].map((p) => h("option", { value: p, selected: p === current }, p)));
  const area = docArea("user-policy-text", `Policy document of ${name}`,
    doc.document ? JSON.stringify(JSON.parse(doc.document), null, 2) : "");
  area.hidden = choice.value !== "custom";
  choice.addEventListener("change", () => { area.hidden = choice.value !== "custom"; });
  const form = h("form", { id: "user-policy-form" }, h("h2", {}, `Policy of ${name}`),
    h("div", { class: "inline" }, choice, h("button", { type: "submit" }, "Save policy")), area);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = choice.value === "custom" ? { document: area.value } : { policy: choice.value };
    try {
      const r = await api("PUT", `/api/users/${encodeURIComponent(name)}/policy`, { json: body });
      toast(`Policy of ${name}: ${r.policy || "custom"}`);
    } catch (err) { toast(`${err.code}: ${err.message}`, "error"); }
  });
  clear(panel, form);
}
