// The public board: renders a community's public report and checks records in the browser.
// No libraries and no network beyond this server: SHA-256 and Ed25519 come from WebCrypto.
"use strict";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
let board = null;

function hexToBytes(hex) {
  if (typeof hex !== "string" || hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) {
    throw new Error("not hexadecimal");
  }
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(2 * i, 2), 16);
  return out;
}

function bytesToHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// Minor units to a decimal string, without floating point.
function amount(minor) {
  const places = board ? board.decimal_places : 0;
  const negative = minor < 0;
  let digits = String(Math.abs(minor)).padStart(places + 1, "0");
  const whole = places > 0 ? digits.slice(0, -places) : digits;
  const frac = places > 0 ? "." + digits.slice(-places) : "";
  return (negative ? "-" : "") + whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",") + frac;
}

function hours(minutes) {
  const h = Math.floor(minutes / 60);
  const m = minutes % 60;
  return m === 0 ? String(h) : `${h}h${String(m).padStart(2, "0")}`;
}

async function sha256(...parts) {
  const length = parts.reduce((n, p) => n + p.length, 0);
  const buffer = new Uint8Array(length);
  let offset = 0;
  for (const p of parts) {
    buffer.set(p, offset);
    offset += p.length;
  }
  return new Uint8Array(await crypto.subtle.digest("SHA-256", buffer));
}

// RFC 6962: leaf = SHA-256(0x00 || entry hash), node = SHA-256(0x01 || left || right).
const leafHash = (entryHash) => sha256(Uint8Array.of(0), entryHash);
const nodeHash = (left, right) => sha256(Uint8Array.of(1), left, right);

// RFC 9162 section 2.1.3.2: the root an inclusion proof leads to, or null.
async function inclusionRoot(leaf, index, size, proof) {
  if (!(index < size)) return null;
  let f = index;
  let s = size - 1;
  let r = leaf;
  for (const p of proof) {
    if (s === 0) return null;
    if (f % 2 === 1 || f === s) {
      r = await nodeHash(p, r);
      while (f % 2 === 0 && f !== 0) {
        f = Math.floor(f / 2);
        s = Math.floor(s / 2);
      }
    } else {
      r = await nodeHash(r, p);
    }
    f = Math.floor(f / 2);
    s = Math.floor(s / 2);
  }
  return s === 0 ? r : null;
}

async function included(entryHashHex, index, size, pathHex) {
  const root = await inclusionRoot(await leafHash(hexToBytes(entryHashHex)), index, size, pathHex.map(hexToBytes));
  return root !== null && bytesToHex(root) === board.checkpoint.root;
}

// The exact note the server signs (points-core checkpoint.rs), rebuilt from the fields.
function note(cp) {
  return `points.v1 checkpoint\nprogram ${board.program}\nsize ${cp.tree_size}\nroot ${cp.root}\nhead ${cp.journal_head}\ntime ${cp.issued_at_ms}\n`;
}

async function checkSignature() {
  const cp = board.checkpoint;
  try {
    const key = await crypto.subtle.importKey("raw", hexToBytes(cp.public_key), { name: "Ed25519" }, false, ["verify"]);
    const ok = await crypto.subtle.verify({ name: "Ed25519" }, key, hexToBytes(cp.signature), new TextEncoder().encode(note(cp)));
    return ok ? "valid" : "invalid";
  } catch (e) {
    return "unsupported";
  }
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
}

function fill(tableId, rows, render) {
  const body = document.querySelector(`#${tableId} tbody`);
  body.replaceChildren();
  for (const r of rows) {
    const tr = document.createElement("tr");
    render(tr, r);
    body.appendChild(tr);
  }
  if (rows.length === 0) {
    const tr = document.createElement("tr");
    cell(tr, "Nothing yet.");
    body.appendChild(tr);
  }
}

