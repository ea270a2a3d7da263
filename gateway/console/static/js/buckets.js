// The bucket list and the object browser (folders by "/", a page at a time, uploads by picking or dropping).
import { api, bucketPath } from "./api.js";
import { bar, bytes, clear, h, table, toast, when } from "./dom.js";
import { bucketPolicyEditor } from "./policies.js";
import { tagsEditor } from "./tags.js";
import { droppedFiles, pickedFiles, uploadFile } from "./upload.js";
import { objectLockLine, versioningControl } from "./versions.js";

const enc = encodeURIComponent;

export async function bucketsView(main) {
  const name = h("input", { id: "new-bucket", name: "bucket", required: true, autocomplete: "off",
    pattern: "[a-z0-9][a-z0-9.\\-]{1,61}[a-z0-9]", "aria-label": "New bucket name", placeholder: "new-bucket-name" });
  const locked = h("input", { type: "checkbox", id: "new-bucket-lock" });
  const form = h("form", { class: "inline", id: "create-bucket" }, name,
    h("label", { for: "new-bucket-lock", title: "Object lock (turns versioning on for good)" }, locked, " Object lock"),
    h("button", { type: "submit" }, "Create bucket"));
  const list = h("div", { id: "bucket-list" }, h("p", { class: "muted" }, "Loading…"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await api("POST", "/api/buckets", { json: { name: name.value.trim(), object_lock: locked.checked } });
      locked.checked = false;
      toast(`Bucket ${name.value.trim()} created`);
      name.value = "";
      await fill();
    } catch (err) { toast(`${err.code}: ${err.message}`, "error"); }
  });
  async function fill() {
    const { buckets } = await api("GET", "/api/buckets");
    if (!buckets.length) { clear(list, h("p", { class: "muted" }, "No buckets yet.")); return; }
    clear(list, table(["Bucket", "Created", ""], buckets.map((b) => h("tr", { "data-bucket": b.name },
      h("td", {}, h("a", { href: `#/b/${enc(b.name)}/` }, b.name)),
      h("td", {}, when(b.created)),
      h("td", { class: "actions" }, h("button", { type: "button", class: "danger", "data-action": "delete-bucket",
        "aria-label": `Delete bucket ${b.name}`, onclick: () => removeBucket(b.name) }, "Delete"))))));
  }
  async function removeBucket(bucket) {
    if (!confirm(`Delete the bucket ${bucket}? It must be empty.`)) return;
    try { await api("DELETE", bucketPath(bucket)); toast(`Bucket ${bucket} deleted`); await fill(); }
    catch (err) { toast(`${err.code}: ${err.message}`, "error"); }
  }
  clear(main, h("h1", {}, "Buckets"), form, list);
  await fill();
}

