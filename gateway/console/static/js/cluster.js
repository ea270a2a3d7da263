// The cluster page (root only): nodes and drives, metadata, repair, jobs, charts; refreshed every few seconds.
import { api } from "./api.js";
import { charts } from "./charts.js";
import { bar, bytes, clear, h, table, toast, when } from "./dom.js";

const REFRESH_MS = 2000;

export async function clusterView(main, alive) {
  const summary = h("section", { id: "summary", class: "cards" });
  const nodes = h("section", { id: "nodes" });
  const meta = h("section", { id: "metadata" });
  const repair = h("section", { id: "repair" });
  const jobs = h("section", { id: "jobs" });
  const graphs = h("section", { id: "charts", class: "charts" });
  const act = (path, what) => async () => {
    try {
      const r = await api("POST", path);
      toast(`${what} started (job ${r.job.id})`);
      await refresh();
    } catch (err) { toast(`${err.code}: ${err.message}`, "error"); }
  };
  const buttons = h("div", { class: "inline" },
    h("button", { type: "button", id: "start-repair", onclick: act("/api/cluster/repair", "Repair") }, "Repair now"),
    h("button", { type: "button", id: "start-scrub", onclick: act("/api/cluster/scrub", "Scrub") }, "Scrub now"));
  clear(main, h("h1", {}, "Cluster"), buttons, summary, h("h2", {}, "Activity, last hour"), graphs,
    h("h2", {}, "Nodes and drives"), nodes, h("h2", {}, "Repair"), repair, h("h2", {}, "Jobs"), jobs,
    h("h2", {}, "Metadata"), meta);

  async function refresh() {
    let st;
    try { st = await api("GET", "/api/cluster"); }
    catch (err) { clear(summary, h("p", { class: "error" }, `${err.code}: ${err.message}`)); return; }
    const down = st.nodes.filter((n) => !n.live).length;
    const used = st.capacity ? (st.capacity - st.free) / st.capacity : 0;
    clear(summary,
      card("Nodes", `${st.nodes.length - down} up`, down ? `${down} down` : "all up", down ? "bad" : "good"),
      card("Capacity", bytes(st.capacity), `${bytes(st.capacity - st.free)} used`, "", bar(used, "Used capacity")),
      card("Erasure code", st.ec, `version ${st.version}`),
      card("Repair backlog", String(st.repair.backlog), `${bytes(st.repair.bytes_per_s)}/s`,
        st.repair.backlog ? "warn" : "good"));
    clear(nodes, table(["Node", "State", "Zone", "Address", "Capacity", "Used", "Drives", ""], st.nodes.map((n) => {
      const usedN = n.capacity ? (n.capacity - n.free) / n.capacity : 0;
      return h("tr", { "data-node": n.id, class: n.live ? "" : "bad" },
        h("td", { class: "mono" }, n.id),
        h("td", { class: "node-state" }, h("span", { class: `pill ${n.live ? "good" : "bad"}` }, n.live ? "up" : "down"),
          n.state !== "active" ? ` ${n.state}` : ""),
        h("td", {}, n.zone || "–"), h("td", { class: "mono" }, n.address),
        h("td", { class: "num" }, bytes(n.capacity)), h("td", {}, bar(usedN, `${n.id} used`)),
        h("td", {}, h("details", {}, h("summary", {}, `${n.drives.length}`),
          h("ul", { class: "drives" }, n.drives.map((d) => h("li", { class: "mono" },
            `${d.id} ${d.path || ""} ${bytes(d.capacity - d.free)} of ${bytes(d.capacity)}`))))),
        h("td", {}, n.address !== "local" && n.state === "active"
          ? h("button", { type: "button", onclick: () => drain(n.id) }, "Drain") : ""));
    }), { id: "node-table" }));
    const r = st.repair;
    clear(repair, h("dl", { class: "facts", id: "repair-facts" },
      h("dt", {}, "Backlog"), h("dd", { id: "repair-backlog" }, r.backlog),
      h("dt", {}, "Repaired"), h("dd", { id: "repaired" }, `${r.repaired_parts} parts, ${bytes(r.repaired_bytes)}`),
      h("dt", {}, "Rate"), h("dd", {}, `${bytes(r.bytes_per_s)}/s`),
      h("dt", {}, "Failed"), h("dd", {}, r.failed)));
    clear(jobs, st.jobs.length ? table(["Job", "Kind", "Phase", "Progress", "Started", "Message"],
      st.jobs.slice().reverse().map((j) => h("tr", { "data-job": j.id, "data-kind": j.kind },
        h("td", { class: "mono" }, j.id), h("td", {}, j.kind + (j.target ? ` ${j.target}` : "")),
        h("td", { class: "phase" }, j.phase),
        h("td", {}, bar(j.total ? j.completed / j.total : j.phase === "done" ? 1 : 0, `${j.kind} progress`),
          ` ${j.completed}/${j.total} ${j.unit}`),
        h("td", {}, when(j.started)), h("td", {}, j.message || ""))), { id: "job-table" })
      : h("p", { class: "muted" }, "No jobs yet."));
    clear(meta, h("ul", {}, st.metadata.map((m) => h("li", {},
      h("span", { class: `pill ${m.ok ? "good" : "bad"}` }, m.ok ? "ok" : "down"), ` ${m.address} ${m.error || ""}`))));
  }

  async function drain(node) {
    if (!confirm(`Drain ${node}? Its data is moved to the other nodes, then it is retired.`)) return;
    await act(`/api/cluster/nodes/${encodeURIComponent(node)}/drain`, `Drain of ${node}`)();
  }

  async function plot() {
    try {
      const { points } = await api("GET", "/api/metrics");
      clear(graphs, charts(points));
    } catch (err) { clear(graphs, h("p", { class: "error" }, `${err.code}: ${err.message}`)); }
  }

  await Promise.all([refresh(), plot()]);
  let ticks = 0;
  const timer = setInterval(async () => {
    if (!alive()) { clearInterval(timer); return; }
    await refresh();
    if (++ticks % 3 === 0) await plot();
  }, REFRESH_MS);
}

function card(title, value, note, cls = "", extra = null) {
  return h("div", { class: `card ${cls}` }, h("div", { class: "muted" }, title), h("div", { class: "big" }, value),
    h("div", { class: "muted" }, note), extra);
}