const SVG = "http://www.w3.org/2000/svg";
function svg(name, attrs, text) {
  const el = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function chart(months) {
  const width = 720, height = 240, left = 60, bottom = 30, top = 20;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "Points earned and spent per month" });
  const max = Math.max(1, ...months.map((m) => Math.max(m.earned, m.spent)));
  const plot = height - bottom - top;
  root.appendChild(svg("line", { x1: left, y1: height - bottom, x2: width, y2: height - bottom, class: "axis" }));
  root.appendChild(svg("text", { x: 4, y: top + 4 }, amount(max)));
  root.appendChild(svg("text", { x: 4, y: height - bottom }, "0"));
  const slot = (width - left) / Math.max(1, months.length);
  const bar = Math.min(40, slot / 3);
  months.forEach((m, i) => {
    const x = left + i * slot + slot / 2 - bar;
    for (const [value, cls, dx] of [[m.earned, "bar-earned", 0], [m.spent, "bar-spent", bar]]) {
      const h = Math.max(0, (value / max) * plot);
      const rect = svg("rect", { x: x + dx, y: height - bottom - h, width: bar - 2, height: h, class: cls });
      rect.appendChild(svg("title", {}, `${m.month}: ${cls === "bar-earned" ? "earned" : "spent"} ${amount(value)}`));
      root.appendChild(rect);
    }
    root.appendChild(svg("text", { x: x, y: height - 10 }, m.month));
  });
  root.appendChild(svg("rect", { x: width - 170, y: 4, width: 10, height: 10, class: "bar-earned" }));
  root.appendChild(svg("text", { x: width - 155, y: 13 }, "earned"));
  root.appendChild(svg("rect", { x: width - 100, y: 4, width: 10, height: 10, class: "bar-spent" }));
  root.appendChild(svg("text", { x: width - 85, y: 13 }, "spent"));
  $("chart").replaceChildren(root);
}

const KIND = { service: "Service", spend: "Spent", donation: "Donated", grant: "Granted" };

function render() {
  const s = board.summary;
  $("program-name").textContent = board.program_name;
  $("org-unit-name").textContent = board.org_unit_name || "";
  $("total-service").textContent = amount(s.totals.service_points);
  $("total-hours").textContent = hours(s.totals.service_minutes);
  $("total-volunteers").textContent = String(s.totals.volunteers);
  $("total-spent").textContent = amount(s.totals.spent_points);
  $("total-donated").textContent = amount(s.totals.donated_points);
  $("total-granted").textContent = amount(s.totals.granted_points);
  chart(s.months);
  fill("ranking", s.ranking, (tr, r) => {
    cell(tr, String(r.rank));
    cell(tr, r.pseudonym, "mono");
    cell(tr, amount(r.points), "num");
    cell(tr, hours(r.minutes), "num");
  });
  fill("merchants", s.merchants, (tr, m) => {
    cell(tr, board.names[m.merchant] || m.merchant);
    cell(tr, amount(m.spent), "num");
  });
  fill("pools", s.pools, (tr, p) => {
    cell(tr, board.names[p.pool] || p.pool);
    cell(tr, amount(p.donated), "num");
    cell(tr, amount(p.granted), "num");
  });
  fill("recent", board.recent, (tr, r) => {
    cell(tr, String(r.sequence));
    cell(tr, new Date(r.at_ms).toISOString().slice(0, 10));
    cell(tr, KIND[r.kind] || r.kind);
    cell(tr, r.pseudonym, "mono");
    cell(tr, amount(r.points), "num");
    const where = r.merchant || r.pool;
    cell(tr, where ? board.names[where] || where : "");
  });
  const cp = board.checkpoint;
  $("cp-size").textContent = String(cp.tree_size);
  $("cp-root").textContent = cp.root;
  $("cp-time").textContent = new Date(cp.issued_at_ms).toISOString();
  $("cp-key").textContent = cp.public_key;
}

function result(status, text) {
  const el = $("check-result");
  el.dataset.status = status;
  el.textContent = (status === "ok" ? "✓ " : "✗ ") + text;
}

async function signatureOrFail() {
  const sig = await checkSignature();
  if (sig === "invalid") {
    result("fail", "The checkpoint's signature does not verify: do not trust this page.");
    return false;
  }
  return true;
}

