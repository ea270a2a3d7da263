// Users (root only): list, add (the secret is shown once), remove.
import { api } from "./api.js";
import { clear, h, table, toast, when } from "./dom.js";
import { userPolicyPanel } from "./policies.js";

export async function usersView(main) {
  const name = h("input", { id: "new-user", required: true, autocomplete: "off", "aria-label": "New user name",
    placeholder: "user name" });
  const created = h("div", { id: "created-user", "aria-live": "polite" });
  const list = h("div", { id: "user-list" });
  const panel = h("div", { id: "user-policy" });
  const form = h("form", { class: "inline", id: "add-user" }, name, h("button", { type: "submit" }, "Add user"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const u = await api("POST", "/api/users", { json: { name: name.value.trim() } });
      name.value = "";
      clear(created, h("div", { class: "card warn" },
        h("p", {}, `User ${u.name} added. Its secret is shown only now: keep it.`),
        h("dl", { class: "facts" }, h("dt", {}, "Access key"), h("dd", { class: "mono", id: "new-access-key" }, u.access_key),
          h("dt", {}, "Secret key"), h("dd", { class: "mono", id: "new-secret-key" }, u.secret_key))));
      await fill();
    } catch (err) { toast(`${err.code}: ${err.message}`, "error"); }
  });
  async function fill() {
    const { users } = await api("GET", "/api/users");
    clear(list, users.length ? table(["Name", "Access key", "Created", ""], users.map((u) => h("tr", { "data-user": u.name },
      h("td", {}, u.name), h("td", { class: "mono" }, u.access_key), h("td", {}, when(u.created)),
      h("td", { class: "actions" }, h("button", { type: "button", "aria-label": `Policy of ${u.name}`,
        onclick: () => userPolicyPanel(panel, u.name) }, "Policy"),
      h("button", { type: "button", class: "danger", "aria-label": `Remove user ${u.name}`,
        onclick: async () => {
          if (!confirm(`Remove the user ${u.name}? Their access key stops working at once.`)) return;
          try { await api("DELETE", `/api/users/${encodeURIComponent(u.name)}`); await fill(); }
          catch (err) { toast(`${err.code}: ${err.message}`, "error"); }
        } }, "Remove"))))) : h("p", { class: "muted" }, "No users besides the root."));
  }
  clear(main, h("h1", {}, "Users"), form, created, list, panel);
  await fill();
}
