// artseg label, mask mode (--masks / --scribbles): brush strokes with the mouse over the image shown.
// Strokes are in full-resolution image pixels; each is sent once the mouse button is released, and the
// server writes the mask (or scribbles) file before it answers (artseg/label/strokes.py). Loaded before app.js,
// which calls paint.show() for every image shown and paint.key() for every key while painting.
"use strict";

const paint = (() => {
  const COLOURS = { artefact: "#ff2828", clean: "#3fb950" };
  const TOOLS = { a: "artefact", c: "clean", e: "erase" };
  let mode = null;  // "masks" | "scribbles"
  let tool = "artefact";
  let radius = 8;  // image pixels
  let info = null;  // {filename, width, height, strokes}
  let drawing = null;  // the stroke under the mouse, not yet sent
  let saved = "";

  const canvas = () => document.getElementById("paint");

  function status() {
    const name = tool === "clean" && mode === "masks" ? "clean (erases artefact)" : tool;
    const n = info ? info.strokes.length : 0;
    document.getElementById("paint-status").textContent =
      `brush: ${name} · radius ${radius.toFixed(1)} px · ${n} stroke${n === 1 ? "" : "s"}` + (saved ? ` · ${saved}` : "");
  }

  function drawStroke(ctx, s, k) {
    // Dense masks hold artefact or not: a clean stroke there clears, as the eraser does.
    const clear = s.value === "erase" || (mode === "masks" && s.value === "clean");
    ctx.save();
    ctx.globalCompositeOperation = clear ? "destination-out" : "source-over";
    ctx.strokeStyle = ctx.fillStyle = clear ? "#000" : COLOURS[s.value];
    ctx.lineWidth = Math.max(1, 2 * s.radius * k);
    ctx.lineCap = ctx.lineJoin = "round";
    ctx.beginPath();
    if (s.points.length === 1) {
      ctx.arc(s.points[0][0] * k, s.points[0][1] * k, Math.max(0.5, s.radius * k), 0, 2 * Math.PI);
      ctx.fill();
    } else {
      s.points.forEach(([x, y], i) => (i ? ctx.lineTo(x * k, y * k) : ctx.moveTo(x * k, y * k)));
      ctx.stroke();
    }
    ctx.restore();
  }

  function redraw() {
    const c = canvas();
    const ctx = c.getContext("2d");
    ctx.clearRect(0, 0, c.width, c.height);
    if (!info) return;
    const k = c.width / info.width;
    info.strokes.forEach((s) => drawStroke(ctx, s, k));
    if (drawing) drawStroke(ctx, drawing, k);
    status();
  }

  async function load(filename) {
    info = await api("GET", "/api/strokes?filename=" + encodeURIComponent(filename));
    mode = info.mode;
    const image = document.getElementById("image");
    const c = canvas();
    c.width = image.naturalWidth;
    c.height = image.naturalHeight;
    redraw();
    document.body.dataset.strokes = String(info.strokes.length);  // tests wait on this
  }

  function position(event) {
    const r = canvas().getBoundingClientRect();
    return [(event.clientX - r.left) / r.width * info.width, (event.clientY - r.top) / r.height * info.height];
  }

  function down(event) {
    if (!info || event.button !== 0) return;
    canvas().setPointerCapture(event.pointerId);
    drawing = { value: tool, radius, points: [position(event)] };
    redraw();
  }

  function moveTo(event) {
    if (!drawing) return;
    const p = position(event);
    const last = drawing.points[drawing.points.length - 1];
    const screenPx = info.width / canvas().getBoundingClientRect().width;  // image pixels per screen pixel
    if (Math.hypot(p[0] - last[0], p[1] - last[1]) < screenPx) return;  // one point per screen pixel moved
    drawing.points.push(p);
    redraw();
  }

  function up() {
    if (!drawing) return;
    const stroke = drawing;
    const filename = info.filename;
    drawing = null;
    info.strokes.push(stroke);
    saved = "saving…";
    redraw();
    enqueue(async () => {
      const answer = await api("POST", "/api/stroke", { filename, ...stroke });
      saved = `saved (${answer.label || "no label"})`;
      renderStats(answer.stats);
      if (info && info.filename === filename) document.body.dataset.saved = String(answer.strokes);
      status();
    });
  }

  async function undo() {
    if (!info) return;
    const filename = info.filename;
    const answer = await api("POST", "/api/stroke/undo", { filename });
    saved = `undone (${answer.label || "no label"})`;
    renderStats(answer.stats);
    await load(filename);
    document.body.dataset.saved = String(answer.strokes);
  }

  function key(k) {
    if (TOOLS[k]) tool = TOOLS[k];
    else if (k === "[") radius = Math.max(0.5, radius / 1.25);
    else if (k === "]") radius = Math.min(500, radius * 1.25);
    else if (k === "z" || k === "Backspace") enqueue(undo);
    else if (k === "n" || k === "Enter") enqueue(nextImage);
    else return false;
    status();
    return true;
  }

  async function nextImage() {
    if (at + 1 < lane.length) return move(1);  // the strip first, then ask the queue again
    return setLane(await api("GET", "/api/next"));
  }

  const c = canvas();
  c.addEventListener("pointerdown", down);
  c.addEventListener("pointermove", moveTo);
  c.addEventListener("pointerup", up);
  c.addEventListener("pointercancel", up);
  return { show: load, key };
})();
