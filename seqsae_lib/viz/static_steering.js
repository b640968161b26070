// The kernel-free steering widget of chapter 5 (seqsae_lib.viz.widgets.static_steering_html embeds this file).
// It re-ranks one user's top-k in the browser from the payload of
// seqsae_lib.steering.static.export_static_steering: scores = base + sum over sliders of strength * bonus,
// summed in float64 in slider order, ties to the smaller item id (seqsae_lib.steering.static.static_top_k does
// the same arithmetic in Python, for the tests). No network, no kernel, no library: plain DOM.
(function () {
  "use strict";
  if (window.seqsaeStaticSteering) { return; }

  function floats(b64) {
    var bin = atob(b64), n = bin.length / 4, view = new DataView(new ArrayBuffer(bin.length));
    for (var i = 0; i < bin.length; i++) { view.setUint8(i, bin.charCodeAt(i)); }
    var out = new Float64Array(n);
    for (var j = 0; j < n; j++) { out[j] = view.getFloat32(4 * j, true); }
    return out;
  }

  function bits(b64, n) {  // indices set in a little-endian bit mask
    var bin = atob(b64), out = [];
    for (var j = 0; j < n; j++) { if ((bin.charCodeAt(j >> 3) >> (j & 7)) & 1) { out.push(j); } }
    return out;
  }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    for (var key in (attrs || {})) { node.setAttribute(key, attrs[key]); }
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function pct(x) { return Math.round(100 * x) + "%"; }
  function signed(x, digits) { return (x >= 0 ? "+" : "\u2212") + Math.abs(x).toFixed(digits); }

  function render(root, data) {
    if (data.format !== "seqsae-static-steering/1") {
      root.textContent = "Unknown steering payload format: " + data.format;
      return;
    }
    var k = data.k, ids = data.items.id, sliders = data.sliders;
    var bonus = sliders.map(function (s) { return floats(s.bonus); });
    var zero = sliders.map(function (s) {
      var best = 0;
      s.values.forEach(function (v, i) { if (Math.abs(v) < Math.abs(s.values[best])) { best = i; } });
      return best;
    });
    var users = data.users.map(function (u) {
      return {id: u.id, history: u.history, items: bits(u.items, ids.length), base: floats(u.base)};
    });
    var state = {user: 0, pos: zero.slice()};

    function topK(user, pos) {
      var n = user.items.length, scores = new Float64Array(n), order = [];
      for (var i = 0; i < n; i++) { scores[i] = user.base[i]; order.push(i); }
      sliders.forEach(function (s, c) {
        var st = s.strengths[pos[c]];
        if (st !== 0) {
          var b = bonus[c];
          for (var i = 0; i < n; i++) { scores[i] += st * b[user.items[i]]; }
        }
      });
      order.sort(function (a, b) {
        return scores[b] - scores[a] || ids[user.items[a]] - ids[user.items[b]];
      });
      return order.slice(0, k).map(function (i) { return user.items[i]; });
    }

    function shares(list) {
      return sliders.map(function (s, c) {
        var w = data.items.weights[c], total = 0;
        list.forEach(function (j) { total += w[j]; });
        return total / list.length;
      });
    }

    root.textContent = "";
    root.classList.add("seqsae-ss");
    var head = el("div", {"class": "seqsae-ss-head"});
    var pick = el("select", {"class": "seqsae-ss-user", "aria-label": "User id"});
    users.forEach(function (u, i) { pick.appendChild(el("option", {value: String(i)}, "user " + u.id)); });
    head.appendChild(el("label", {}, "User id "));
    head.lastChild.appendChild(pick);
    var status = el("small", {"class": "seqsae-ss-status"});
    head.appendChild(status);
    root.appendChild(head);
    var hist = el("p", {"class": "seqsae-ss-history"});
    root.appendChild(hist);

    var title = "Concepts (right: more, left: fewer)";
    if (data.calibrated) {
      title += " \u2014 each slider's ends are the share of an average user's top-" + k + " reachable within an NDCG@" +
        k + " drop of " + data.budget + "; 0 is the unsteered list; each slider's cost is measured alone";
    }
    root.appendChild(el("p", {}, "")).appendChild(el("b", {}, title));
    var inputs = [], readouts = [], meanings = [];
    sliders.forEach(function (s, c) {
      var row = el("div", {"class": "seqsae-ss-row"});
      var name = el("span", {"class": "seqsae-ss-name"}, s.name);
      var input = el("input", {type: "range", min: "0", max: String(s.values.length - 1), step: "1",
                               value: String(zero[c]), "data-concept": s.name, "aria-label": s.name});
      var readout = el("span", {"class": "seqsae-ss-readout"});
      var meaning = el("small", {"class": "seqsae-ss-meaning"});
      row.appendChild(name); row.appendChild(input); row.appendChild(readout); row.appendChild(meaning);
      root.appendChild(row);
      input.addEventListener("input", function () { state.pos[c] = Number(input.value); update(); });
      inputs.push(input); readouts.push(readout); meanings.push(meaning);
    });
    var reset = el("button", {type: "button", "class": "seqsae-ss-reset"}, "Reset sliders");
    root.appendChild(reset);
    var table = el("table", {"class": "seqsae-ss-table"});
    root.appendChild(table);
    var summary = el("p", {"class": "seqsae-ss-summary"});
    root.appendChild(summary);

    function update() {
      var start = performance.now();
      var user = users[state.user];
      var base = topK(user, zero), list = topK(user, state.pos);
      var wasRank = {};
      base.forEach(function (j, r) { wasRank[j] = r + 1; });
      table.textContent = "";
      var header = el("tr");
      ["#", "recommended", "genres", "change", "concepts"].forEach(function (h) { header.appendChild(el("th", {}, h)); });
      table.appendChild(el("thead")).appendChild(header);
      var body = el("tbody");
      list.forEach(function (j, r) {
        var was = wasRank[j], isNew = was === undefined;
        var tr = el("tr", {"data-item": String(ids[j]), "class": isNew ? "seqsae-ss-new" : ""});
        var tags = sliders.filter(function (s, c) { return data.items.weights[c][j] > 0; }).map(function (s) { return s.name; });
        [String(r + 1), data.items.title[j], data.items.genres[j],
         isNew ? "new" : (was === r + 1 ? "=" : "was " + was), tags.join(", ")].forEach(function (t) {
          tr.appendChild(el("td", {}, t));
        });
        body.appendChild(tr);
      });
      table.appendChild(body);
      var before = shares(base), after = shares(list);
      var inList = {};
      list.forEach(function (j) { inList[j] = true; });
      var left = base.filter(function (j) { return !inList[j]; });
      var common = base.length - left.length;
      var jaccard = common / (base.length + list.length - common);
      summary.textContent = "";
      summary.appendChild(el("b", {}, "Concept share"));
      summary.appendChild(document.createTextNode(" (unsteered \u2192 steered): " + sliders.map(function (s, c) {
        return s.name + " " + pct(before[c]) + " \u2192 " + pct(after[c]);
      }).join(", ")));
      summary.appendChild(el("br"));
      summary.appendChild(el("b", {}, "Overlap"));
      summary.appendChild(document.createTextNode(" with the unsteered list (Jaccard@" + k + "): " + jaccard.toFixed(2)));
      summary.appendChild(el("br"));
      summary.appendChild(el("b", {}, "Left the list:"));
      summary.appendChild(document.createTextNode(" " + (left.map(function (j) { return data.items.title[j]; }).join("; ") || "none")));
      sliders.forEach(function (s, c) {
        var p = state.pos[c], v = s.values[p];
        readouts[c].textContent = data.calibrated ? signed(v, 2) : signed(v, 2) + " (strength)";
        if (data.calibrated) {
          var text = "average user's top-" + k + ": " + pct(s.low) + " at the left end, " + pct(s.unsteered) +
            " unsteered, " + pct(s.high) + " at the right end; here " + pct(s.share[p]) + ", NDCG@" + k + " " +
            data.reference_ndcg.toFixed(3) + " \u2192 " + (data.reference_ndcg - s.cost[p]).toFixed(3);
          if (s.operator !== "SAE latents") { text += "; " + s.operator + ": " + s.note.split(";")[0]; }
          meanings[c].textContent = text;
        }
      });
      root.setAttribute("data-user", String(user.id));
      root.setAttribute("data-updates", String(Number(root.getAttribute("data-updates") || "0") + 1));
      status.textContent = " updated in your browser in " + (performance.now() - start).toFixed(1) + " ms";
    }

    function setUser(i) {
      state.user = i;
      var u = users[i];
      hist.textContent = "";
      hist.appendChild(el("b", {}, "Recently watched"));
      hist.appendChild(document.createTextNode(" (oldest first): " + (u.history.join("; ") || "-")));
      update();
    }

    pick.addEventListener("change", function () { setUser(Number(pick.value)); });
    reset.addEventListener("click", function () {
      inputs.forEach(function (input, c) { input.value = String(zero[c]); state.pos[c] = zero[c]; });
      update();
    });
    setUser(0);
    root.setAttribute("data-ready", "1");
  }

  window.seqsaeStaticSteering = render;
})();
