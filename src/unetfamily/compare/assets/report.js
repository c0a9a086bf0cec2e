// The compare report's page script: sortable tables, hover values on the SVG plots, the case browser.
// No network, no library: everything the page needs is in the page.
"use strict";
(function () {
  const DASH = "\u2014";

  // ---- sortable tables: click (or Enter on) a header; numbers sort as numbers, missing values last
  function cellKey(cell) {
    const text = cell.textContent.trim();
    if (text === DASH || text === "") return null;
    const m = text.replace(/\u2212/g, "-").replace(/^</, "").match(/^[+-]?\s?\d[\d,]*(\.\d+)?(e[+-]?\d+)?/i);
    return m ? parseFloat(m[0].replace(/[\s,]/g, "")) : text.toLowerCase();
  }
  function compareKeys(a, b) {
    if (a === null || b === null) return a === b ? 0 : a === null ? 1 : -1;
    if (typeof a === typeof b) return a < b ? -1 : a > b ? 1 : 0;
    return typeof a === "number" ? -1 : 1;
  }
  function sortTable(table, column, descending) {
    const body = table.tBodies[0];
    const rows = Array.from(body.rows).map((row, i) => ({row, i, key: cellKey(row.cells[column])}));
    rows.sort((x, y) => {
      const c = compareKeys(x.key, y.key);
      if (c === 0) return x.i - y.i;
      if (x.key === null || y.key === null) return c;  // missing values stay last either way
      return descending ? -c : c;
    });
    rows.forEach(r => body.appendChild(r.row));
    Array.from(table.tHead.rows[0].cells).forEach((th, i) =>
      th.setAttribute("aria-sort", i === column ? (descending ? "descending" : "ascending") : "none"));
    table.dispatchEvent(new CustomEvent("sorted"));
  }
  function makeSortable(table) {
    if (!table.tHead || !table.tBodies.length) return;
    Array.from(table.tHead.rows[0].cells).forEach((th, column) => {
      th.tabIndex = 0;
      th.setAttribute("aria-sort", "none");
      th.title = "sort by this column (click again to reverse)";
      const sort = () => sortTable(table, column, th.getAttribute("aria-sort") === "ascending");
      th.addEventListener("click", sort);
      th.addEventListener("keydown", e => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sort(); } });
    });
  }
  document.querySelectorAll("main table").forEach(makeSortable);

  // ---- hover values on the plots
  const tip = document.getElementById("tip");
  document.querySelectorAll("svg.plot [data-tip]").forEach(el => {
    el.addEventListener("mouseenter", () => { tip.textContent = el.dataset.tip; tip.hidden = false; });
    el.addEventListener("mousemove", e => {
      tip.style.left = (e.pageX + 14) + "px";
      tip.style.top = (e.pageY + 14) + "px";
    });
    el.addEventListener("mouseleave", () => { tip.hidden = true; });
  });

  // ---- the case browser
  const dataNode = document.getElementById("cb-data");
  if (!dataNode) return;
  const data = JSON.parse(dataNode.textContent);
  const table = document.getElementById("cb-table");
  const panels = document.getElementById("cb-panels");
  const overlay = document.getElementById("cb-overlay");
  const errors = document.getElementById("cb-errors");
  let current = 0;

  function order() { return Array.from(table.tBodies[0].rows).map(r => Number(r.dataset.case)); }
  function fmt(x) { return x === null || x === undefined ? DASH : x.toFixed(2); }
  function panel(base, layer, caption, link) {
    const fig = document.createElement("figure");
    fig.className = "panel";
    const stack = document.createElement("a");
    stack.className = "stack";
    stack.href = link;
    stack.title = "open the full-resolution image";
    const img = document.createElement("img");
    img.className = "base";
    img.src = base;
    img.alt = caption;
    stack.appendChild(img);
    if (layer) {
      const top = document.createElement("img");
      top.className = "layer";
      top.src = layer;
      top.alt = "";
      stack.appendChild(top);
    }
    const cap = document.createElement("figcaption");
    cap.textContent = caption;
    fig.append(stack, cap);
    return fig;
  }
  function show(index) {
    current = index;
    const c = data.cases[index];
    const ranks = order();
    document.getElementById("cb-pos").textContent = (ranks.indexOf(index) + 1) + " / " + ranks.length;
    document.getElementById("cb-name").textContent = c.name;
    const mode = errors.checked ? "err" : "pred";
    panels.replaceChildren(
      panel(c.img, null, "image", c.files.image),
      panel(c.img, c.gt, "ground truth", c.files.gt),
      ...data.models.map((label, m) =>
        panel(c.img, c[mode][m], label + " \u00b7 " + data.metric + " " + fmt(c.score[m]), c.files.pred[m])));
    panels.classList.toggle("no-overlay", !overlay.checked);
    const links = document.getElementById("cb-links");
    links.replaceChildren("Full resolution: ");
    [["image", c.files.image], ["ground truth", c.files.gt], ...data.models.map((l, m) => [l, c.files.pred[m]])]
      .forEach(([text, href], i) => {
        const a = document.createElement("a");
        a.href = href;
        a.textContent = text;
        links.append(i ? " \u00b7 " : "", a);
      });
    table.querySelectorAll("tr.current").forEach(r => r.classList.remove("current"));
    const row = table.querySelector('tr[data-case="' + index + '"]');
    if (row) row.classList.add("current");
  }
  function step(delta) {
    const ranks = order();
    const at = ranks.indexOf(current);
    show(ranks[Math.min(ranks.length - 1, Math.max(0, at + delta))]);
  }
  table.tBodies[0].addEventListener("click", e => {
    const row = e.target.closest("tr");
    if (row) show(Number(row.dataset.case));
  });
  table.tBodies[0].addEventListener("keydown", e => {
    const row = e.target.closest("tr");
    if (row && e.key === "Enter") show(Number(row.dataset.case));
  });
  table.addEventListener("sorted", () => show(current));
  document.getElementById("cb-prev").addEventListener("click", () => step(-1));
  document.getElementById("cb-next").addEventListener("click", () => step(1));
  overlay.addEventListener("change", () => show(current));
  errors.addEventListener("change", () => show(current));
  document.querySelectorAll("#cb [data-order]").forEach(button => button.addEventListener("click", () => {
    const column = button.dataset.order === "mean" ? 2 : 3;
    // worst first: the lowest mean of a higher-is-better metric; most disagreement: the largest spread
    sortTable(table, column, button.dataset.order === "spread" || !data.higher);
    show(order()[0]);
  }));
  document.addEventListener("keydown", e => {
    const typing = /^(SELECT|TEXTAREA)$/.test(e.target.tagName) || e.target.isContentEditable ||
      (e.target.tagName === "INPUT" && e.target.type !== "checkbox");
    if (e.altKey || e.ctrlKey || e.metaKey || typing) return;
    if (e.key === "ArrowRight" || e.key === "j") { step(1); e.preventDefault(); }
    else if (e.key === "ArrowLeft" || e.key === "k") { step(-1); e.preventDefault(); }
    else if (e.key === "o") { overlay.checked = !overlay.checked; show(current); }
    else if (e.key === "e") { errors.checked = !errors.checked; show(current); }
  });
  show(order()[0]);
})();
