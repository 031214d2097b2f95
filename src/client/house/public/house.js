// The house page: the peer board, live over server-sent events, and a file browser for the
// selected peer. Every request goes to the local house process (relative URLs, so the
// per-launch token in the page's path comes along); the house talks to peers over peer TLS.
"use strict";

const state = { board: undefined, selected: undefined, path: "", listing: undefined };
const byId = (id) => document.getElementById(id);
const previewable = /^(text\/|application\/(json|javascript|xml|x-sh|x-yaml|toml))/;
const textPreviewBytes = 256 * 1024;

function relativeTime(iso) {
  if (!iso) return "never";
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return new Date(iso).toLocaleString();
}

function formatSize(bytes) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

function element(tag, properties = {}, children = []) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(properties)) {
    if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("aria-") || name === "role") node.setAttribute(name, value);
    else node[name] = value;
  }
  for (const child of children) node.append(child);
  return node;
}

function peerUrl(email, action, path = "") {
  const encodedPath = path.split("/").filter(Boolean).map(encodeURIComponent).join("/");
  return `api/peers/${encodeURIComponent(email)}/${action}/${encodedPath}`;
}

// --- the board ---------------------------------------------------------------------------------

function renderBoard() {
  const board = state.board;
  if (!board) return;
  byId("self").textContent = `You are ${board.self}. Relay checked ${relativeTime(board.refreshedAt)}.`;
  const relayError = byId("relay-error");
  relayError.hidden = !board.relayError;
  relayError.textContent = board.relayError ? `The relay cannot be reached: ${board.relayError}. Showing the peers as last known.` : "";
  byId("no-peers").hidden = board.peers.length > 0;
  const list = byId("peers");
  const existing = new Map([...list.children].map((item) => [item.dataset.email, item]));
  board.peers.forEach((peer, index) => {
    let item = existing.get(peer.email);
    if (!item) {
      item = element("li", { dataset: { email: peer.email } }, [
        element("button", { type: "button", className: "peer", onclick: () => selectPeer(peer.email) }, [
          element("span", { className: "badge" }),
          element("span", { className: "email", textContent: peer.email }),
          element("span", { className: "detail" }),
        ]),
      ]);
    }
    if (list.children[index] !== item) list.insertBefore(item, list.children[index] ?? null);
    existing.delete(peer.email);
    const badge = item.querySelector(".badge");
    badge.textContent = peer.state;
    badge.dataset.state = peer.state;
    const details = [`last seen ${relativeTime(peer.lastSeen)}`];
    if (peer.address) details.push(`answered at ${peer.address}`);
    if (peer.message && peer.state !== "online") details.push(peer.message);
    item.querySelector(".detail").textContent = details.join(" · ");
    const button = item.querySelector("button");
    button.setAttribute("aria-pressed", String(peer.email === state.selected));
    button.setAttribute("aria-label", `${peer.email}, ${peer.state}, ${details.join(", ")}`);
  });
  for (const stale of existing.values()) stale.remove();
}

function connectEvents() {
  const events = new EventSource("api/events");
  events.addEventListener("board", (event) => {
    state.board = JSON.parse(event.data);
    renderBoard();
  });
  // EventSource reconnects by itself (the house asks for 2 s); say so meanwhile.
  events.addEventListener("error", () => {
    byId("self").textContent = "Lost the house process; reconnecting…";
  });
}

// --- files -------------------------------------------------------------------------------------

function selectPeer(email) {
  state.selected = email;
  state.path = "";
  closePreview();
  renderBoard();
  void loadFiles();
}

async function loadFiles() {
  const email = state.selected;
  const path = state.path;
  const section = byId("files-section");
  section.hidden = false;
  byId("files-heading").textContent = `Files of ${email}`;
  renderBreadcrumbs(email, path);
  const status = byId("files-status");
  status.textContent = "Loading…";
  const body = byId("files").tBodies[0];
  try {
    const response = await fetch(`api/peers/${encodeURIComponent(email)}/files?path=${encodeURIComponent(path)}`);
    const answer = await response.json();
    if (state.selected !== email || state.path !== path) return; // another click came first
    if (!response.ok) throw new Error(answer.message || `HTTP ${response.status}`);
    state.listing = answer;
    status.textContent = answer.entries.length === 0 ? "This folder is empty." : answer.truncated ? `Showing the first ${answer.entries.length} entries.` : "";
    body.replaceChildren(...answer.entries.map((entry) => fileRow(email, path, entry)));
  } catch (error) {
    body.replaceChildren();
    status.textContent = `Could not list the files: ${error.message}`;
  }
}