async function checkPseudonym(event) {
  event.preventDefault();
  const who = $("check-pseudonym").value.trim();
  if (!who) return result("fail", "Enter your pseudonym.");
  try {
    const q = new URLSearchParams({ program: board.program, org_unit: board.org_unit || "", pseudonym: who });
    const { rows } = await (await fetch(`/api/rows?${q}`)).json();
    if (!rows || rows.length === 0) return result("fail", `No entries for ${who} in this report.`);
    if (!(await signatureOrFail())) return;
    for (const r of rows) {
      if (!(await included(r.entry_hash, r.sequence, board.checkpoint.tree_size, r.path))) {
        return result("fail", `Entry ${r.sequence} is NOT in the signed checkpoint of ${board.checkpoint.tree_size} entries.`);
      }
    }
    const seqs = rows.map((r) => r.sequence).join(", ");
    result("ok", `Verified: all ${rows.length} of your entries (${seqs}) are in the signed checkpoint of ${board.checkpoint.tree_size} entries.`);
  } catch (e) {
    result("fail", `Could not check: ${e.message}`);
  }
}

async function checkEntry(event) {
  event.preventDefault();
  const sequence = Number($("check-sequence").value.trim());
  const hash = $("check-hash").value.trim().toLowerCase();
  if (!Number.isInteger(sequence) || sequence < 0) return result("fail", "Enter an entry number.");
  if (!/^[0-9a-f]{64}$/.test(hash)) return result("fail", "The entry hash must be 64 hexadecimal digits.");
  try {
    const q = new URLSearchParams({ program: board.program, sequence: String(sequence) });
    const response = await fetch(`/api/proof?${q}`);
    const proof = await response.json();
    if (!response.ok) return result("fail", `Entry ${sequence}: ${proof.error}`);
    if (proof.tree_size !== board.checkpoint.tree_size) {
      return result("fail", `The proof is for ${proof.tree_size} entries, the checkpoint covers ${board.checkpoint.tree_size}.`);
    }
    if (!(await signatureOrFail())) return;
    if (await included(hash, sequence, proof.tree_size, proof.path)) {
      result("ok", `Verified: entry ${sequence} with this hash is in the signed checkpoint of ${proof.tree_size} entries.`);
    } else {
      result("fail", `Entry ${sequence} with this hash is NOT in the signed checkpoint of ${proof.tree_size} entries: the record was altered or forged.`);
    }
  } catch (e) {
    result("fail", `Could not check: ${e.message}`);
  }
}

async function options(select, items, chosen) {
  select.replaceChildren();
  for (const item of items) {
    const option = document.createElement("option");
    option.value = item.id;
    option.textContent = item.name;
    option.selected = item.id === chosen;
    select.appendChild(option);
  }
}

async function load() {
  const programs = await (await fetch("/api/programs")).json();
  const program = params.get("program") || (programs[0] && programs[0].id);
  if (!program) {
    $("status").textContent = "No programme yet.";
    return;
  }
  await options($("program-select"), programs, program);
  const units = await (await fetch(`/api/org-units?program=${encodeURIComponent(program)}`)).json();
  const orgUnit = params.get("org_unit") || "";
  await options($("org-unit-select"), [{ id: "", name: "(all communities)" }, ...units], orgUnit);
  const q = new URLSearchParams({ program, org_unit: orgUnit });
  const response = await fetch(`/api/board?${q}`);
  const data = await response.json();
  if (!response.ok) {
    $("status").textContent = data.error || "Unavailable.";
    return;
  }
  board = data;
  render();
  const sig = await checkSignature();
  const el = $("cp-signature");
  el.dataset.status = sig;
  el.textContent = {
    valid: "valid: verified in this browser (Ed25519)",
    invalid: "INVALID: this checkpoint was not signed by the key shown",
    unsupported: "this browser cannot check Ed25519 signatures; use points verify",
  }[sig];
  $("status").textContent = `Figures from the checkpoint of ${board.checkpoint.tree_size} entries.`;
  document.body.dataset.ready = "true";
}

function navigate() {
  const q = new URLSearchParams({ program: $("program-select").value, org_unit: $("org-unit-select").value });
  location.search = q.toString();
}

document.addEventListener("DOMContentLoaded", () => {
  $("check-by-pseudonym").addEventListener("submit", checkPseudonym);
  $("check-by-entry").addEventListener("submit", checkEntry);
  $("program-select").addEventListener("change", () => {
    $("org-unit-select").value = "";
    navigate();
  });
  $("org-unit-select").addEventListener("change", navigate);
  load().catch((e) => {
    $("status").textContent = `Could not load: ${e.message}`;
    document.body.dataset.ready = "error";
  });
});
