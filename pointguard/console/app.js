// The reviewers' console: talks only to /graphql with the reviewer's API key, kept in
// sessionStorage for this tab. Every piece of data is put into the page as text
// (textContent, createElement, setAttribute): never as markup.
"use strict";

(() => {
  const KEY_STORAGE = "pointguard.reviewerKey";
  const PAGE_SIZE = 20;
  const MAX_GRAPH_MEMBERS = 12;
  const SVG = "http://www.w3.org/2000/svg";

  const STATUS_WORDS = {
    OPEN: "open",
    ESCALATED: "escalated",
    CLEARED: "cleared",
    CONFIRMED: "confirmed",
  };
  const MEMBER_WORDS = { ACTIVE: "active", UNDER_REVIEW: "under review", FROZEN: "frozen" };
  const RULE_WORDS = {
    member_under_review: "member already under review",
    member_frozen: "member frozen",
    self_referral: "self-referral (shared card or device)",
    referral_same_person: "referral to the same person (email or phone)",
    disposable_referral: "referee on a throwaway inbox",
    disposable_email: "throwaway inbox",
    referral_velocity: "too many referrals in a day",
    shared_card: "card shared by many members",
    shared_device: "device shared by many members",
    review_without_order: "review without an order",
    new_account_order_burst: "new account's order burst",
    order_velocity: "too many orders",
    refund_farming: "refund farming",
    review_velocity: "too many reviews",
    model: "the model's score",
    rules: "no rule",
  };
  const KIND_WORDS = {
    card: "card",
    device: "device",
    address: "address",
    email: "email",
    phone: "phone",
    ip_prefix: "network",
  };

  const CASE_FIELDS = `
    id status openedAt decidedAt decidedBy note frozeMember heldBy
    heldEventCount heldPoints topScore
    member { id status openCaseId balance { available pending reserved } }
    reasons
    heldEvents { eventId source points score decidedBy reasons decidedAt features { name value } }
    linkedMembers { member { id status openCaseId } sharedIdentifiers }`;
  const QUEUE_QUERY = `
    query Queue($status: [CaseStatus!], $first: Int!, $after: String, $order: CaseOrder!) {
      reviewCases(status: $status, first: $first, after: $after, order: $order) {
        cases {
          id status openedAt heldEventCount heldPoints topScore heldBy
          member { id status }
        }
        nextCursor
      }
    }`;
  const CASE_QUERY = `
    query Case($id: ID!, $decisions: Int!) {
      reviewCase(id: $id) {
        __typename
        ... on ReviewCase { ${CASE_FIELDS} }
        ... on Problem { code message }
      }
      reviewFeatureRanges(decisions: $decisions) { decisions features { name median p90 } }
    }`;
  const RANGE_DECISIONS = 500;
  const DECISION_RESULT = `
    __typename
    ... on ReviewCase { ${CASE_FIELDS} }
    ... on CaseAlreadyDecided { status }
    ... on Problem { code message }`;
  const DECISIONS = {
    clear: `mutation Clear($id: ID!, $note: String) {
      clearCase(id: $id, note: $note) { ${DECISION_RESULT} } }`,
    confirm: `mutation Confirm($id: ID!, $note: String, $freeze: Boolean!, $void: Boolean!) {
      confirmCase(id: $id, note: $note, freezeMember: $freeze, voidReferralRewards: $void) {
        ${DECISION_RESULT} } }`,
    escalate: `mutation Escalate($id: ID!, $note: String) {
      escalateCase(id: $id, note: $note) { ${DECISION_RESULT} } }`,
  };

  const $ = (id) => document.getElementById(id);
  const queueState = {
    status: "OPEN,ESCALATED",
    heldBy: "",
    cursors: [null], // the `after` of each page seen, the current one last
    cases: [],
    next: null,
  };
  let shownCase = null; // the case on the case page, as last read
  let ranges = { decisions: 0, byName: new Map() }; // the merchant's usual feature values

  class SignInNeeded extends Error {}

  // One GraphQL request with the stored key; the answer's data, or an Error in words.
  async function graphql(query, variables) {
    const key = sessionStorage.getItem(KEY_STORAGE);
    if (!key) throw new SignInNeeded("Sign in with a reviewer API key.");
    let response;
    try {
      response = await fetch("/graphql", {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
        body: JSON.stringify({ query, variables }),
        credentials: "omit",
        cache: "no-store",
      });
    } catch (error) {
      throw new Error(`The server could not be reached (${error.message}). Try again.`);
    }
    let answer = null;
    try {
      answer = await response.json();
    } catch (error) {
      answer = null;
    }
    const first = answer && Array.isArray(answer.errors) ? answer.errors[0] : null;
    const code = first && first.extensions ? first.extensions.code : null;
    if (response.status === 401) {
      sessionStorage.removeItem(KEY_STORAGE);
      const why = first ? first.message : "the key was refused";
      throw new SignInNeeded(`That key was not accepted: ${why}. Enter a reviewer API key.`);
    }
    if (code === "forbidden") {
      sessionStorage.removeItem(KEY_STORAGE);
      throw new SignInNeeded(
        `That key may not review cases: ${first.message}. Enter a reviewer or admin key.`
      );
    }
    if (response.status === 429) {
      const wait = response.headers.get("retry-after") || "a few";
      throw new Error(`Too many requests: wait ${wait} seconds, then try again.`);
    }
    if (first) throw new Error(`The server refused the request: ${first.message}`);
    if (!response.ok || !answer || !answer.data) {
      throw new Error(`The server answered with HTTP ${response.status}. Try again.`);
    }
    return answer.data;
  }

  // -- small DOM helpers: text only ----------------------------------------------------------

  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value !== null && value !== undefined) node.setAttribute(name, String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function svg(tag, attributes, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      node.setAttribute(name, String(value));
    }
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function when(iso) {
    if (!iso) return "";
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return iso;
    return `${date.toISOString().slice(0, 16).replace("T", " ")} UTC`;
  }

  function score(value) {
    return value === null || value === undefined ? "none" : Number(value).toFixed(2);
  }

  function ruleWords(rule) {
    return RULE_WORDS[rule] ? `${RULE_WORDS[rule]} (${rule})` : rule;
  }

  function sourceWords(source) {
    const [what, detail] = source.split(":", 2);
    if (what === "earning") return `${detail || "order"} points`;
    if (what === "referral") return `referral reward (${detail || "referral"})`;
    if (what === "action") return `action: ${detail}`;
    return source;
  }

  function featureValue(value) {
    if (value === true) return "yes";
    if (value === false) return "no";
    if (value === -1) return "does not apply";
    if (typeof value === "number") return String(Number(value.toFixed(3)));
    if (Array.isArray(value)) return value.length ? value.map(String).join(", ") : "none";
    if (value === null) return "none";
    return typeof value === "object" ? JSON.stringify(value) : String(value);
  }

  function notice(message) {
    const box = $("notice");
    box.textContent = message || "";
    box.hidden = !message;
  }

  function show(sectionId) {
    for (const id of ["sign-in", "queue", "case", "dashboard"]) $(id).hidden = id !== sectionId;
    $("sign-out").hidden = sectionId === "sign-in";
    $("views").hidden = sectionId === "sign-in";
    const current = sectionId === "dashboard" ? "to-dashboard" : "to-queue";
    for (const id of ["to-queue", "to-dashboard"]) {
      if (id === current) $(id).setAttribute("aria-current", "page");
      else $(id).removeAttribute("aria-current");
    }
  }

  function focusTitle(id) {
    const title = $(id);
    if (title && !title.contains(document.activeElement)) title.focus();
  }

  function failed(error) {
    if (error instanceof SignInNeeded) {
      signIn(error.message);
      return;
    }
    notice(error.message);
  }

  // -- sign in ------------------------------------------------------------------------------

  function signIn(message) {
    notice(message);
    show("sign-in");
    $("api-key").value = "";
    $("api-key").focus();
  }

  $("sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    if (!key) {
      notice("Enter a reviewer API key.");
      return;
    }
    sessionStorage.setItem(KEY_STORAGE, key);
    $("api-key").value = "";
    notice("");
    route();
  });

  $("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORAGE);
    shownCase = null;
    signIn("Signed out: the key is forgotten.");
  });

  // -- the queue ----------------------------------------------------------------------------

  function queueOrder() {
    // The open queue riskiest first; decided cases (the history) oldest first, as the API advises.
    return queueState.status.includes("OPEN") || queueState.status.includes("ESCALATED")
      ? "RISKIEST_FIRST"
      : "OLDEST_FIRST";
  }

  async function showQueue() {
    show("queue");
    $("status-filter").value = queueState.status;
    const order = queueOrder();
    $("queue-order").textContent =
      order === "RISKIEST_FIRST" ? "Highest score first, then the oldest." : "Oldest first.";
    $("queue-summary").textContent = "Loading…";
    const page = queueState.cursors.length - 1;
    const data = await graphql(QUEUE_QUERY, {
      status: queueState.status.split(","),
      first: PAGE_SIZE,
      after: queueState.cursors[page],
      order,
    });
    queueState.cases = data.reviewCases.cases;
    queueState.next = data.reviewCases.nextCursor;
    renderQueue();
    focusTitle("queue-title");
  }

  function renderQueue() {
    const rules = new Set(queueState.cases.flatMap((c) => c.heldBy));
    if (queueState.heldBy) rules.add(queueState.heldBy);
    const select = $("reason-filter");
    select.replaceChildren(el("option", { value: "" }, "Any rule or model"));
    for (const rule of [...rules].sort()) {
      select.append(el("option", { value: rule }, ruleWords(rule)));
    }
    select.value = queueState.heldBy;

    const shown = queueState.cases.filter(
      (c) => !queueState.heldBy || c.heldBy.includes(queueState.heldBy)
    );
    const body = $("queue-table").querySelector("tbody");
    body.replaceChildren(
      ...shown.map((c) =>
        el(
          "tr",
          null,
          el("td", null, caseLink(c.id)),
          el("td", null, c.member.id),
          el("td", null, STATUS_WORDS[c.status] || c.status),
          el("td", { class: "number" }, score(c.topScore)),
          el("td", { class: "number" }, c.heldPoints),
          el("td", { class: "number" }, c.heldEventCount),
          el("td", null, c.heldBy.map(ruleWords).join("; ") || "nothing held"),
          el("td", null, MEMBER_WORDS[c.member.status] || c.member.status),
          el("td", null, when(c.openedAt))
        )
      )
    );
    const page = queueState.cursors.length;
    const all = queueState.cases.length;
    const filtered = shown.length === all ? "" : ` (of ${all} on this page)`;
    $("queue-summary").textContent = shown.length
      ? `${shown.length} case${shown.length === 1 ? "" : "s"}${filtered}.`
      : "No cases here.";
    $("page-number").textContent = `Page ${page}`;
    $("previous-page").disabled = page === 1;
    $("next-page").disabled = !queueState.next;
  }

  $("status-filter").addEventListener("change", () => {
    queueState.status = $("status-filter").value;
    queueState.cursors = [null];
    showQueue().catch(failed);
  });
  $("reason-filter").addEventListener("change", () => {
    queueState.heldBy = $("reason-filter").value;
    renderQueue();
  });
  $("queue-filters").addEventListener("submit", (event) => event.preventDefault());
  $("next-page").addEventListener("click", () => {
    if (!queueState.next) return;
    queueState.cursors.push(queueState.next);
    showQueue().catch(failed);
  });
  $("previous-page").addEventListener("click", () => {
    if (queueState.cursors.length > 1) queueState.cursors.pop();
    showQueue().catch(failed);
  });

  // -- one case -----------------------------------------------------------------------------

  async function showCase(id) {
    show("case");
    $("case-title").textContent = `Case ${id}`;
    $("case-body").replaceChildren(el("p", null, "Loading…"));
    $("decision").hidden = true;
    $("decision-result").textContent = "";
    const data = await graphql(CASE_QUERY, { id, decisions: RANGE_DECISIONS });
    const found = data.reviewCase;
    ranges = {
      decisions: data.reviewFeatureRanges.decisions,
      byName: new Map(data.reviewFeatureRanges.features.map((f) => [f.name, f])),
    };
    if (found.__typename !== "ReviewCase") {
      $("case-body").replaceChildren(el("p", { class: "problem" }, found.message));
      shownCase = null;
      focusTitle("case-title");
      return;
    }
    renderCase(found);
    focusTitle("case-title");
  }

  function caseLink(id) {
    return el("a", { href: `#/case/${encodeURIComponent(id)}` }, `Case ${id}`);
  }

  function table(kind, headRow, rows) {
    return el("table", { class: kind }, el("thead", null, headRow), el("tbody", null, ...rows));
  }

  function definitions(pairs) {
    const list = el("dl", { class: "facts" });
    for (const [term, value] of pairs) list.append(el("dt", null, term), el("dd", null, value));
    return list;
  }

  function renderCase(found) {
    shownCase = found;
    const member = found.member;
    $("case-title").textContent = `Case ${found.id}: member ${member.id}`;
    const status = el(
      "p",
      { class: `status status-${found.status.toLowerCase()}`, id: "case-status" },
      `Status: ${STATUS_WORDS[found.status] || found.status}`
    );
    const decided = found.decidedAt
      ? definitions([
          ["Decided", `${when(found.decidedAt)} by ${found.decidedBy}`],
          ["Note", found.note || "none"],
          ["Member frozen by this decision", found.frozeMember ? "yes" : "no"],
        ])
      : null;
    const standing = el(
      "section",
      { "aria-labelledby": "member-title" },
      el("h2", { id: "member-title" }, "Member"),
      definitions([
        ["Member", member.id],
        ["Status", MEMBER_WORDS[member.status] || member.status],
        ["Available points", member.balance.available],
        ["Pending points", member.balance.pending],
        ["Reserved points", member.balance.reserved],
        ["Case opened", when(found.openedAt)],
        [
          "Held",
          `${found.heldPoints} points in ${found.heldEventCount} event(s),` +
            ` top score ${score(found.topScore)}`,
        ],
      ])
    );
    const reasons = el(
      "section",
      { "aria-labelledby": "reasons-title" },
      el("h2", { id: "reasons-title" }, "Why it was held"),
      found.reasons.length
        ? el("ul", { class: "reasons" }, ...found.reasons.map((r) => el("li", null, r)))
        : el("p", null, "No reasons recorded.")
    );
    const parts = [status, decided, standing, reasons, heldEvents(found.heldEvents), ring(found)];
    $("case-body").replaceChildren(...parts.filter((part) => part !== null));
    const open = found.status === "OPEN" || found.status === "ESCALATED";
    $("decision").hidden = !open;
    $("escalate-case").disabled = found.status !== "OPEN";
    for (const id of ["clear-case", "confirm-case"]) $(id).disabled = !open;
  }

  function heldEvents(events) {
    const section = el(
      "section",
      { "aria-labelledby": "held-title" },
      el("h2", { id: "held-title" }, "Held events")
    );
    if (!events.length) {
      section.append(el("p", null, "No held events."));
      return section;
    }
    const head = el(
      "tr",
      null,
      ...["When", "What earned it", "Points", "Score", "Held by", "Reasons"].map((h) =>
        el("th", { scope: "col" }, h)
      )
    );
    const rows = events.map((e) =>
      el(
        "tr",
        null,
        el("td", null, when(e.decidedAt)),
        el("td", null, sourceWords(e.source), el("br"), el("small", null, `event ${e.eventId}`)),
        el("td", { class: "number" }, e.points),
        el("td", { class: "number" }, score(e.score)),
        el("td", null, ruleWords(e.decidedBy)),
        el("td", null, e.reasons.join("; ") || "none")
      )
    );
    section.append(table("held", head, rows));
    section.append(
      el(
        "p",
        { class: "hint", id: "features-hint" },
        "Features are the values the guard read for each event, as it stored them. ",
        ranges.decisions
          ? "Usual here: the median and the 90th percentile over this merchant's latest " +
              `${ranges.decisions} cleared decisions; a value above the 90th percentile is marked.`
          : "This merchant has no cleared decisions yet to compare them with."
      )
    );
    events.forEach((e) => {
      const head = ["Feature", "This event", "Usual (median)", "90th percentile", "Compared"];
      const headings = el("tr", null, ...head.map((h) => el("th", { scope: "col" }, h)));
      const features = table("features", headings, flattened(e.features).map(featureRow));
      section.append(
        el(
          "details",
          null,
          el("summary", null, `Features of event ${e.eventId} (${sourceWords(e.source)})`),
          features
        )
      );
    });
    return section;
  }

  // A feature whose value is an object (the member's history, identifiers shared) becomes
  // one row per field, named "history.orders_1h" as the merchant's ranges name it.
  function flattened(features) {
    return features.flatMap((f) =>
      f.value !== null && typeof f.value === "object" && !Array.isArray(f.value)
        ? Object.entries(f.value).map(([name, value]) => ({ name: `${f.name}.${name}`, value }))
        : [f]
    );
  }

  function featureRow(feature) {
    const usual = ranges.byName.get(feature.name);
    const numeric = typeof feature.value === "number" && feature.value !== -1;
    let compared = "";
    if (usual && numeric) {
      if (feature.value > usual.p90) compared = "above 9 in 10 of the usual";
      else if (feature.value > usual.median) compared = "above the median";
      else compared = "usual";
    }
    return el(
      "tr",
      { class: compared.startsWith("above 9") ? "unusual" : null },
      el("th", { scope: "row" }, feature.name.replaceAll("_", " ").replace(".", ": ")),
      el("td", { class: "number" }, featureValue(feature.value)),
      el("td", { class: "number" }, usual ? featureValue(usual.median) : ""),
      el("td", { class: "number" }, usual ? featureValue(usual.p90) : ""),
      el("td", null, compared)
    );
  }

  // The ring: the case's member in the middle, the linked members around, each edge labelled
  // with the kinds of identifier the two share. The table below says the same in text.
  function ring(found) {
    const section = el(
      "section",
      { "aria-labelledby": "ring-title" },
      el("h2", { id: "ring-title" }, "Linked members")
    );
    const linked = found.linkedMembers;
    if (!linked.length) {
      section.append(el("p", null, "No other member shares an identifier with this one."));
      return section;
    }
    const width = 640;
    const height = 460;
    const cx = width / 2;
    const cy = height / 2;
    const radius = 150;
    const drawn = linked.slice(0, MAX_GRAPH_MEMBERS);
    const graph = svg("svg", {
      viewBox: `0 0 ${width} ${height}`,
      class: "ring",
      role: "img",
      "aria-labelledby": "ring-graph-title",
      id: "ring-graph",
    });
    graph.append(
      svg(
        "title",
        { id: "ring-graph-title" },
        `Member ${found.member.id} and ${linked.length} linked member(s)`
      )
    );
    const edges = svg("g", { class: "edges" });
    const nodes = svg("g", { class: "nodes" });
    drawn.forEach((link, index) => {
      const angle = (2 * Math.PI * index) / drawn.length - Math.PI / 2;
      const x = cx + radius * Math.cos(angle);
      const y = cy + radius * Math.sin(angle);
      const uy = Math.sin(angle); // upwards if negative
      edges.append(svg("line", { x1: cx, y1: cy, x2: x, y2: y }));
      const kinds = link.sharedIdentifiers.map((k) => KIND_WORDS[k] || k).join(", ");
      edges.append(
        // Past the middle of the edge: clear of the central member's name above the centre
        // and of the linked member's name, above or below its node.
        svg(
          "text",
          {
            x: cx + 0.6 * (x - cx),
            y: cy + 0.6 * (y - cy) + 4,
            class: "edge-label",
            "text-anchor": "middle",
          },
          kinds
        )
      );
      const nameAt = uy < -0.1 ? [x, y - 30] : [x, y + 38]; // above the upper nodes
      nodes.append(memberNode(link.member, x, y, nameAt, false));
    });
    nodes.append(memberNode(found.member, cx, cy, [cx, cy - 40], true));
    graph.append(edges, nodes);
    section.append(graph);
    if (linked.length > drawn.length) {
      const note = `The graph shows ${drawn.length} of ${linked.length}; the table lists all.`;
      section.append(el("p", { class: "hint" }, note));
    }
    const rows = linked.map((link) =>
      el(
        "tr",
        null,
        el("td", null, link.member.id),
        el("td", null, link.sharedIdentifiers.map((k) => KIND_WORDS[k] || k).join(", ")),
        el("td", null, MEMBER_WORDS[link.member.status] || link.member.status),
        el(
          "td",
          null,
          link.member.openCaseId ? caseLink(link.member.openCaseId) : "none"
        )
      )
    );
    const head = el(
      "tr",
      null,
      ...["Member", "Shares", "Status", "Open case"].map((h) => el("th", { scope: "col" }, h))
    );
    section.append(table("linked", head, rows));
    return section;
  }

  // A member's circle at (x, y), their name in a box centred at `at`.
  function memberNode(member, x, y, at, central) {
    const status = (member.status || "ACTIVE").toLowerCase();
    const group = svg("g", { class: `node node-${status}${central ? " node-central" : ""}` });
    const label = member.id.length > 18 ? `${member.id.slice(0, 17)}…` : member.id;
    const labelWidth = 7.5 * label.length + 10; // about 13px type; the box hides edges under it
    group.append(
      svg("title", {}, `${member.id}: ${MEMBER_WORDS[member.status] || member.status}`),
      svg("circle", { cx: x, cy: y, r: central ? 30 : 22 }),
      svg("rect", {
        x: at[0] - labelWidth / 2,
        y: at[1] - 14,
        width: labelWidth,
        height: 19,
        rx: 4,
        class: "label-box",
      }),
      svg("text", { x: at[0], y: at[1], "text-anchor": "middle", class: "node-label" }, label)
    );
    if (central || !member.openCaseId) return group;
    const link = svg("a", { href: `#/case/${encodeURIComponent(member.openCaseId)}` });
    link.append(group);
    return link;
  }

  // -- deciding -----------------------------------------------------------------------------

  async function decide(action) {
    if (!shownCase) return;
    const note = $("note").value.trim();
    const variables = { id: shownCase.id, note: note || null };
    if (action === "confirm") {
      variables.freeze = $("freeze-member").checked;
      variables.void = $("void-referrals").checked;
    }
    const buttons = ["clear-case", "confirm-case", "escalate-case"].map($);
    buttons.forEach((b) => (b.disabled = true));
    $("decision-result").textContent = "Sending the decision…";
    try {
      const data = await graphql(DECISIONS[action], variables);
      const result = Object.values(data)[0];
      if (result.__typename === "ReviewCase") {
        $("note").value = "";
        $("freeze-member").checked = false;
        $("void-referrals").checked = false;
        renderCase(result);
        $("decision-result").textContent =
          `Decided: case ${result.id} is now ${STATUS_WORDS[result.status] || result.status}.`;
      } else if (result.__typename === "CaseAlreadyDecided") {
        await showCase(shownCase.id); // as it was decided before
        const status = STATUS_WORDS[result.status] || result.status;
        $("decision-result").textContent = `Nothing changed: ${result.message} (it is ${status}).`;
      } else {
        $("decision-result").textContent = `Nothing changed: ${result.message}`;
        buttons.forEach((b) => (b.disabled = false));
      }
    } catch (error) {
      $("decision-result").textContent = `Nothing was decided: ${error.message}`;
      buttons.forEach((b) => (b.disabled = false));
      if (error instanceof SignInNeeded) failed(error);
    }
  }

  $("clear-case").addEventListener("click", () => decide("clear"));
  $("confirm-case").addEventListener("click", () => decide("confirm"));
  $("escalate-case").addEventListener("click", () => decide("escalate"));
  $("decision").addEventListener("submit", (event) => event.preventDefault());

  // -- routes: #/ is the queue, #/case/ID a case, #/dashboard the points dashboard ----------

  // What dashboard.js borrows from here: one way to ask /graphql, to put text in, to switch.
  const tools = { $, el, svg, graphql, show, focusTitle, failed };

  function route() {
    if (!sessionStorage.getItem(KEY_STORAGE)) {
      signIn("");
      return;
    }
    notice("");
    if (location.hash === "#/dashboard") {
      window.pointguardDashboard.show(tools).catch(failed);
      return;
    }
    const match = /^#\/case\/([0-9]{1,18})$/.exec(location.hash);
    (match ? showCase(match[1]) : showQueue()).catch(failed);
  }

  window.addEventListener("hashchange", route);
  route();
})();