export async function browserView(main, bucket, prefix) {
  const tokens = [""];  // the continuation token of each page seen so far
  let page = 0;
  const listing = h("div", { id: "listing" });
  const pager = h("div", { class: "pager" });
  const uploads = h("div", { id: "uploads", "aria-live": "polite" });
  const crumbs = [h("a", { href: "#/buckets" }, "Buckets"), " / ", h("a", { href: `#/b/${enc(bucket)}/` }, bucket)];
  let acc = "";
  for (const part of prefix.split("/").filter(Boolean)) {
    acc += `${part}/`;
    crumbs.push(" / ", h("a", { href: `#/b/${enc(bucket)}/${enc(acc)}` }, part));
  }
  // Hidden pickers, opened by the buttons: out of the tab order, so that Tab meets only what can be seen.
  const hidden = { class: "visually-hidden", tabindex: -1, "aria-hidden": "true" };
  const fileInput = h("input", { type: "file", id: "upload-files", multiple: true, ...hidden });
  const dirInput = h("input", { type: "file", id: "upload-folder", webkitdirectory: true, ...hidden });
  fileInput.addEventListener("change", () => start(pickedFiles(fileInput)).finally(() => { fileInput.value = ""; }));
  dirInput.addEventListener("change", () => start(pickedFiles(dirInput)).finally(() => { dirInput.value = ""; }));
  const drop = h("div", { class: "drop", id: "drop-zone" },
    h("button", { type: "button", onclick: () => fileInput.click() }, "Upload files"),
    h("button", { type: "button", onclick: () => dirInput.click() }, "Upload a folder"),
    h("span", { class: "muted" }, " or drop files and folders here"), fileInput, dirInput);
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", async (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    await start(await droppedFiles(e.dataTransfer));
  });

  async function start(files) {
    for (const { file, path } of files) {
      const key = prefix + path;
      const ctl = new AbortController();
      const progress = bar(0, `Uploading ${key}`);
      const state = h("span", { class: "muted" }, "0%");
      const cancel = h("button", { type: "button", onclick: () => ctl.abort() }, "Cancel");
      const row = h("div", { class: "upload", "data-key": key }, h("span", { class: "name" }, key), progress, state, cancel);
      uploads.append(row);
      const total = Math.max(file.size, 1);
      try {
        await uploadFile(bucket, key, file, (sent) => {
          const f = Math.min(sent / total, 1);
          progress.firstChild.style.width = `${f * 100}%`;
          progress.setAttribute("aria-valuenow", Math.round(f * 100));
          state.textContent = `${Math.round(f * 100)}%`;
        }, ctl.signal);
        state.textContent = "done";
        row.classList.add("done");
        progress.firstChild.style.width = "100%";
      } catch (err) {
        state.textContent = err.code === "Cancelled" ? "cancelled" : `failed: ${err.message}`;
        row.classList.add("failed");
      }
      cancel.remove();
    }
    await show();
  }

  async function show() {
    let doc;
    try {
      doc = await api("GET", `${bucketPath(bucket)}/objects`, { query: { prefix, token: tokens[page] } });
    } catch (err) { clear(listing, h("p", { class: "error" }, `${err.code}: ${err.message}`)); return; }
    if (doc.next && tokens.length === page + 1) tokens.push(doc.next);
    const rows = [
      ...doc.folders.map((f) => h("tr", { class: "folder", "data-prefix": f },
        h("td", {}, h("a", { href: `#/b/${enc(bucket)}/${enc(f)}`, class: "folder" }, f.slice(prefix.length))),
        h("td", {}, ""), h("td", {}, ""), h("td", {}, ""))),
      ...doc.objects.map((o) => h("tr", { "data-key": o.key },
        h("td", {}, h("input", { type: "checkbox", class: "pick", value: o.key, "aria-label": `Select ${o.key}`,
          onchange: picked }), " ",
          h("a", { href: `#/o/${enc(bucket)}/${enc(o.key)}` }, o.key.slice(prefix.length))),
        h("td", { class: "num" }, bytes(o.size)),
        h("td", {}, when(o.modified)),
        h("td", { class: "actions" },
          h("a", { class: "button", href: `${bucketPath(bucket)}/download?key=${enc(o.key)}`, download: "",
            "aria-label": `Download ${o.key}` }, "Download"),
          h("button", { type: "button", class: "danger", "aria-label": `Delete ${o.key}`,
            onclick: () => removeObject(o.key) }, "Delete")))),
    ];
    clear(listing, rows.length ? table(["Name", "Size", "Modified", ""], rows, { id: "objects" })
      : h("p", { class: "muted", id: "empty" }, "Nothing here yet."));
    picked();
    clear(pager, deleteSelected,
      h("button", { type: "button", disabled: page === 0, onclick: () => { page--; show(); } }, "Previous page"),
      h("span", { class: "muted" }, `Page ${page + 1}`),
      h("button", { type: "button", id: "next-page", disabled: !doc.next, onclick: () => { page++; show(); } }, "Next page"));
  }

  const deleteSelected = h("button", { type: "button", class: "danger", id: "delete-selected", disabled: true,
    onclick: async () => {
      const keys = [...listing.querySelectorAll("input.pick:checked")].map((c) => c.value);
      if (!keys.length || !confirm(`Delete ${keys.length} object${keys.length > 1 ? "s" : ""}?`)) return;
      try {
        const r = await api("POST", `${bucketPath(bucket)}/delete`, { json: { keys } });
        if (r.errors.length) toast(`${r.errors.length} not deleted: ${r.errors[0].code} ${r.errors[0].key}`, "error");
        else toast(`${r.deleted.length} deleted`);
      } catch (err) { toast(`${err.code}: ${err.message}`, "error"); }
      await show();
    } }, "Delete selected");
  function picked() {
    const n = listing.querySelectorAll("input.pick:checked").length;
    deleteSelected.disabled = n === 0;
    deleteSelected.textContent = n ? `Delete ${n} selected` : "Delete selected";
  }

  async function removeObject(key) {
    if (!confirm(`Delete ${key}?`)) return;
    try {
      await api("DELETE", `${bucketPath(bucket)}/object`, { query: { key } });
      toast(`${key} deleted`);
      await show();
    } catch (err) { toast(`${err.code}: ${err.message}`, "error"); }
  }

  const settings = prefix ? null : h("details", { class: "settings", id: "bucket-settings" },
    h("summary", {}, "Bucket settings"), versioningControl(bucket), objectLockLine(bucket), h("p", { class: "muted" }, "Tags"), tagsEditor(bucket),
    bucketPolicyEditor(bucket));
  clear(main, h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, crumbs),
    h("h1", {}, prefix ? prefix : bucket), settings, drop, uploads, listing, pager);
  await show();
}
