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
  let lasso = false;  // L: a stroke fills the polygon it draws
  let radius = 8;  // image pixels
  let zoom = 1, panX = 0, panY = 0;  // CSS transform of the frame (image and strokes move together)
  let panning = null;
  let info = null;  // {filename, width, height, strokes}
  let drawing = null;  // the stroke under the mouse, not yet sent
  let saved = "";
  let modelImage = null;
  let liveShown = true;  // V: the live forest's mask on / off
  let liveVersion = 0;
  let liveText = "";  // the model's mask (the overlay PNG), drawn where a "model" stroke stands

  const canvas = () => document.getElementById("paint");

  function status() {
    const name = tool === "clean" && mode === "masks" ? "clean (erases artefact)" : tool;
    const n = info ? info.strokes.length : 0;
    document.getElementById("paint-status").textContent =
      `${lasso ? "lasso" : "brush"}: ${name} · radius ${radius.toFixed(1)} px · zoom ${zoom.toFixed(2)} · ` +
      `${n} stroke${n === 1 ? "" : "s"}` + (saved ? ` · ${saved}` : "") + (liveText ? ` · ${liveText}` : "");
  }

  function drawStroke(ctx, s, k) {
    if (s.value === "model") {
      if (modelImage) ctx.drawImage(modelImage, 0, 0, ctx.canvas.width, ctx.canvas.height);
      return;
    }
    // Dense masks hold artefact or not: a clean stroke there clears, as the eraser does.
    const clear = s.value === "erase" || (mode === "masks" && s.value === "clean");
    ctx.save();
    ctx.globalCompositeOperation = clear ? "destination-out" : "source-over";
    ctx.strokeStyle = ctx.fillStyle = clear ? "#000" : COLOURS[s.value];
    ctx.lineWidth = Math.max(1, 2 * s.radius * k);
    ctx.lineCap = ctx.lineJoin = "round";
    ctx.beginPath();
    if (s.fill) {
      s.points.forEach(([x, y], i) => (i ? ctx.lineTo(x * k, y * k) : ctx.moveTo(x * k, y * k)));
      ctx.closePath();
      ctx.fill();
      ctx.stroke();
    } else if (s.points.length === 1) {
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
    if (!info || info.filename !== filename) {  // a new image starts fitted to the window
      zoom = 1;
      panX = panY = 0;
      frame();
    }
    if (!info || info.filename !== filename) {
      liveVersion = 0;
      liveText = "";
      document.getElementById("live").hidden = true;
    }
    info = await api("GET", "/api/strokes?filename=" + encodeURIComponent(filename));
    mode = info.mode;
    modelImage = null;
    if (info.strokes.some((s) => s.value === "model")) {
      modelImage = new Image();
      modelImage.src = "/api/overlay?filename=" + encodeURIComponent(filename);
      await modelImage.decode().catch(() => { modelImage = null; });
    }
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

  function frame() {
    document.getElementById("frame").style.transform = `translate(${panX}px, ${panY}px) scale(${zoom})`;
    status();
  }

  function setZoom(z, cx, cy) {
    // keep the image point under (cx, cy) (client pixels) where it is
    const r = document.getElementById("frame").getBoundingClientRect();
    const next = Math.min(32, Math.max(1, z));
    const ox = (cx - r.left) / zoom, oy = (cy - r.top) / zoom;
    panX += ox * zoom - ox * next;
    panY += oy * zoom - oy * next;
    zoom = next;
    if (zoom === 1) panX = panY = 0;
    frame();
  }

  function wheel(event) {
    if (!info) return;
    event.preventDefault();
    setZoom(zoom * (event.deltaY < 0 ? 1.25 : 0.8), event.clientX, event.clientY);
  }

  function down(event) {
    if (!info) return;
    canvas().setPointerCapture(event.pointerId);
    if (event.button !== 0 || spaceHeld) {  // middle / right button or Space + drag: pan
      panning = [event.clientX - panX, event.clientY - panY];
      return;
    }
    drawing = { value: tool, radius, points: [position(event)], ...(lasso ? { fill: true } : {}) };
    redraw();
  }

  function moveTo(event) {
    if (panning) {
      panX = event.clientX - panning[0];
      panY = event.clientY - panning[1];
      frame();
      return;
    }
    if (!drawing) return;
    const p = position(event);
    const last = drawing.points[drawing.points.length - 1];
    const screenPx = info.width / canvas().getBoundingClientRect().width;  // image pixels per screen pixel
    if (Math.hypot(p[0] - last[0], p[1] - last[1]) < screenPx) return;  // one point per screen pixel moved
    drawing.points.push(p);
    redraw();
  }

  function up() {
    panning = null;
    if (!drawing) return;
    const stroke = drawing;
    if (stroke.fill && stroke.points.length < 3) {  // a click in lasso mode encloses nothing
      drawing = null;
      redraw();
      return;
    }
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

  async function fromModel() {
    if (!info) return;
    const filename = info.filename;
    const answer = await api("POST", "/api/stroke/model", { filename });
    saved = `model's mask added (${answer.label || "no label"})`;
    renderStats(answer.stats);
    await load(filename);
    document.body.dataset.saved = String(answer.strokes);
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
    else if (k === "l") lasso = !lasso;
    else if (k === "p") enqueue(fromModel);
    else if (k === "v") {
      liveShown = !liveShown;
      document.getElementById("live").hidden = !(liveShown && liveVersion);
    }
    else if (k === "0") setZoom(1, 0, 0);
    else if (k === "1") {  // one image pixel per screen pixel, centred where the view is
      const r = canvas().getBoundingClientRect();
      setZoom(zoom * info.width / r.width, r.left + r.width / 2, r.top + r.height / 2);
    } else if (k === "[") radius = Math.max(0.5, radius / 1.25);
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

  async function pollLive() {
    // --live: the forest retrains in the background after each stroke; show its newest mask of this image
    if (!liveMode || !info) return;
    const filename = info.filename;
    const s = await api("GET", "/api/live/status?filename=" + encodeURIComponent(filename)).catch(() => null);
    if (!s || !info || info.filename !== filename) return;
    if (s.error) liveText = `live forest: ${s.error}`;
    if (s.ready && s.version !== liveVersion) {
      const img = document.getElementById("live");
      img.src = `/api/live?filename=${encodeURIComponent(filename)}&v=${s.version}`;
      await img.decode().catch(() => {});
      liveVersion = s.version;
      img.hidden = !liveShown;
      liveText = `live forest ${s.seconds.toFixed(1)} s, ${s.trained_on.pixels} px`;
      document.body.dataset.live = String(s.version);  // tests wait on this
    }
    status();
  }
  setInterval(pollLive, 400);

  let spaceHeld = false;
  document.addEventListener("keydown", (e) => { if (e.key === " ") { spaceHeld = true; e.preventDefault(); } });
  document.addEventListener("keyup", (e) => { if (e.key === " ") spaceHeld = false; });
  const c = canvas();
  c.addEventListener("wheel", wheel, { passive: false });
  c.addEventListener("contextmenu", (e) => e.preventDefault());  // right-drag pans
  c.addEventListener("pointerdown", down);
  c.addEventListener("pointermove", moveTo);
  c.addEventListener("pointerup", up);
  c.addEventListener("pointercancel", up);
  return { show: load, key };
})();
