// The merchant's points dashboard, the console's #/dashboard: what the shop owes its members
// over time (a line chart) and the points that moved in each day or week (bars), both drawn
// here in SVG, no library, each with a table of the same numbers. It asks /graphql's
// `pointsOverTime` with the console's key; app.js routes here and lends its helpers
// (`tools`). Every piece of data goes into the page as text or an attribute, never as markup.
"use strict";

window.pointguardDashboard = (() => {
  const QUERY = `
    query Points($start: DateTime!, $end: DateTime!, $bucket: BucketSize!) {
      pointsOverTime(start: $start, end: $end, bucket: $bucket) {
        start end issued released redeemed expired forfeited
        pending held available reserved liability
      }
    }`;
  const DAY_MS = 86_400_000;
  const PERIODS = {
    DAY: { buckets: 30, days: 1, noun: "day", heading: "Day" },
    WEEK: { buckets: 26, days: 7, noun: "week", heading: "Week from" },
  };
  const MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(" ");
  // Colours a colour-blind reader tells apart (Okabe and Ito), and the lines' dashes too.
  const LEVELS = [
    { key: "liability", label: "Liability", colour: "#1b1f24", dash: "", width: 3 },
    { key: "available", label: "Available", colour: "#0072b2", dash: "", width: 2 },
    { key: "pending", label: "Pending", colour: "#b36b00", dash: "7 4", width: 2 },
    { key: "held", label: "Held for review", colour: "#d55e00", dash: "2 3", width: 2 },
  ];
  const LEVEL_COLUMNS = [
    { key: "pending", label: "Pending" },
    { key: "held", label: "Held for review" },
    { key: "available", label: "Available" },
    { key: "reserved", label: "Reserved" },
    { key: "liability", label: "Liability" },
  ];
  const FLOWS = [
    { key: "issued", label: "Issued", colour: "#009e73" },
    { key: "released", label: "Released", colour: "#56b4e9" },
    { key: "redeemed", label: "Redeemed", colour: "#0072b2" },
    { key: "expired", label: "Expired", colour: "#999999" },
    { key: "forfeited", label: "Forfeited", colour: "#d55e00" },
  ];
  const WIDTH = 960;
  const HEIGHT = 320;
  const MARGIN = { left: 72, right: 16, top: 16, bottom: 44 };
  const MAX_X_LABELS = 10;

  let tools = null;
  let size = "DAY";
  let wired = false;

  const points = (n) => Number(n).toLocaleString("en-US");

  function dateWords(iso) {
    const date = new Date(iso);
    return `${MONTHS[date.getUTCMonth()]} ${date.getUTCDate()}`;
  }

  function bucketWords(bucket) {
    return size === "DAY" ? dateWords(bucket.start) : `week from ${dateWords(bucket.start)}`;
  }

  // The period ending with today (UTC) for days, with the current week (from Monday) for weeks.
  function period(now) {
    const today = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate());
    const mondayFirst = (new Date(today).getUTCDay() + 6) % 7;
    const end = size === "DAY" ? today + DAY_MS : today + (7 - mondayFirst) * DAY_MS;
    const length = PERIODS[size].buckets * PERIODS[size].days * DAY_MS;
    return { start: new Date(end - length).toISOString(), end: new Date(end).toISOString() };
  }

  // Show the dashboard; `moveFocus` (on arriving) puts the focus on its heading, but not when
  // the period changes, so that the keyboard stays on the period picker.
  async function show(lent, moveFocus = true) {
    tools = lent;
    wire();
    tools.show("dashboard");
    tools.$("period").value = size;
    tools.$("dashboard-summary").textContent = "Loading…";
    const { start, end } = period(new Date());
    const data = await tools.graphql(QUERY, { start, end, bucket: size });
    render(data.pointsOverTime);
    if (moveFocus) tools.focusTitle("dashboard-title");
  }

  function wire() {
    if (wired) return;
    wired = true;
    tools.$("period").addEventListener("change", () => {
      size = tools.$("period").value;
      show(tools, false).catch(tools.failed);
    });
    tools.$("dashboard-period").addEventListener("submit", (event) => event.preventDefault());
  }

  function render(buckets) {
    const noun = PERIODS[size].noun;
    if (!buckets.length) {
      tools.$("dashboard-summary").textContent = "No figures for this period.";
      return;
    }
    const last = buckets[buckets.length - 1];
    const total = (key) => buckets.reduce((sum, b) => sum + b[key], 0);
    tools.$("dashboard-summary").textContent =
      `Now: members hold ${points(last.liability)} points (available ` +
      `${points(last.available)}, pending ${points(last.pending)} of which ` +
      `${points(last.held)} held for review, reserved ${points(last.reserved)}). ` +
      `Over the last ${buckets.length} ${noun}s: ` +
      FLOWS.map((f) => `${points(total(f.key))} ${f.label.toLowerCase()}`).join(", ") +
      ".";

    const levelsTitle = `Points members hold at the end of each ${noun}`;
    const levelsDescription =
      `${LEVELS.map((s) => s.label).join(", ")}, ${buckets.length} ${noun}s from ` +
      `${dateWords(buckets[0].start)}; at the end, liability ${points(last.liability)}.`;
    tools
      .$("balances-chart")
      .replaceChildren(
        legend(LEVELS, "line"),
        lineChart(buckets, LEVELS, levelsTitle, levelsDescription)
      );
    figures("balances-table", buckets, LEVEL_COLUMNS);

    const flowsTitle = `Points issued, released, redeemed, expired and forfeited per ${noun}`;
    const flowsDescription =
      `Over ${buckets.length} ${noun}s: ` +
      FLOWS.map((f) => `${f.label.toLowerCase()} ${points(total(f.key))}`).join(", ") +
      ".";
    const flows = barChart(buckets, FLOWS, flowsTitle, flowsDescription);
    tools.$("flows-chart").replaceChildren(legend(FLOWS, "bar"), flows);
    figures("flows-table", buckets, FLOWS);
  }

  // -- charts -------------------------------------------------------------------------------

  function niceTicks(low, high) {
    const top = Math.max(high, low + 4);
    const raw = (top - low) / 5;
    const magnitude = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 5, 10].find((m) => m * magnitude >= raw) * magnitude;
    const ticks = [];
    for (let t = Math.floor(low / step) * step; t <= Math.ceil(top / step) * step; t += step) {
      ticks.push(t);
    }
    return ticks;
  }

  function frame(buckets, values, title, description, kind) {
    const { svg } = tools;
    const ticks = niceTicks(Math.min(0, ...values), Math.max(0, ...values));
    const low = ticks[0];
    const high = ticks[ticks.length - 1];
    const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
    const plotHeight = HEIGHT - MARGIN.top - MARGIN.bottom;
    const band = plotWidth / buckets.length;
    const scale = {
      band,
      x: (i) => MARGIN.left + (i + 0.5) * band,
      y: (v) => MARGIN.top + plotHeight * (1 - (v - low) / (high - low)),
    };
    const id = `${kind}-chart-title`;
    const chart = svg("svg", {
      viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
      class: `chart-svg chart-${kind}`,
      role: "img",
      "aria-labelledby": id,
      "aria-describedby": `${kind}-chart-description`,
    });
    chart.append(
      svg("title", { id }, title),
      svg("desc", { id: `${kind}-chart-description` }, description)
    );
    const axes = svg("g", { class: "axes" });
    for (const tick of ticks) {
      const y = scale.y(tick);
      axes.append(
        svg("line", {
          x1: MARGIN.left,
          x2: WIDTH - MARGIN.right,
          y1: y,
          y2: y,
          class: tick === 0 ? "zero" : "grid",
        }),
        svg("text", { x: MARGIN.left - 8, y: y + 4, "text-anchor": "end" }, points(tick))
      );
    }
    const every = Math.ceil(buckets.length / MAX_X_LABELS);
    buckets.forEach((bucket, i) => {
      if ((buckets.length - 1 - i) % every !== 0) return; // the last bucket always labelled
      const x = scale.x(i);
      const bottom = HEIGHT - MARGIN.bottom;
      axes.append(
        svg("line", { x1: x, x2: x, y1: bottom, y2: bottom + 5, class: "tick" }),
        svg("text", { x, y: bottom + 20, "text-anchor": "middle" }, dateWords(bucket.start))
      );
    });
    axes.append(
      svg(
        "text",
        { x: 14, y: MARGIN.top + plotHeight / 2, class: "axis-name", "text-anchor": "middle",
          transform: `rotate(-90 14 ${MARGIN.top + plotHeight / 2})` },
        "points"
      ),
      svg(
        "text",
        { x: MARGIN.left + plotWidth / 2, y: HEIGHT - 4, class: "axis-name",
          "text-anchor": "middle" },
        size === "DAY" ? "day (UTC)" : "week from Monday (UTC)"
      )
    );
    chart.append(axes);
    return { chart, scale };
  }

  function lineChart(buckets, series, title, description) {
    const { svg } = tools;
    const values = buckets.flatMap((b) => series.map((s) => b[s.key]));
    const { chart, scale } = frame(buckets, values, title, description, "balances");
    for (const s of series) {
      const group = svg("g", { class: "series", "data-series": s.key });
      const at = (b, i) => `${scale.x(i).toFixed(1)},${scale.y(b[s.key]).toFixed(1)}`;
      const path = buckets.map((b, i) => `${i === 0 ? "M" : "L"}${at(b, i)}`).join(" ");
      group.append(
        svg("path", {
          d: path,
          fill: "none",
          stroke: s.colour,
          "stroke-width": s.width,
          "stroke-dasharray": s.dash || "none",
        })
      );
      buckets.forEach((b, i) => {
        const dot = svg("circle", {
          cx: scale.x(i),
          cy: scale.y(b[s.key]),
          r: 3.5,
          fill: s.colour,
          class: "point",
          "data-series": s.key,
          "data-bucket": b.start,
          "data-value": b[s.key],
        });
        dot.append(svg("title", {}, said(b, s, b[s.key])));
        group.append(dot);
      });
      chart.append(group);
    }
    return chart;
  }

  // A data point in words, for its tooltip: "Nov 3: pending 500".
  function said(bucket, series, value) {
    return `${bucketWords(bucket)}: ${series.label.toLowerCase()} ${points(value)}`;
  }

  function barChart(buckets, series, title, description) {
    const { svg } = tools;
    const values = buckets.flatMap((b) => series.map((s) => b[s.key]));
    const { chart, scale } = frame(buckets, values, title, description, "flows");
    const barWidth = (scale.band * 0.84) / series.length;
    const zero = scale.y(0);
    series.forEach((s, n) => {
      const group = svg("g", { class: "series", "data-series": s.key });
      buckets.forEach((b, i) => {
        const value = b[s.key];
        const top = scale.y(Math.max(0, value));
        const bar = svg("rect", {
          x: scale.x(i) - scale.band * 0.42 + n * barWidth,
          y: top,
          width: Math.max(barWidth - 0.5, 0.5),
          height: Math.abs(scale.y(value) - zero),
          fill: s.colour,
          class: "bar",
          "data-series": s.key,
          "data-bucket": b.start,
          "data-value": value,
        });
        bar.append(svg("title", {}, said(b, s, value)));
        group.append(bar);
      });
      chart.append(group);
    });
    return chart;
  }

  // The key to a chart's colours, as a list people and screen readers read: each entry's
  // swatch is drawn as the chart draws that series.
  function legend(series, kind) {
    const { el, svg } = tools;
    const list = el("ul", { class: "legend" });
    for (const s of series) {
      const swatch = svg("svg", { viewBox: "0 0 28 12", class: "swatch", "aria-hidden": "true" });
      swatch.append(
        kind === "line"
          ? svg("line", { x1: 1, x2: 27, y1: 6, y2: 6, stroke: s.colour, "stroke-width": 3,
              "stroke-dasharray": s.dash || "none" })
          : svg("rect", { x: 6, y: 0, width: 16, height: 12, fill: s.colour })
      );
      list.append(el("li", { "data-series": s.key }, swatch, s.label));
    }
    return list;
  }

  function figures(tableId, buckets, columns) {
    const { el } = tools;
    const table = tools.$(tableId);
    table.querySelector("thead").replaceChildren(
      el(
        "tr",
        null,
        el("th", { scope: "col" }, PERIODS[size].heading),
        ...columns.map((c) => el("th", { scope: "col", class: "number" }, c.label))
      )
    );
    table.querySelector("tbody").replaceChildren(
      ...buckets.map((b) =>
        el(
          "tr",
          { "data-bucket": b.start },
          el("th", { scope: "row" }, dateWords(b.start)),
          ...columns.map((c) =>
            el("td", { class: "number", "data-series": c.key }, points(b[c.key]))
          )
        )
      )
    );
  }

  return { show };
})();
