// The console's shell: sign-in, the header, and a router over location.hash.
import { ApiError, api, session, signedOut } from "./api.js";
import { browserView, bucketsView } from "./buckets.js";
import { clusterView } from "./cluster.js";
import { clear, h, toast } from "./dom.js";
import { objectView } from "./object.js";
import { usersView } from "./users.js";

const main = document.getElementById("main");
let generation = 0;  // bumped on each navigation: a page's timers stop when it is left

function signInView(message = "") {
  document.getElementById("top").hidden = true;
  const access = h("input", { id: "access-key", name: "access_key", autocomplete: "username", required: true,
    spellcheck: "false" });
  const secret = h("input", { id: "secret-key", name: "secret_key", type: "password", autocomplete: "current-password",
    required: true });
  const error = h("p", { id: "signin-error", class: "error", role: "alert" }, message);
  const form = h("form", { id: "signin", class: "signin" },
    h("h1", {}, "Tessera console"),
    h("label", { for: "access-key" }, "Access key"), access,
    h("label", { for: "secret-key" }, "Secret key"), secret,
    h("button", { type: "submit" }, "Sign in"), error);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    error.textContent = "";
    try {
      const r = await api("POST", "/api/session", { json: { access_key: access.value, secret_key: secret.value } });
      secret.value = "";
      enter(r);
      if (!location.hash || location.hash === "#/signin") location.hash = "#/buckets";
      else route();
    } catch (err) {
      error.textContent = err instanceof ApiError ? `${err.message || err.code}` : String(err);
    }
  });
  clear(main, form);
  access.focus();
}

function enter(who) {
  Object.assign(session, { csrf: who.csrf, root: who.root, access_key: who.access_key });
  document.getElementById("top").hidden = false;
  document.getElementById("who").textContent = `${who.root ? "root" : "user"} ${who.access_key}`;
  for (const a of document.querySelectorAll("[data-root]")) a.hidden = !who.root;
}

async function route() {
  const mine = ++generation;
  const alive = () => mine === generation;
  const [, page, ...rest] = (location.hash || "#/buckets").split("/");
  const arg = rest.map(decodeURIComponent);
  for (const a of document.querySelectorAll("#nav a")) {
    a.toggleAttribute("aria-current", a.dataset.nav === page || (a.dataset.nav === "buckets" && "bo".includes(page)));
  }
  try {
    if (page === "b") await browserView(main, arg[0], arg.slice(1).join("/"));  // "docs%2F" or typed "docs/"
    else if (page === "o") await objectView(main, arg[0], arg.slice(1).join("/"));
    else if (page === "cluster" && session.root) await clusterView(main, alive);
    else if (page === "users" && session.root) await usersView(main);
    else await bucketsView(main);
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return;
    clear(main, h("p", { class: "error" }, err instanceof ApiError ? `${err.code}: ${err.message}` : String(err)));
  }
  // Focus the new page for keyboard and screen reader users, unless they are already at work in it.
  if (mine === generation && !main.contains(document.activeElement)) main.focus({ preventScroll: true });
}

signedOut.addEventListener("signedout", () => signInView("Your session ended: sign in again."));

document.getElementById("signout").addEventListener("click", async () => {
  try { await api("DELETE", "/api/session"); } catch { /* signed out either way */ }
  Object.assign(session, { csrf: "", root: false, access_key: "" });
  generation++;
  signInView();
  toast("Signed out");
});

window.addEventListener("hashchange", () => { if (session.csrf) route(); });

(async () => {
  try {
    enter(await api("GET", "/api/session"));
    await route();
  } catch {
    signInView();
  }
})();
