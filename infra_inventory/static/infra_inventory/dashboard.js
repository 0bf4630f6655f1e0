/* The finance dashboard's charts (infra_inventory/dashboard.py), drawn as plain SVG from
 * the unit-economics and margin-alerts APIs, and its budgets table from the budgets API,
 * read with the admin session.
 *
 * Every figure shown is the API's own decimal string, rounded for display by string
 * arithmetic (BigInt), so what is printed matches the API to the cent. Numbers are parsed
 * as floats only to place marks on the page (bar lengths, line heights, shares).
 */
"use strict";

(function () {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const WIDTH_MIN = 360; // charts are drawn at their box's width, so text is never scaled down
  const BAR_ROWS_MAX = 30;
  const PAGE_LIMIT = 1000; // the API's largest page

  // --- decimal strings, for display -------------------------------------------------

  function decimalParts(text) {
    const match = /^\s*([+-]?)(\d*)(?:\.(\d*))?\s*$/.exec(text == null ? "" : String(text));
    if (!match || (match[2] === "" && !match[3])) return null;
    return { negative: match[1] === "-", integer: match[2] || "0", fraction: match[3] || "" };
  }

  /** Round half up (away from zero, like Decimal's ROUND_HALF_UP) to `places` decimals. */
  function roundDecimal(text, places) {
    const parts = decimalParts(text);
    if (!parts) return null;
    const digits = (parts.fraction + "0".repeat(places + 1)).slice(0, places + 1);
    let scaled = BigInt(parts.integer + digits.slice(0, places));
    if (digits.charCodeAt(places) >= 53) scaled += 1n; // next digit ≥ "5"
    const padded = scaled.toString().padStart(places + 1, "0");
    return {
      negative: parts.negative && scaled !== 0n,
      integer: padded.slice(0, padded.length - places),
      fraction: padded.slice(padded.length - places),
    };
  }

  /** a + b exactly, as a decimal string (BigInt at the finer of the two scales). */
  function addDecimals(a, b) {
    const left = decimalParts(a);
    const right = decimalParts(b);
    if (!left || !right) return null;
    const places = Math.max(left.fraction.length, right.fraction.length);
    const scaled = (parts) => {
      const units = BigInt(parts.integer + parts.fraction.padEnd(places, "0"));
      return parts.negative ? -units : units;
    };
    const sum = scaled(left) + scaled(right);
    const digits = (sum < 0n ? -sum : sum).toString().padStart(places + 1, "0");
    const integer = digits.slice(0, digits.length - places);
    return (sum < 0n ? "-" : "") + integer + (places ? "." + digits.slice(digits.length - places) : "");
  }

  function grouped(integer) {
    return integer.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  }

  function formatNumber(text, places) {
    const rounded = roundDecimal(text, places);
    if (!rounded) return "—";
    return (rounded.negative ? "-" : "") + grouped(rounded.integer) + (places ? "." + rounded.fraction : "");
  }

  function formatMoney(text, places) {
    const rounded = roundDecimal(text, places === undefined ? 2 : places);
    if (!rounded) return "—";
    return (rounded.negative ? "-" : "") + "$" + grouped(rounded.integer) + (rounded.fraction ? "." + rounded.fraction : "");
  }

  function formatPercent(text) {
    return text == null ? "—" : formatNumber(text, 2) + "%";
  }

  /** Unit costs are small: show cents, or four decimals below a dollar. */
  function formatUnitCost(text) {
    if (text == null) return "—";
    return formatMoney(text, Math.abs(Number(text)) < 1 ? 4 : 2);
  }

  function magnitude(text) {
    const value = Number(text);
    return Number.isFinite(value) ? value : 0;
  }

  // --- the API -------------------------------------------------------------------------

  const root = document.getElementById("finance-dashboard");
  if (!root || !root.dataset.start) return;
  const period = { start: root.dataset.start, end: root.dataset.end };

  async function getJson(url) {
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    const body = await response.json().catch(() => null);
    if (!response.ok) {
      const detail = body && (body.detail || body.title);
      throw new Error(`The API answered ${response.status}${detail ? ": " + detail : ""}.`);
    }
    return body;
  }

  /** Every page of a `{"next", "results"}` list: the first body (totals and all) with
   * `results` holding the rows of all pages. */
  async function getAll(base, params) {
    const url = new URL(base, window.location.origin);
    for (const [key, value] of Object.entries({ ...params, limit: PAGE_LIMIT })) url.searchParams.set(key, value);
    const first = await getJson(url);
    const results = [...((first && first.results) || [])];
    for (let next = first && first.next; next; ) {
      const page = await getJson(next);
      results.push(...(page.results || []));
      next = page.next;
    }
    return { ...first, results };
  }

  function unitEconomics(groupBy) {
    return getAll(root.dataset.unitEconomicsUrl, { start: period.start, end: period.end, group_by: groupBy });
  }

  function rowsOf(body) {
    return (body && body.results) || [];
  }

  /** The range's totals; `idle_cost` and `unplaced_tokens` are on the body and in totals. */
  function totalsOf(body) {
    if (!body) return {};
    return { idle_cost: body.idle_cost, unplaced_tokens: body.unplaced_tokens, ...(body.totals || {}) };
  }

  // --- SVG and DOM helpers -------------------------------------------------------------

  let uid = 0;

  function svgNode(name, attributes, parent) {
    const node = document.createElementNS(SVG_NS, name);
    for (const [key, value] of Object.entries(attributes || {})) node.setAttribute(key, value);
    if (parent) parent.appendChild(node);
    return node;
  }

  function svgText(parent, text, attributes) {
    const node = svgNode("text", attributes, parent);
    node.textContent = text;
    return node;
  }

  function tooltip(parent, text) {
    const title = svgNode("title", {}, parent);
    title.textContent = text;
  }

  /** An SVG announced as one image, named by its title and described by its desc. */
  function chartWidth(container) {
    return Math.max(WIDTH_MIN, Math.floor(container.clientWidth || 640));
  }

  function chartSvg(container, { width, height, title, description }) {
    uid += 1;
    const svg = svgNode("svg", {
      viewBox: `0 0 ${width} ${height}`, role: "img", class: "fd-svg",
      "aria-labelledby": `fd-t${uid} fd-d${uid}`, preserveAspectRatio: "xMinYMin meet",
    });
    svgNode("title", { id: `fd-t${uid}` }, svg).textContent = title;
    svgNode("desc", { id: `fd-d${uid}` }, svg).textContent = description;
    container.appendChild(svg);
    return svg;
  }

  function element(name, attributes, parent, text) {
    const node = document.createElement(name);
    for (const [key, value] of Object.entries(attributes || {})) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    if (parent) parent.appendChild(node);
    return node;
  }

  /** The chart's figures as a table, for screen readers and for copying. */
  function dataTable(container, caption, headers, rows) {
    const details = element("details", { class: "fd-table" }, container);
    element("summary", {}, details, "Table");
    const table = element("table", {}, details);
    element("caption", {}, table, caption);
    const head = element("tr", {}, element("thead", {}, table));
    headers.forEach((header) => element("th", { scope: "col" }, head, header));
    const body = element("tbody", {}, table);
    rows.forEach((cells) => {
      const tr = element("tr", {}, body);
      cells.forEach((cell, index) => element(index ? "td" : "th", index ? {} : { scope: "row" }, tr, cell));
    });
  }

  function start(container) {
    container.replaceChildren();
    return container;
  }

  function finish(container) {
    container.setAttribute("aria-busy", "false");
    container.dataset.state = "ready";
  }

  function fail(container, error) {
    container.replaceChildren();
    element("p", { class: "fd-status fd-error", role: "alert" }, container, String(error.message || error));
    container.setAttribute("aria-busy", "false");
    container.dataset.state = "error";
  }

  function empty(container, message) {
    element("p", { class: "fd-status" }, container, message);
    finish(container);
  }

  /** Long names are cut to fit the label column; the bar's tooltip and the table keep them whole. */
  function shortened(text, length) {
    const name = String(text == null ? "—" : text);
    return name.length > length ? name.slice(0, length - 1) + "…" : name;
  }

  /** Round tick steps (1, 2, 5 × 10^n) covering [low, high]. */
  function ticks(low, high, count) {
    if (high === low) high = low + 1;
    const raw = (high - low) / count;
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
    const first = Math.floor(low / step) * step;
    const values = [];
    for (let v = first; v <= high + step * 1e-9; v += step) values.push(Number(v.toFixed(10)));
    if (values[values.length - 1] < high) values.push(values[values.length - 1] + step);
    return { values, step };
  }

  function tickLabel(value, step) {
    const places = step >= 1 ? 0 : Math.min(6, Math.ceil(-Math.log10(step)));
    return formatMoney(value.toFixed(places), places);
  }

  // --- chart 1: cost per 1M tokens by model tier, per day (lines) ---------------------------

  const SERIES_COLOURS = ["#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#000000"];
  const SERIES_DASHES = ["", "6 3", "2 3", "8 3 2 3", "4 4", "1 2", ""];

  function periodDays() {
    const days = [];
    const last = new Date(period.end);
    for (let day = new Date(period.start); day < last; day.setUTCDate(day.getUTCDate() + 1)) {
      days.push(day.toISOString().slice(0, 10));
    }
    return days;
  }

  function drawCostByTier(container, body) {
    start(container);
    const width = chartWidth(container);
    const rows = rowsOf(body).filter((row) => row.cost_per_million_tokens != null);
    if (!rows.length) return empty(container, "No allocated usage in this period.");
    const days = periodDays();
    const tierOf = (row) => row.model_tier || "unpriced"; // a model with no tier at that time
    const tiers = [...new Set(rows.map(tierOf))].sort();
    const values = new Map(rows.map((row) => [`${tierOf(row)}|${String(row.day).slice(0, 10)}`, row]));
    const highest = Math.max(...rows.map((row) => magnitude(row.cost_per_million_tokens)));
    const scale = ticks(0, highest, 5);
    const top = scale.values[scale.values.length - 1];
    const margin = { left: 64, right: 16, top: 52, bottom: 32 };
    const height = 320;
    const plotWidth = width - margin.left - margin.right;
    const plotHeight = height - margin.top - margin.bottom;
    const x = (index) => margin.left + (days.length > 1 ? (index * plotWidth) / (days.length - 1) : plotWidth / 2);
    const y = (value) => margin.top + plotHeight - (value / top) * plotHeight;
    const svg = chartSvg(container, {
      width,
      height,
      title: "Cost per 1M tokens by model tier, per day",
      description: `Allocated hardware and power cost per million tokens, one line per model tier (${tiers.join(", ")}), `
        + `for each day from ${days[0]} to ${days[days.length - 1]}.`,
    });

    const axes = svgNode("g", { class: "fd-axis", "aria-hidden": "true" }, svg);
    for (const value of scale.values) {
      svgNode("line", { x1: margin.left, x2: width - margin.right, y1: y(value), y2: y(value), class: "fd-grid" }, axes);
      svgText(axes, tickLabel(value, scale.step), { x: margin.left - 6, y: y(value) + 4, "text-anchor": "end" });
    }
    const every = Math.max(1, Math.ceil(days.length / 8));
    days.forEach((day, index) => {
      if (index % every) return;
      svgText(axes, day.slice(5), { x: x(index), y: height - margin.bottom + 18, "text-anchor": "middle" });
    });
    svgText(axes, "USD per 1M tokens", { x: 4, y: margin.top - 18 });

    tiers.forEach((tier, seriesIndex) => {
      const colour = SERIES_COLOURS[seriesIndex % SERIES_COLOURS.length];
      const series = svgNode("g", { class: "fd-series", "data-tier": tier }, svg);
      let d = "";
      let drawing = false;
      days.forEach((day, index) => {
        const row = values.get(`${tier}|${day}`);
        if (!row) { drawing = false; return; }
        d += `${drawing ? "L" : "M"}${x(index).toFixed(1)} ${y(magnitude(row.cost_per_million_tokens)).toFixed(1)} `;
        drawing = true;
      });
      svgNode("path", {
        d: d.trim(), class: "fd-line", stroke: colour, "stroke-dasharray": SERIES_DASHES[seriesIndex % SERIES_DASHES.length],
      }, series);
      days.forEach((day, index) => {
        const row = values.get(`${tier}|${day}`);
        if (!row) return;
        const point = svgNode("circle", {
          cx: x(index), cy: y(magnitude(row.cost_per_million_tokens)), r: 3.5, fill: colour, class: "fd-point",
          "data-day": day, "data-value": row.cost_per_million_tokens,
        }, series);
        tooltip(point, `${tier}, ${day}: ${formatUnitCost(row.cost_per_million_tokens)} per 1M tokens`);
      });
      const legend = svgNode("g", { class: "fd-legend" }, svg);
      const left = 4 + seriesIndex * 110;
      svgNode("line", { x1: left, x2: left + 22, y1: 10, y2: 10, stroke: colour, class: "fd-line",
        "stroke-dasharray": SERIES_DASHES[seriesIndex % SERIES_DASHES.length] }, legend);
      svgText(legend, tier, { x: left + 28, y: 14 });
    });

    dataTable(container, "Cost per 1M tokens by model tier and day", ["Day", ...tiers],
      days.filter((day) => tiers.some((tier) => values.has(`${tier}|${day}`))).map((day) => [
        day, ...tiers.map((tier) => {
          const row = values.get(`${tier}|${day}`);
          return row ? formatUnitCost(row.cost_per_million_tokens) : "—";
        }),
      ]));
    finish(container);
  }

  // --- chart 2: hardware vs power share by datacenter (stacked bars) --------------------------

  function drawDatacenterShare(container, body) {
    start(container);
    const width = chartWidth(container);
    const rows = rowsOf(body).filter((row) => magnitude(row.hardware_cost) + magnitude(row.power_cost) > 0);
    if (!rows.length) return empty(container, "No allocated cost in this period.");
    const margin = { left: 120, right: 110, top: 34, bottom: 8 };
    const rowHeight = 34;
    const height = margin.top + rows.length * rowHeight + margin.bottom;
    const plotWidth = width - margin.left - margin.right;
    const svg = chartSvg(container, {
      width,
      height,
      title: "Hardware vs power share by datacenter",
      description: "For each datacenter, the share of its allocated cost that is hardware amortization "
        + "and the share that is power, with the total allocated cost on the right.",
    });
    const parts = [["hardware_cost", "Hardware", "fd-hardware"], ["power_cost", "Power", "fd-power"]];
    parts.forEach(([, label, cls], index) => {
      const legend = svgNode("g", { class: "fd-legend" }, svg);
      svgNode("rect", { x: 4 + index * 110, y: 4, width: 12, height: 12, class: cls }, legend);
      svgText(legend, label, { x: 4 + index * 110 + 18, y: 14 });
    });
    rows.forEach((row, index) => {
      const total = magnitude(row.hardware_cost) + magnitude(row.power_cost);
      const top = margin.top + index * rowHeight;
      const group = svgNode("g", { class: "fd-bar", "data-key": row.datacenter }, svg);
      svgText(group, shortened(row.datacenter, 16), { x: margin.left - 8, y: top + 19, "text-anchor": "end", class: "fd-label" });
      let left = margin.left;
      for (const [field, label, cls] of parts) {
        const share = magnitude(row[field]) / total;
        const segmentWidth = share * plotWidth;
        const segment = svgNode("rect", {
          x: left, y: top + 4, width: Math.max(segmentWidth, 0), height: rowHeight - 10, class: `fd-segment ${cls}`,
          "data-value": row[field],
        }, group);
        const percent = (share * 100).toFixed(1);
        tooltip(segment, `${row.datacenter} ${label.toLowerCase()}: ${formatMoney(row[field])} (${percent}%)`);
        if (segmentWidth > 44) {
          svgText(group, `${percent}%`, { x: left + segmentWidth / 2, y: top + 19, "text-anchor": "middle", class: "fd-inside" });
        }
        left += segmentWidth;
      }
      svgText(group, formatMoney(addDecimals(row.hardware_cost, row.power_cost)),
        { x: width - 4, y: top + 19, "text-anchor": "end", class: "fd-value", "data-field": "total" });
    });
    dataTable(container, "Allocated cost by datacenter", ["Datacenter", "Hardware", "Power", "Total", "Hardware share"],
      rows.map((row) => {
        const total = magnitude(row.hardware_cost) + magnitude(row.power_cost);
        return [row.datacenter, formatMoney(row.hardware_cost), formatMoney(row.power_cost),
          formatMoney(addDecimals(row.hardware_cost, row.power_cost)),
          `${((magnitude(row.hardware_cost) / total) * 100).toFixed(1)}%`];
      }));
    finish(container);
  }

  // --- charts 3 and 4: signed horizontal bars ------------------------------------------------

  /** items: [{key, label, value (decimal string), note}] — one bar each; when `signed`,
   * positives green and negatives red (the value's sign is also printed, never colour alone). */
  function drawBars(container, { title, description, caption, keyHeader, valueHeader, items, format, signed }) {
    start(container);
    if (!items.length) return empty(container, "Nothing in this period.");
    const width = chartWidth(container);
    let shown = [...items].sort((a, b) => magnitude(b.value) - magnitude(a.value));
    let hidden = 0;
    if (shown.length > BAR_ROWS_MAX) {
      hidden = shown.length - BAR_ROWS_MAX;
      shown = [...shown.slice(0, BAR_ROWS_MAX / 2), ...shown.slice(-BAR_ROWS_MAX / 2)];
    }
    const margin = { left: 130, right: 110, top: 8, bottom: hidden ? 26 : 8 };
    const rowHeight = 26;
    const height = margin.top + shown.length * rowHeight + margin.bottom;
    const plotWidth = width - margin.left - margin.right;
    const numbers = shown.map((item) => magnitude(item.value));
    const low = Math.min(0, ...numbers);
    const high = Math.max(0, ...numbers);
    const span = high - low || 1;
    const x = (value) => margin.left + ((value - low) / span) * plotWidth;
    const svg = chartSvg(container, { width, height, title, description });
    shown.forEach((item, index) => {
      const value = magnitude(item.value);
      const top = margin.top + index * rowHeight;
      const negative = value < 0;
      const group = svgNode("g", {
        class: `fd-bar${negative ? " fd-negative" : ""}`, "data-key": item.key, "data-value": item.value,
      }, svg);
      svgText(group, shortened(item.label, 18), { x: margin.left - 8, y: top + 17, "text-anchor": "end", class: "fd-label" });
      const bar = svgNode("rect", {
        x: Math.min(x(0), x(value)), y: top + 4, width: Math.max(Math.abs(x(value) - x(0)), value ? 1 : 0),
        height: rowHeight - 8, class: !signed ? "fd-neutral" : negative ? "fd-negative" : "fd-positive",
      }, group);
      tooltip(bar, `${item.label}: ${format(item.value)}${item.note ? " (" + item.note + ")" : ""}`);
      svgText(group, format(item.value), { x: width - 4, y: top + 17, "text-anchor": "end", class: "fd-value" });
    });
    svgNode("line", {
      x1: x(0), x2: x(0), y1: margin.top, y2: margin.top + shown.length * rowHeight, class: "fd-zero", "aria-hidden": "true",
    }, svg);
    if (hidden) {
      svgText(svg, `${hidden} more between these not shown: see the table.`, { x: margin.left, y: height - 8, class: "fd-note" });
    }
    dataTable(container, caption, [keyHeader, valueHeader, ""], [...items]
      .sort((a, b) => magnitude(b.value) - magnitude(a.value))
      .map((item) => [item.label, format(item.value), item.note || ""]));
    finish(container);
  }

  function drawMargin(container, body, key, noun) {
    drawBars(container, {
      title: `Gross margin by ${noun}`,
      description: `Revenue less allocated hardware and power cost for each ${noun}; negative margins are red.`,
      caption: `Gross margin by ${noun}`,
      keyHeader: noun[0].toUpperCase() + noun.slice(1),
      valueHeader: "Gross margin",
      signed: true,
      format: (value) => formatMoney(value),
      items: rowsOf(body).map((row) => ({
        key: row[key], label: row[key], value: row.gross_margin,
        note: row.margin_percent != null ? `${formatPercent(row.margin_percent)} of ${formatMoney(row.revenue)} revenue` : "",
      })),
    });
  }

  function drawIdle(container, body) {
    const rows = rowsOf(body).filter((row) => row.idle_cost != null);
    if (rowsOf(body).length && !rows.length) {
      start(container);
      return empty(container, `The API gives idle cost only as a total: ${formatMoney(totalsOf(body).idle_cost)}.`);
    }
    drawBars(container, {
      title: "Idle cost by cluster",
      description: "Hardware and power cost of the hours each cluster served no usage.",
      caption: "Idle cost by cluster",
      keyHeader: "Cluster",
      valueHeader: "Idle cost",
      format: (value) => formatMoney(value),
      items: rows.filter((row) => magnitude(row.idle_cost) !== 0)
        .map((row) => ({ key: row.cluster, label: row.cluster, value: row.idle_cost })),
    });
  }

  function drawEmissions(container, body) {
    drawBars(container, {
      title: "Emissions per 1M tokens by datacenter",
      description: "gCO2e allocated per million tokens served in each datacenter: facility energy times the grid's "
        + "intensity, plus the hardware's embodied share.",
      caption: "Emissions per 1M tokens by datacenter",
      keyHeader: "Datacenter",
      valueHeader: "gCO2e per 1M tokens",
      format: (value) => `${formatNumber(value, 1)} g`,
      items: rowsOf(body).filter((row) => row.g_co2e_per_million_tokens != null)
        .map((row) => ({
          key: row.datacenter, label: row.datacenter, value: row.g_co2e_per_million_tokens,
          note: `${formatNumber(row.emissions_kg_co2e, 1)} kg over ${formatNumber(String(row.tokens), 0)} tokens`,
        })),
    });
  }

  // --- totals and alerts ----------------------------------------------------------------------

  const TOTALS = [
    ["revenue", "Revenue", formatMoney],
    ["hardware_cost", "Hardware cost", formatMoney],
    ["power_cost", "Power cost", formatMoney],
    ["gross_margin", "Gross margin", formatMoney],
    ["margin_percent", "Margin", formatPercent],
    ["cost_per_million_tokens", "Cost per 1M tokens", formatUnitCost],
    ["tokens", "Tokens", (value) => formatNumber(value, 0)],
    ["energy_kwh", "Energy", (value) => `${formatNumber(value, 1)} kWh`],
    ["idle_cost", "Idle cost", formatMoney],
    ["reserved_idle_cost", "Reserved idle cost", formatMoney],
    ["total_cost", "Fleet cost", formatMoney],
    ["total_emissions_kg_co2e", "Fleet emissions", (value) => `${formatNumber(value, 1)} kgCO2e`],
    ["g_co2e_per_million_tokens", "Emissions per 1M tokens", (value) => `${formatNumber(value, 1)} gCO2e`],
    ["unplaced_tokens", "Unplaced tokens", (value) => formatNumber(value, 0)],
    ["unpriced_tokens", "Unpriced tokens (leased, no lease)", (value) => formatNumber(value, 0)],
  ];

  function drawTotals(list, body) {
    list.replaceChildren();
    const totals = totalsOf(body);
    for (const [field, label, format] of TOTALS) {
      if (!(field in totals)) continue;
      const item = element("div", { class: "fd-total", "data-field": field }, list);
      element("dt", {}, item, label);
      element("dd", { "data-value": totals[field] == null ? "" : String(totals[field]) }, item,
        totals[field] == null ? "—" : format(String(totals[field])));
    }
    if (totals.hours_not_allocated) {
      const note = element("p", { class: "fd-warning", role: "note" }, list.parentNode);
      note.textContent = `${totals.hours_not_allocated} hour(s) of this period are not allocated yet: `
        + "costs and margins are incomplete.";
    }
    finish(list);
  }

  // The alerts' fields (infra_inventory.margins): the columns shown are those present.
  const ALERT_COLUMNS = [
    ["day", "Day"], ["customer_id", "Customer"], ["customer", "Customer"], ["model", "Model"],
    ["model_tier", "Model tier"], ["cluster", "Cluster"], ["tokens", "Tokens"], ["revenue", "Revenue"],
    ["cost", "Cost"], ["gross_margin", "Gross margin"], ["margin_percent", "Margin"], ["announced_at", "Announced"],
  ];
  const MONEY_FIELDS = new Set(["revenue", "cost", "gross_margin"]);
  const PERCENT_FIELDS = new Set(["margin_percent"]);

  function drawAlerts(container, body) {
    start(container);
    const alerts = rowsOf(body);
    if (!alerts.length) {
      element("p", { class: "fd-status fd-ok" }, container, "No margin alerts in this period.");
      return finish(container);
    }
    const columns = ALERT_COLUMNS.filter(([field]) => alerts.some((alert) => alert[field] != null && alert[field] !== ""));
    const table = element("table", { class: "fd-alert-table" }, container);
    element("caption", {}, table, `${alerts.length} margin alert${alerts.length === 1 ? "" : "s"}`);
    const head = element("tr", {}, element("thead", {}, table));
    columns.forEach(([, label]) => element("th", { scope: "col" }, head, label));
    const tbody = element("tbody", {}, table);
    for (const alert of alerts) {
      const tr = element("tr", { class: "fd-alert" }, tbody);
      for (const [field] of columns) {
        const value = alert[field];
        let text = value == null ? "" : String(value);
        if (value != null && MONEY_FIELDS.has(field)) text = formatMoney(value);
        if (value != null && PERCENT_FIELDS.has(field)) text = formatPercent(value);
        if (value != null && field === "tokens") text = formatNumber(value, 0);
        if (value != null && field === "day") text = String(value).slice(0, 10);
        if (value != null && field === "announced_at") text = String(value).slice(0, 16).replace("T", " ");
        const cell = element("td", { "data-field": field }, tr, text);
        if (field === "gross_margin" && magnitude(value) < 0) cell.classList.add("fd-negative-text");
      }
    }
    finish(container);
  }

  // --- customers nearest their budget (this month, whatever the period above) ------------------

  const BUDGETS_SHOWN = 10;

  function drawBudgets(container, body) {
    start(container);
    const rows = rowsOf(body);
    if (!rows.length) return empty(container, "No customer with a budget has spend this month yet.");
    const table = element("table", { class: "fd-alert-table" }, container);
    element("caption", {}, table, `${rows.length} customer${rows.length === 1 ? "" : "s"} by share of their `
      + `monthly budget, ${rows[0].period} so far`);
    const head = element("tr", {}, element("thead", {}, table));
    ["Customer", "Spend", "Limit", "% of limit", "Hard", "Allowed"].forEach((label) =>
      element("th", { scope: "col" }, head, label));
    const tbody = element("tbody", {}, table);
    for (const row of rows) {
      const tr = element("tr", { class: "fd-budget", "data-customer": row.customer_id }, tbody);
      element("th", { scope: "row" }, tr, `${row.customer_id} (${row.name})`);
      element("td", { "data-field": "spend" }, tr, formatMoney(row.spend));
      element("td", { "data-field": "monthly_limit" }, tr, formatMoney(row.monthly_limit));
      const percent = element("td", { "data-field": "percent_of_limit" }, tr, formatPercent(row.percent_of_limit));
      if (magnitude(row.percent_of_limit) >= 100) percent.classList.add("fd-warning");
      element("td", { "data-field": "hard" }, tr, row.hard ? "yes" : "no");
      const allowed = element("td", { "data-field": "allowed" }, tr, row.allowed ? "yes" : "no (refused)");
      if (!row.allowed) allowed.classList.add("fd-negative-text");
    }
    finish(container);
  }

  // --- wiring ------------------------------------------------------------------------------------

  function draw(containerId, request, painter) {
    const container = document.getElementById(containerId);
    return request.then((body) => painter(container, body)).catch((error) => fail(container, error));
  }

  const byCustomer = unitEconomics("customer");
  draw("fd-totals", byCustomer, drawTotals);
  draw("fd-cost-tier", unitEconomics("model_tier,day"), drawCostByTier);
  const byDatacenter = unitEconomics("datacenter");
  draw("fd-datacenter", byDatacenter, drawDatacenterShare);
  draw("fd-emissions", byDatacenter, drawEmissions);
  draw("fd-margin-customer", byCustomer, (container, body) => drawMargin(container, body, "customer", "customer"));
  draw("fd-margin-model", unitEconomics("model"), (container, body) => drawMargin(container, body, "model", "model"));
  draw("fd-idle", unitEconomics("cluster"), drawIdle);
  draw("fd-alerts", getAll(root.dataset.marginAlertsUrl, { start: period.start, end: period.end }), drawAlerts);
  const budgetsUrl = new URL(root.dataset.budgetsUrl, window.location.origin);
  budgetsUrl.searchParams.set("limit", BUDGETS_SHOWN);
  draw("fd-budgets", getJson(budgetsUrl), drawBudgets);

  window.financeDashboard = { addDecimals, formatMoney, formatNumber, formatPercent, roundDecimal };
})();
