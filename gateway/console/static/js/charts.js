// Line charts drawn as SVG from the gateway's own metrics history (no library, no network).
import { bytes, h, svg } from "./dom.js";

const W = 560, H = 160, PAD = { l: 68, r: 8, t: 8, b: 22 };

// Round steps for an axis up to max: 1, 2, 5 x a power of `base` (1024 for bytes, so 512 KiB, not 488.3 KiB).
function ticks(max, base = 10) {
  if (!(max > 0)) return [0, 1];
  const step = base === 10 ? 10 ** Math.floor(Math.log10(max)) : 1024 ** Math.floor(Math.log(max) / Math.log(1024));
  const nice = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000].map((m) => m * step).find((s) => max / s <= 5);
  const out = [];
  for (let v = 0; v <= max + nice * 0.001; v += nice) out.push(v);
  if (out[out.length - 1] < max) out.push(out[out.length - 1] + nice);
  return out;
}

// series: [{name, key, cls}], fmt: value formatter, base: of the axis' round numbers.
export function lineChart(title, points, series, fmt, base = 10) {
  const fig = h("figure", { class: "chart", "data-chart": title });
  fig.append(h("figcaption", {}, title, " ", ...series.map((s) => h("span", { class: `key ${s.cls}` }, s.name))));
  if (points.length < 2) {
    fig.append(h("p", { class: "muted" }, "Collecting… (a point every few seconds)"));
    return fig;
  }
  const t0 = points[0].t, t1 = points[points.length - 1].t;
  const values = points.flatMap((p) => series.map((s) => p[s.key])).filter((v) => v !== null && v !== undefined);
  const ys = ticks(Math.max(0, ...values), base);
  const ymax = ys[ys.length - 1] || 1;
  const x = (t) => PAD.l + ((t - t0) / Math.max(t1 - t0, 1)) * (W - PAD.l - PAD.r);
  const y = (v) => H - PAD.b - (v / ymax) * (H - PAD.t - PAD.b);
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${title} over the last hour` });
  for (const v of ys) {
    chart.append(svg("line", { x1: PAD.l, x2: W - PAD.r, y1: y(v), y2: y(v), class: "grid" }));
    chart.append(svg("text", { x: PAD.l - 4, y: y(v) + 4, class: "axis", "text-anchor": "end" }, fmt(v)));
  }
  const span = Math.round(t1 - t0);
  chart.append(svg("text", { x: PAD.l, y: H - 4, class: "axis" }, span >= 120 ? `${Math.round(span / 60)} min ago` : `${span} s ago`));
  chart.append(svg("text", { x: W - PAD.r, y: H - 4, class: "axis", "text-anchor": "end" }, "now"));
  for (const s of series) {
    let d = "";
    let pen = "M";
    for (const p of points) {
      const v = p[s.key];
      if (v === null || v === undefined) { pen = "M"; continue; }
      d += `${pen}${x(p.t).toFixed(1)},${y(v).toFixed(1)} `;
      pen = "L";
    }
    if (d) chart.append(svg("path", { d, class: `line ${s.cls}` }));
  }
  const last = points[points.length - 1];
  fig.append(chart, h("p", { class: "latest" }, series.map((s) => `${s.name}: ${fmt(last[s.key] ?? 0)}`).join(" · ")));
  return fig;
}

const rate = (v) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));
const secs = (v) => (v >= 1 ? `${v.toFixed(2)} s` : `${(v * 1000).toFixed(v < 0.01 ? 2 : 0)} ms`);

export function charts(points) {
  return [
    lineChart("Requests per second", points, [{ name: "requests/s", key: "rps", cls: "s1" }], rate),
    lineChart("Throughput", points, [
      { name: "in", key: "in_bps", cls: "s1" }, { name: "out", key: "out_bps", cls: "s2" }], (v) => `${bytes(v)}/s`, 1024),
    lineChart("Latency", points, [
      { name: "p50", key: "p50", cls: "s1" }, { name: "p90", key: "p90", cls: "s2" },
      { name: "p99", key: "p99", cls: "s3" }], secs),
    lineChart("Errors per second", points, [
      { name: "4xx", key: "errors_4xx", cls: "s2" }, { name: "5xx", key: "errors_5xx", cls: "s3" }], rate),
  ];
}
