// Live status: poll the page's JSON status endpoint until the state is final.
// Progressive enhancement only: without JavaScript the page shows the same text on reload.
(function () {
  "use strict";
  var box = document.getElementById("status");
  if (!box || box.dataset.final === "true") { return; }
  var url = box.dataset.statusUrl;
  var delay = 700;

  function setText(field, value) {
    var el = box.querySelector('[data-field="' + field + '"]');
    if (el) { el.textContent = value; }
  }

  function render(status) {
    setText("headline", status.headline);
    setText("detail", status.detail);
    setText("state", status.state_label || status.state.replace(/_/g, " "));
    var badge = box.querySelector('[data-field="state"]');
    if (badge && status.tone) { badge.className = "badge status-badge text-bg-" + status.tone; }
    var list = box.querySelector('[data-field="recipients"]');
    if (list && status.recipients) {
      list.replaceChildren();
      status.recipients.forEach(function (r) {
        var li = document.createElement("li");
        var addr = document.createElement("span");
        addr.className = "inert";
        addr.textContent = r.address;
        li.append(addr, ": " + r.label);
        list.append(li);
      });
    }
    if (status.final) {
      box.dataset.final = "true";
      var hint = box.querySelector('[data-field="refresh-hint"]');
      if (hint) { hint.remove(); }
      var form = document.getElementById("release-form");
      if (form && !status.can_release && !status.can_delete) { form.remove(); }
    }
  }

  function poll() {
    fetch(url, { headers: { "Accept": "application/json" }, cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (status) {
        if (status) { render(status); }
        if (box.dataset.final !== "true") {
          delay = Math.min(delay * 1.3, 5000);
          setTimeout(poll, delay);
        }
      })
      .catch(function () { setTimeout(poll, 5000); });
  }
  setTimeout(poll, delay);
}());
