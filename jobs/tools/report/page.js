(function () {
  "use strict";
  function $(id) { return document.getElementById(id); }
  var box = $("videos");
  if (!box) return;
  var cards = Array.prototype.slice.call(box.querySelectorAll("section.video"));
  var c = {label: $("f-label"), any: $("f-any"), status: $("f-status"), min: $("f-min"), max: $("f-max"),
           low: $("f-low"), threshold: $("f-threshold"), sort: $("f-sort")};
  var defaultThreshold = c.threshold.value;
  function num(v) { var x = parseFloat(v); return isNaN(x) ? null : x; }
  function score(el) { return num(el.getAttribute("data-score")); }
  function labelsOf(card) {
    var all = card.getAttribute("data-labels");
    return all ? all.split("\n") : [];
  }
  function highlight(threshold) {
    var scored = document.querySelectorAll("[data-score]");
    for (var i = 0; i < scored.length; i++) {
      var s = score(scored[i]);
      scored[i].classList.toggle("low", threshold !== null && s !== null && s < threshold);
    }
    $("threshold-shown").textContent = threshold === null ? "none" : threshold.toFixed(2);
  }
  function keep(card, f) {
    var s = score(card);
    if (f.status && card.getAttribute("data-status") !== f.status) return false;
    if (f.label) {
      var labels = labelsOf(card), wanted = f.label.toLowerCase();
      if (!f.any) labels = labels.slice(0, 1);
      if (!labels.some(function (l) { return l.toLowerCase().indexOf(wanted) !== -1; })) return false;
    }
    if (f.min !== null && (s === null || s < f.min)) return false;
    if (f.max !== null && (s === null || s > f.max)) return false;
    if (f.low && !card.classList.contains("low")) return false;
    return true;
  }
  function compare(how) {
    function byUri(a, b) {
      var x = a.getAttribute("data-uri"), y = b.getAttribute("data-uri");
      return x < y ? -1 : x > y ? 1 : 0;
    }
    function byScore(sign) {
      return function (a, b) {
        var x = score(a), y = score(b);
        if (x === null || y === null) return (x === null) - (y === null) || byUri(a, b);  // unscored last
        return sign * (x - y) || byUri(a, b);
      };
    }
    function byAttr(name) {
      return function (a, b) {
        var x = (a.getAttribute(name) || "\uffff").toLowerCase(), y = (b.getAttribute(name) || "\uffff").toLowerCase();
        return x < y ? -1 : x > y ? 1 : byUri(a, b);
      };
    }
    return {"score": byScore(-1), "score-asc": byScore(1), "label": byAttr("data-label"),
            "status": byAttr("data-status")}[how] || byUri;
  }
  function state() {
    return {label: c.label.value.trim(), any: c.any.checked, status: c.status.value, min: num(c.min.value),
            max: num(c.max.value), low: c.low.checked, threshold: num(c.threshold.value), sort: c.sort.value};
  }
  function apply() {
    var f = state(), shown = 0;
    highlight(f.threshold);
    cards.sort(compare(f.sort));
    cards.forEach(function (card) {
      var on = keep(card, f);
      card.hidden = !on;
      shown += on ? 1 : 0;
      box.appendChild(card);
    });
    $("shown-count").textContent = shown + " of " + cards.length + " shown";
    box.setAttribute("data-shown", String(shown));
    var p = new URLSearchParams();
    if (f.label) p.set("label", f.label);
    if (f.any) p.set("any", "1");
    if (f.status) p.set("status", f.status);
    if (f.min !== null) p.set("min", String(f.min));
    if (f.max !== null) p.set("max", String(f.max));
    if (f.low) p.set("low", "1");
    if (c.threshold.value !== defaultThreshold) p.set("threshold", c.threshold.value);
    if (f.sort !== "uri") p.set("sort", f.sort);
    var hash = p.toString();
    try { history.replaceState(null, "", hash ? "#" + hash : location.pathname + location.search); } catch (e) {}
  }
  function load() {
    var p = new URLSearchParams(location.hash.replace(/^#/, ""));
    c.label.value = p.get("label") || "";
    c.any.checked = p.get("any") === "1";
    c.status.value = p.get("status") || "";
    if (c.status.value !== (p.get("status") || "")) c.status.value = "";  // a status not in this table
    c.min.value = p.get("min") || "";
    c.max.value = p.get("max") || "";
    c.low.checked = p.get("low") === "1";
    c.threshold.value = p.get("threshold") || defaultThreshold;
    c.sort.value = p.get("sort") || "uri";
    if (!c.sort.value) c.sort.value = "uri";
  }
  Object.keys(c).forEach(function (k) {
    c[k].addEventListener("input", apply);
    c[k].addEventListener("change", apply);
  });
  $("f-reset").addEventListener("click", function () { location.hash = ""; load(); apply(); });
  window.addEventListener("hashchange", function () { load(); apply(); });
  load();
  apply();
  document.body.setAttribute("data-ready", "1");
})();