function renderBreadcrumbs(email, path) {
  const parts = path.split("/").filter(Boolean);
  const crumbs = [element("button", { type: "button", className: "crumb", textContent: email, onclick: () => openFolder("") })];
  parts.forEach((part, index) => {
    crumbs.push(document.createTextNode(" / "));
    crumbs.push(element("button", { type: "button", className: "crumb", textContent: part, onclick: () => openFolder(parts.slice(0, index + 1).join("/")) }));
  });
  byId("breadcrumbs").replaceChildren(...crumbs);
}

function openFolder(path) {
  state.path = path;
  closePreview();
  void loadFiles();
}

function fileRow(email, folder, entry) {
  const path = folder ? `${folder}/${entry.name}` : entry.name;
  const isDirectory = entry.type === "directory";
  const open = element("button", {
    type: "button",
    className: isDirectory ? "entry folder" : "entry file",
    textContent: isDirectory ? `${entry.name}/` : entry.name,
    onclick: () => (isDirectory ? openFolder(path) : preview(email, path, entry)),
  });
  const actions = isDirectory ? [] : [element("a", { className: "download", href: peerUrl(email, "download", path), download: entry.name, textContent: "Download", "aria-label": `Download ${entry.name}` })];
  return element("tr", { dataset: { name: entry.name } }, [
    element("td", {}, [open]),
    element("td", { className: "size", textContent: isDirectory ? "" : formatSize(entry.size) }),
    element("td", { className: "modified", textContent: new Date(entry.modified).toLocaleString() }),
    element("td", {}, actions),
  ]);
}

// --- preview -----------------------------------------------------------------------------------

async function preview(email, path, entry) {
  const section = byId("preview-section");
  const target = byId("preview");
  section.hidden = false;
  byId("preview-heading").textContent = `Preview of ${entry.name}`;
  const url = peerUrl(email, "content", path);
  if (entry.mediaType.startsWith("image/")) {
    target.replaceChildren(element("img", { src: url, alt: entry.name }));
  } else if (previewable.test(entry.mediaType)) {
    target.replaceChildren(element("p", { className: "muted", textContent: "Loading…" }));
    try {
      // Only the start of a large file: the preview is for reading, the download for keeping.
      const response = await fetch(url, { headers: { range: `bytes=0-${textPreviewBytes - 1}` } });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const text = await response.text();
      const cut = entry.size > textPreviewBytes ? [element("p", { className: "muted", textContent: `The first ${formatSize(textPreviewBytes)} of ${formatSize(entry.size)}.` })] : [];
      target.replaceChildren(element("pre", { textContent: text, tabIndex: 0 }), ...cut);
    } catch (error) {
      target.replaceChildren(element("p", { textContent: `Could not load the preview: ${error.message}` }));
    }
  } else {
    target.replaceChildren(element("p", { textContent: `No preview for ${entry.mediaType}. ` }, [element("a", { href: peerUrl(email, "download", path), download: entry.name, textContent: "Download it" })]));
  }
  byId("close-preview").focus();
}

function closePreview() {
  byId("preview-section").hidden = true;
  byId("preview").replaceChildren();
}

// --- keyboard ----------------------------------------------------------------------------------

document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && !byId("preview-section").hidden) {
    closePreview();
    return;
  }
  // Up and down move between peers, as in any list.
  const current = document.activeElement;
  if ((event.key === "ArrowDown" || event.key === "ArrowUp") && current?.classList.contains("peer")) {
    const buttons = [...document.querySelectorAll("#peers button.peer")];
    const next = buttons[buttons.indexOf(current) + (event.key === "ArrowDown" ? 1 : -1)];
    if (next) {
      next.focus();
      event.preventDefault();
    }
  }
});

document.addEventListener("DOMContentLoaded", () => {
  byId("close-preview").addEventListener("click", closePreview);
  connectEvents();
  // Relative times ("12 s ago") move on without a new event.
  setInterval(renderBoard, 5000);
});
