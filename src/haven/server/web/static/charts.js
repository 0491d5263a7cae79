// Haven's Metrics tab: one SVG line chart per scalar tag, runs overlaid, drawn from the JSON the
// page carries (<script type="application/json" id="metrics-data">). Smoothing is TensorBoard's
// debiased exponential moving average; the x axis is the step, the time since the run's first
// point, or the wall-clock time. Without this file the page still lists each run's last values.
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var W = 560, H = 260, M = { top: 12, right: 16, bottom: 30, left: 58 };
  var COLORS = 8;

  // TensorBoard's smoothing: an EMA divided by (1 - w^n) so the first points are not pulled to 0;
  // a constant series and non-finite values are passed through unchanged.
  function smooth(values, weight) {
    var finite = values.filter(function (v) { return v !== null && isFinite(v); });
    var constant = finite.every(function (v) { return v === finite[0]; });
    var last = 0, n = 0;
    return values.map(function (v) {
      if (constant || v === null || !isFinite(v)) return v;
      last = last * weight + (1 - weight) * v;
      n += 1;
      return weight === 1 ? last : last / (1 - Math.pow(weight, n));
    });
  }

  function ticks(lo, hi, count) {
    if (!(hi > lo)) { var pad = Math.abs(lo) * 0.1 || 1; lo -= pad; hi += pad; }
    var raw = (hi - lo) / count, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    var step = [1, 2, 5, 10].map(function (f) { return f * mag; }).find(function (s) { return s >= raw; });
    var out = [], t = Math.ceil(lo / step) * step;
    for (; t <= hi + step * 1e-9; t += step) out.push(Math.abs(t) < step * 1e-9 ? 0 : t);
    return { lo: lo, hi: hi, values: out };
  }

  function fmt(v) {
    if (v === null || !isFinite(v)) return "NaN";
    var a = Math.abs(v);
    if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(2);
    return String(Number(v.toPrecision(4)));
  }

  function xLabel(v, mode) {
    if (mode === "wall") return new Date(v * 1000).toLocaleTimeString();
    return mode === "relative" ? fmt(v) + "s" : fmt(v);
  }

  function el(name, attrs, parent) {
    var node = document.createElementNS(NS, name);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(node);
    return node;
  }

  function xs(points, mode) {
    var start = points.length ? points[0][1] : 0;
    return points.map(function (p) { return mode === "step" ? p[0] : mode === "relative" ? p[1] - start : p[1]; });
  }

  function pathOf(x, y, sx, sy) {
    var d = "", pen = false;
    for (var i = 0; i < x.length; i++) {
      if (y[i] === null || !isFinite(y[i])) { pen = false; continue; }
      d += (pen ? "L" : "M") + sx(x[i]).toFixed(1) + "," + sy(y[i]).toFixed(1);
      pen = true;
    }
    return d;
  }

  function draw(figure, chart, weight, mode) {
    var plot = figure.querySelector(".chart-plot");
    plot.textContent = "";
    var series = chart.series.map(function (s, i) {
      var y = s.points.map(function (p) { return p[2]; });
      return { run: s.run, color: i % COLORS, x: xs(s.points, mode), y: y, smoothed: smooth(y, weight) };
    });
    var allX = [], allY = [];
    series.forEach(function (s) {
      allX = allX.concat(s.x);
      allY = allY.concat(s.y.filter(function (v) { return v !== null && isFinite(v); }));
    });
    var xt = ticks(Math.min.apply(null, allX), Math.max.apply(null, allX), 5);
    var yt = ticks(Math.min.apply(null, allY), Math.max.apply(null, allY), 5);
    var sx = function (v) { return M.left + (v - xt.lo) / (xt.hi - xt.lo) * (W - M.left - M.right); };
    var sy = function (v) { return H - M.bottom - (v - yt.lo) / (yt.hi - yt.lo) * (H - M.top - M.bottom); };

    var svg = el("svg", { viewBox: "0 0 " + W + " " + H, role: "img", class: "chart-svg" }, plot);
    el("title", {}, svg).textContent = chart.tag + ": " + series.length + " run" + (series.length === 1 ? "" : "s");
    var axes = el("g", { class: "axes" }, svg);
    yt.values.forEach(function (v) {
      el("line", { x1: M.left, x2: W - M.right, y1: sy(v), y2: sy(v), class: "grid" }, axes);
      el("text", { x: M.left - 6, y: sy(v) + 4, "text-anchor": "end" }, axes).textContent = fmt(v);
    });
    xt.values.forEach(function (v) {
      el("text", { x: sx(v), y: H - M.bottom + 16, "text-anchor": "middle" }, axes).textContent = xLabel(v, mode);
    });
    el("line", { x1: M.left, x2: W - M.right, y1: H - M.bottom, y2: H - M.bottom, class: "axis" }, axes);
    series.forEach(function (s) {
      if (weight > 0) el("path", { d: pathOf(s.x, s.y, sx, sy), class: "raw series-" + s.color }, svg);
      var line = el("path", { d: pathOf(s.x, s.smoothed, sx, sy), class: "line series-" + s.color, "data-run": s.run }, svg);
      el("title", {}, line).textContent = s.run;
    });
    var readout = document.createElement("p");
    readout.className = "chart-readout";
    readout.textContent = "\u00a0";
    plot.appendChild(readout);
    var marker = el("line", { y1: M.top, y2: H - M.bottom, class: "marker", visibility: "hidden" }, svg);
    svg.addEventListener("mousemove", function (event) {
      var box = svg.getBoundingClientRect();
      var px = (event.clientX - box.left) / box.width * W;
      var xv = xt.lo + (px - M.left) / (W - M.left - M.right) * (xt.hi - xt.lo);
      var parts = [];
      series.forEach(function (s) {
        var best = -1;
        s.x.forEach(function (v, i) { if (best < 0 || Math.abs(v - xv) < Math.abs(s.x[best] - xv)) best = i; });
        if (best >= 0) parts.push(s.run + " @ " + xLabel(s.x[best], mode) + ": " + fmt(s.smoothed[best]) + " (raw " + fmt(s.y[best]) + ")");
      });
      marker.setAttribute("x1", sx(xv)); marker.setAttribute("x2", sx(xv)); marker.setAttribute("visibility", "visible");
      readout.textContent = parts.join(" · ");
    });
    var legend = document.createElement("ul");
    legend.className = "legend";
    series.forEach(function (s) {
      var item = document.createElement("li");
      var swatch = document.createElement("span");
      swatch.className = "swatch series-" + s.color;
      item.appendChild(swatch);
      item.appendChild(document.createTextNode(s.run));
      legend.appendChild(item);
    });
    plot.appendChild(legend);
  }

  var source = document.getElementById("metrics-data");
  if (!source) return;
  var data = JSON.parse(source.textContent);
  var controls = document.querySelector(".metrics-controls");
  if (!controls || !data.tags.length) return;
  controls.hidden = false;
  var slider = document.getElementById("m-smoothing");
  var shown = document.getElementById("m-smoothing-value");
  var axis = document.getElementById("m-x");
  var figures = {};
  document.querySelectorAll("figure.chart").forEach(function (f) { figures[f.dataset.tag] = f; });

  function redraw() {
    var weight = Number(slider.value);
    shown.textContent = weight.toFixed(2);
    data.tags.forEach(function (chart) {
      var figure = figures[chart.tag];
      if (figure) draw(figure, chart, weight, axis.value);
    });
  }
  slider.addEventListener("input", redraw);
  axis.addEventListener("change", redraw);
  controls.addEventListener("submit", function (event) { event.preventDefault(); });
  redraw();
  window.havenSmooth = smooth; // for checking the smoothing against an independent computation
})();
