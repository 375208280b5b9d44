/* evoforge dashboard: polls the JSON endpoints (or reads the data an export inlined) and draws the
   runs table, convergence and hypervolume, the Pareto front, a genome, parallel coordinates, the
   parent's levels over generations and a compression report with plotly.js. */
(function () {
  "use strict";
  var BOOT = window.EVOFORGE_BOOT || { live: true, interval_ms: 1000 };
  var LIVE = BOOT.live !== false;
  var COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                "#bcbd22", "#17becf"];
  var CONFIG = { displaylogo: false, responsive: true };
  var state = { runs: [], details: {}, versions: {}, hidden: {}, focus: null, busy: false, drawn: "",
                table: "", point: null, clickBound: false };

  function $(id) { return document.getElementById(id); }

  function fmt(x) {
    if (x === null || x === undefined || (typeof x === "number" && !isFinite(x))) { return "\u2013"; }
    if (typeof x !== "number") { return String(x); }
    var a = Math.abs(x);
    if (a !== 0 && (a >= 1e6 || a < 1e-3)) { return x.toExponential(3); }
    if (Number.isInteger(x)) { return String(x); }
    return String(Number(x.toPrecision(4)));
  }

  function duration(s) {
    if (s === null || s === undefined) { return "\u2013"; }
    if (s < 60) { return s.toFixed(1) + " s"; }
    var m = Math.floor(s / 60);
    if (m < 60) { return m + " min " + Math.round(s - 60 * m) + " s"; }
    return Math.floor(m / 60) + " h " + (m % 60) + " min";
  }

  function getJSON(url) {
    return fetch(url, { cache: "no-store" }).then(function (r) {
      if (!r.ok) { throw new Error(url + ": HTTP " + r.status); }
      return r.json();
    });
  }

  function fetchRuns() { return LIVE ? getJSON("api/runs") : Promise.resolve({ runs: BOOT.runs }); }
  function fetchDetail(id) { return LIVE ? getJSON("api/run/" + id) : Promise.resolve(BOOT.details[String(id)]); }
  function fetchGenome(id, pid) {
    if (LIVE) { return getJSON("api/run/" + id + "/genome/" + encodeURIComponent(pid)); }
    var g = (BOOT.genomes[String(id)] || {})[pid];
    return g ? Promise.resolve(g) : Promise.reject(new Error("no genome for " + pid));
  }

  function setStatus(text, bad) {
    var el = $("status");
    el.textContent = text;
    el.className = bad ? "status error" : "status";
  }

  function color(id) { return COLORS[id % COLORS.length]; }

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) { e.textContent = text; }
    if (cls) { e.className = cls; }
    return e;
  }

  // ---- runs table ------------------------------------------------------------------------------

  function renderTable() {
    var key = JSON.stringify([state.focus, state.hidden, state.runs.map(function (r) {
      var c = {}; Object.keys(r).forEach(function (k) { if (k !== "state_note") { c[k] = r[k]; } }); return c; })]);
    if (key === state.table) { return; }  // rebuilt only when it changed (a click is never lost)
    state.table = key;
    var body = $("runs").tBodies[0];
    body.textContent = "";
    state.runs.forEach(function (r) {
      var tr = el("tr");
      tr.dataset.run = r.id;
      if (r.id === state.focus) { tr.className = "focus"; }
      var cb = el("input");
      cb.type = "checkbox";
      cb.checked = !state.hidden[r.id];
      cb.title = "draw on the convergence charts";
      cb.addEventListener("change", function () { state.hidden[r.id] = !cb.checked; draw(true); });
      var td = el("td"); td.appendChild(cb); tr.appendChild(td);
      var name = el("td", null, "run");
      var a = el("a", r.name);
      a.title = r.path;
      a.style.borderLeft = "4px solid " + color(r.id);
      a.style.paddingLeft = "6px";
      a.addEventListener("click", function () { setFocus(r.id); });
      name.appendChild(a); tr.appendChild(name);
      tr.appendChild(el("td", r.kind));
      var st = el("td");
      var badge = el("span", r.state, "state state-" + r.state.replace(/ /g, "-"));
      badge.title = r.state_note;
      st.appendChild(badge); tr.appendChild(st);
      tr.appendChild(el("td", fmt(r.generations)));
      tr.appendChild(el("td", fmt(r.evaluations)));
      tr.appendChild(el("td", r.evals_per_s === null ? "\u2013" : r.evals_per_s.toFixed(1)));
      tr.appendChild(el("td", r.hit_rate === null ? "\u2013" : (100 * r.hit_rate).toFixed(1) + " %"));
      var best = r.n_objectives >= 2 ? (r.hypervolume === null ? "\u2013" : "HV " + fmt(r.hypervolume) +
                 (r.hv_computed ? "*" : "")) : fmt(r.best);
      var bc = el("td", best);
      if (r.hv_computed) { bc.title = "* computed by the dashboard (see the hypervolume chart)"; }
      tr.appendChild(bc);
      tr.appendChild(el("td", r.front_size === null || r.front_size === undefined ? "\u2013" : fmt(r.front_size)));
      tr.appendChild(el("td", duration(r.elapsed)));
      body.appendChild(tr);
    });
  }

  function setFocus(id) {
    if (state.focus !== id) { state.point = null; }
    state.focus = id;
    renderTable();
    draw(true);
  }

  // ---- charts ----------------------------------------------------------------------------------

  function show(cardId, on) { $(cardId).hidden = !on; }

  function purge(divId) {
    if (divId === "front") { state.clickBound = false; }  // purge drops the click listener too
    Plotly.purge($(divId));
  }

  function plot(divId, traces, layout) {
    var base = { margin: { l: 60, r: 20, t: 10, b: 50 }, uirevision: "keep", legend: { orientation: "h", y: -0.2 },
                 hovermode: "closest" };
    Object.keys(layout || {}).forEach(function (k) { base[k] = layout[k]; });
    return Plotly.react($(divId), traces, base, CONFIG);
  }

  function drawConvergence(runs) {
    var conv = [], hv = [], notes = [];
    runs.forEach(function (r) {
      var d = state.details[r.id];
      if (!d || state.hidden[r.id]) { return; }
      var s = d.series, c = color(r.id);
      if (s.best) {
        conv.push({ x: s.generation, y: s.best, name: r.name + ": best", mode: "lines+markers", type: "scatter",
                    line: { color: c }, marker: { size: 4 } });
        if (s.spread) {
          conv.push({ x: s.generation, y: s.spread, name: r.name + ": " + s.spread_label, mode: "lines",
                      type: "scatter", line: { color: c, dash: "dash", width: 1 } });
        }
        (s.stage_best || []).forEach(function (col, k) {
          conv.push({ x: s.generation, y: col, name: r.name + ": stage " + (k + 1) + " best", mode: "lines",
                      type: "scatter", line: { color: c, dash: "dot", width: 1 } });
        });
      }
      if (s.hypervolume) {
        hv.push({ x: s.hypervolume.generation, y: s.hypervolume.value, name: r.name, mode: "lines+markers",
                  type: "scatter", line: { color: c }, marker: { size: 4 } });
        notes.push(r.name + ": " + (s.hypervolume.computed ? "computed here, reference point [" +
          (d.hv_reference || []).map(fmt).join(", ") + "] (the worst of generation 1 plus a tenth of its range)"
          : "as the run recorded it"));
      }
    });
    show("conv-card", conv.length > 0);
    show("hv-card", hv.length > 0);
    if (conv.length) { plot("conv", conv, { xaxis: { title: { text: "generation" } }, yaxis: { title: { text: "fitness" } } }); }
    else { purge("conv"); }
    if (hv.length) { plot("hv", hv, { xaxis: { title: { text: "generation" } }, yaxis: { title: { text: "hypervolume" } } }); }
    else { purge("hv"); }
    $("hv-note").textContent = notes.join("; ");
  }

  function hoverTemplate(names) {
    var t = names[0] + ": %{x:.5g}<br>" + names[1] + ": %{y:.5g}";
    if (names.length > 2) { t += "<br>" + names[2] + ": %{marker.color:.5g}"; }
    return t + "<br>%{customdata}<extra></extra>";
  }

  function drawFront(d) {
    var f = d && d.front;
    show("front-card", !!f);
    show("parcoords-card", !!f && f.objectives.length >= 3);
    show("genome-card", !!f);
    if (!f) { purge("front"); purge("parcoords"); purge("genome"); return; }
    var names = f.objectives, traces = [];
    if (f.cloud && f.cloud[0].length) {
      traces.push({ x: f.cloud[0], y: f.cloud[1], name: "evaluated", mode: "markers", type: "scatter",
                    hoverinfo: "skip", marker: { size: 4, color: "rgba(140,140,140,0.35)" } });
    }
    var marker = { size: 8, color: color(d.id), line: { width: 0.5, color: "#333" } };
    if (names.length > 2) {
      marker.color = f.cols[2];
      marker.colorscale = "Viridis";
      marker.colorbar = { title: { text: names[2] }, thickness: 12 };
    }
    traces.push({ x: f.cols[0], y: f.cols[1], customdata: f.ids, name: "front", mode: "markers", type: "scatter",
                  marker: marker, hovertemplate: hoverTemplate(names) });
    if (f.uniform && f.uniform.ids.length) {
      traces.push({ x: f.uniform.cols[0], y: f.uniform.cols[1], customdata: f.uniform.ids, name: "uniform",
                    mode: "markers", type: "scatter", hovertemplate: hoverTemplate(names.slice(0, 2)),
                    marker: { size: 10, symbol: "diamond", color: "#d62728" } });
    }
    plot("front", traces, { xaxis: { title: { text: names[0] } }, yaxis: { title: { text: names[1] } } });
    if (!state.clickBound) {
      state.clickBound = true;
      $("front").on("plotly_click", function (ev) {
        var p = ev && ev.points && ev.points[0];
        if (p && p.customdata !== undefined) { showGenome(state.focus, p.customdata); }
      });
    }
    var note = f.total + " non-dominated point(s)" + (f.evaluated ? " of " + f.evaluated + " evaluated" : "") +
               ", from " + f.source;
    if (f.shown < f.total) { note += "; " + f.shown + " shown (thinned evenly)"; }
    $("front-note").textContent = note + ". Hover a point for its objectives, click it for its genome.";
    if (names.length < 3) { purge("parcoords"); } else {
      plot("parcoords", [{ type: "parcoords", line: { color: f.cols[0], colorscale: "Viridis" },
        dimensions: names.map(function (n, j) { return { label: n, values: f.cols[j] }; }) }],
        { margin: { l: 60, r: 60, t: 40, b: 20 } });
    }
    if (!state.point) {
      $("genome-title").textContent = "click a point of the front";
      purge("genome");
    }
  }

  function showGenome(runId, pid) {
    state.point = { run: runId, pid: pid };
    $("genome-title").textContent = "loading " + pid + "\u2026";
    return fetchGenome(runId, pid).then(function (g) {
      var objs = Object.keys(g.objectives).map(function (k) { return k + " " + fmt(g.objectives[k]); });
      $("genome-title").textContent = pid + ": " + objs.join(", ");
      var bars = g.bars, traces = [], layout = { showlegend: false, margin: { l: 60, r: 20, t: 10, b: 90 } };
      var short = g.labels.map(function (s) { return String(s).replace(/^model\.(layers\.)?/, ""); });
      bars.forEach(function (b, k) {
        traces.push({ type: "bar", x: short, y: b.y, name: b.name, xaxis: "x", yaxis: k ? "y" + (k + 1) : "y",
                      customdata: g.labels, hovertemplate: "%{customdata}<br>" + b.name + " %{y}<extra></extra>",
                      marker: { color: COLORS[k] } });
      });
      if (bars.length > 1) {
        var h = 1 / bars.length;
        bars.forEach(function (b, k) {
          layout[k ? "yaxis" + (k + 1) : "yaxis"] = { domain: [1 - (k + 1) * h + 0.04, 1 - k * h], title: { text: b.name } };
        });
      } else if (bars.length) {
        layout.yaxis = { title: { text: bars[0].name } };
      }
      layout.xaxis = { title: { text: g.labels.length && isNaN(Number(g.labels[0])) ? "layer" : "gene" },
                       automargin: true, tickangle: -45, anchor: bars.length > 1 ? "y" + bars.length : "y" };
      plot("genome", traces, layout);
    }).catch(function (e) {
      $("genome-title").textContent = "no genome for " + pid + " (" + e.message + ")";
    });
  }

  function drawHeatmap(d) {
    var h = d && d.heatmap;
    show("heatmap-card", !!h);
    if (!h) { purge("heatmap"); return; }
    plot("heatmap", [{ type: "heatmap", x: h.generation, y: h.labels, z: h.z, colorscale: "Viridis",
                       colorbar: { title: { text: "level" }, thickness: 12 },
                       hovertemplate: "generation %{x}<br>%{y}: %{z}<extra></extra>" }],
         { xaxis: { title: { text: "generation" } }, yaxis: { automargin: true, autorange: "reversed" },
           margin: { l: 60, r: 20, t: 10, b: 50 } });
  }

  function drawReport(d) {
    var r = d && d.report;
    show("report-card", !!r);
    var box = $("report");
    box.textContent = "";
    if (!r) { return; }
    $("report-title").textContent = r.title + (r.average !== null ? " (average " + fmt(r.average) + ")" : "");
    var t = el("table"), head = el("tr");
    r.columns.forEach(function (c) { head.appendChild(el("th", c)); });
    t.appendChild(head);
    r.rows.forEach(function (row) {
      var tr = el("tr");
      row.forEach(function (v) { tr.appendChild(el("td", typeof v === "number" ? v.toFixed(4) : fmt(v))); });
      t.appendChild(tr);
    });
    box.appendChild(t);
    var times = Object.keys(r.times || {});
    if (times.length) {
      box.appendChild(el("p", "times: " + times.map(function (k) { return k + " " + fmt(r.times[k]) + " s"; }).join(", "), "hint"));
    }
  }

  function drawNotes(d) {
    var notes = $("notes"), files = $("files");
    notes.textContent = "";
    files.textContent = "";
    if (!d) { show("notes-card", false); return; }
    (d.notes || []).forEach(function (n) { notes.appendChild(el("li", n)); });
    if (LIVE) {
      (d.files || []).forEach(function (name) {
        var li = el("li"), a = el("a", name);
        a.href = "run/" + d.id + "/file/" + encodeURIComponent(name);
        a.target = "_blank";
        li.appendChild(a);
        files.appendChild(li);
      });
    }
    show("notes-card", notes.children.length + files.children.length > 0);
  }

  function draw(force) {
    var key = JSON.stringify([state.focus, state.hidden, state.runs.map(function (r) { return state.versions[r.id]; })]);
    if (!force && key === state.drawn) { return; }
    state.drawn = key;
    drawConvergence(state.runs);
    var d = state.details[state.focus];
    var run = state.runs.filter(function (r) { return r.id === state.focus; })[0];
    $("focus-title").textContent = run ? run.name + " (" + run.kind + ")" : "";
    drawFront(d);
    drawHeatmap(d);
    drawReport(d);
    drawNotes(d);
  }

  // ---- polling ---------------------------------------------------------------------------------

  function tick() {
    if (state.busy) { return Promise.resolve(); }
    state.busy = true;
    return fetchRuns().then(function (data) {
      state.runs = data.runs;
      if (state.focus === null && data.runs.length) {
        var multi = data.runs.filter(function (r) { return r.n_objectives >= 2; })[0];
        state.focus = (multi || data.runs[0]).id;
      }
      var changed = data.runs.filter(function (r) { return state.versions[r.id] !== r.version; });
      return Promise.all(changed.map(function (r) {
        return fetchDetail(r.id).then(function (d) { state.details[r.id] = d; state.versions[r.id] = r.version; });
      }));
    }).then(function () {
      renderTable();
      draw(false);
      setStatus(LIVE ? "live, updated " + new Date().toLocaleTimeString() : "exported " + (BOOT.exported || ""));
    }).catch(function (e) {
      setStatus("cannot reach the dashboard server (" + e.message + "); retrying", true);
    }).then(function () { state.busy = false; });
  }

  window.evoforgeDashboard = { state: state, tick: tick, showGenome: showGenome };
  tick();
  if (LIVE) { setInterval(tick, Math.max(200, BOOT.interval_ms || 1000)); }
}());
