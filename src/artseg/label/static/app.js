// artseg label: keyboard-only labelling page. Every key is a request to the JSON API (artseg/label/server.py);
// key presses are queued and run one after another, so typing ahead never labels the wrong image.
"use strict";

const $ = (id) => document.getElementById(id);
const KEYS = { a: "artefact", c: "clean", s: "skip" };

// The lane: recently labelled images (oldest first), the image to label now, the strip after it.
// The arrow keys move along it; a label applies to the image shown, then the view returns to the queue.
let lane = [];
let at = 0;
let overlayOn = false;
let paintMode = null;  // null: one label per image; "masks" or "scribbles": brush strokes (paint.js)
let liveMode = false;  // --live: the forest's mask of the image shown, after every stroke (paint.js)
let pending = Promise.resolve();

function enqueue(task) {
  pending = pending.then(task).catch((err) => say(err.message));
}

function say(text) {
  $("message").textContent = text || "";
}

async function api(method, path, body) {
  const options = { method, headers: {} };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function renderStats(s) {
  $("counts").textContent =
    `${s.labelled} / ${s.total} labelled · ${s.remaining} remaining · ${s.skipped} skipped · ` +
    `clean ${s.clean} · artefact ${s.artefact}` + (s.scored !== undefined ? ` · model scored ${s.scored}` : "");
  $("rate").textContent = `${s.labels_per_minute} labels/min`;
}

function renderStrip(items) {
  const strip = $("strip");
  strip.replaceChildren(...items.map((item) => {
    const fig = document.createElement("figure");
    const img = document.createElement("img");
    img.src = item.preview;  // loads into the browser cache: the next image shows without a request
    img.alt = item.filename;
    const cap = document.createElement("figcaption");
    cap.textContent = item.filename;
    fig.append(img, cap);
    return fig;
  }));
}

function setLane(data, focus) {
  // After an undo, `focus` is the image whose label was taken back: shown now, in front of the queue.
  const other = (name) => !focus || name !== focus.filename;
  const ahead = [data.item, ...data.upcoming].filter((item) => item && other(item.filename));
  const behind = data.recent.filter((name) => other(name) && !ahead.some((item) => item.filename === name))
    .map((name) => ({ filename: name }));
  lane = behind.concat(focus ? [focus] : [], ahead);
  at = behind.length;
  paintMode = data.mode || null;
  liveMode = Boolean(data.live);
  document.body.classList.toggle("painting", paintMode !== null);
  renderStats(data.stats);
  renderStrip(data.upcoming);
  document.body.classList.toggle("done", lane.length === at);
  if (lane.length === at) {
    $("filename").textContent = "All images are labelled.";
    $("current-label").textContent = "";
    $("suggestion").textContent = "";
    document.body.dataset.shown = "";
    return Promise.resolve();
  }
  return show();
}

async function show() {
  let item = lane[at];
  if (!item.preview) item = lane[at] = await api("GET", "/api/item?filename=" + encodeURIComponent(item.filename));
  const image = $("image");
  image.src = item.preview;
  $("filename").textContent = item.filename;
  try {
    await image.decode();
  } catch (err) {
    // An unreadable file: show the server's one-line reason; the keys still label (or skip) this image.
    image.removeAttribute("src");
    const answer = await fetch(item.preview).then((r) => r.json()).catch(() => ({}));
    throw new Error(answer.error || `${item.filename}: the preview could not be shown`);
  }
  const label = $("current-label");
  label.textContent = item.label ? `labelled ${item.label}` + (item.split ? ` (${item.split})` : "") : "";
  label.className = item.label || "";
  const s = item.suggestion;
  $("suggestion").textContent = s ? `model: ${s.label} (score ${s.score.toFixed(3)}, threshold ${s.threshold.toFixed(3)})` : "";
  showOverlay(item);
  if (paintMode) await paint.show(item.filename);
  document.body.dataset.shown = item.filename;  // tests and the benchmark wait on this
  say("");
}

function showOverlay(item) {
  const overlay = $("overlay");
  overlay.hidden = !(overlayOn && item.overlay);
  if (!overlay.hidden) overlay.src = item.overlay;
}

function current() {
  return lane[at] && at < lane.length ? lane[at] : null;
}

async function label(value) {
  const item = current();
  if (!item) return;
  await setLane(await api("POST", "/api/label", { filename: item.filename, label: value }));
}

async function undo() {
  const data = await api("POST", "/api/undo", {});
  await setLane(data, data.undone);
}

async function move(step) {
  const target = at + step;
  if (target < 0 || target >= lane.length) return;
  at = target;
  await show();
}

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;  // leave the browser's own shortcuts alone
  const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
  if (paintMode && paint.key(key)) event.preventDefault();  // A, C, E, [, ], Z, N: the brush's keys
  else if (KEYS[key]) enqueue(() => label(KEYS[key]));
  else if (key === "z" || key === "Backspace") enqueue(undo);
  else if (key === "ArrowLeft") enqueue(() => move(-1));
  else if (key === "ArrowRight") enqueue(() => move(1));
  else if (key === "m") {
    const item = current();
    if (item && !item.overlay && item.preview) say("no model: start artseg label with --model to see its masks");
    overlayOn = !overlayOn;
    if (item) showOverlay(item);
  } else return;
  event.preventDefault();  // Backspace must not navigate away, arrows must not scroll
});

enqueue(async () => setLane(await api("GET", "/api/next")));
