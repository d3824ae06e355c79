// The reading viewer: a study's images large enough to read. Values come at full depth (uint16 from
// /pixels, the Modality LUT applied) and are windowed here, so moving the window reveals what an
// 8-bit rendering would have lost. Fit to the window; drag to window/level (right: contrast, up:
// brightness), shift-drag or right-drag to pan, the wheel to zoom; arrow keys or Page Up/Down for the
// previous and next image; B shows or hides the AI's boxes; R resets; Escape closes. A screen is hung
// as readers expect: right and left breast of the same view side by side, facing each other (chest
// walls meeting in the middle), CC first, then MLO.
"use strict";

const reader = { pages: [], index: 0, center: 0, width: 1, zoom: 1, panX: 0, panY: 0, boxes: true, study: null, cache: new Map() };
const BOX_COLOURS = { fracture: "#ff3b30", doubt: "#ffd60a", lesion: "#ff9f0a" };

function hangingPages(study) {
  const shown = study.instances.filter((i) => i.shown);
  const side = (i) => String(i.laterality || "").toUpperCase();
  const view = (i) => String(i.view || "").toUpperCase();
  const screen = shown.length > 1 && shown.every((i) => ["R", "L"].includes(side(i)) && ["CC", "MLO"].includes(view(i)));
  if (!screen) return shown.map((i) => [i]);
  const pages = [];
  for (const v of ["CC", "MLO"]) {
    const pane = ["R", "L"].map((s) => shown.find((i) => side(i) === s && view(i) === v)).filter(Boolean);
    if (pane.length) pages.push(pane);
  }
  return pages;
}

async function loadFullDepth(studyId, instance) {
  const key = `${studyId}/${instance.sop_instance_uid}/${instance.version}`;  // a new version is a new image
  if (reader.cache.has(key)) return reader.cache.get(key);
  const response = await api(`/api/studies/${studyId}/images/${instance.sop_instance_uid}/pixels?size=2048`);
  const number = (name) => Number(response.headers.get(name));
  const image = {
    instance, values: new Uint16Array(await response.arrayBuffer()),
    rows: number("X-Rows"), columns: number("X-Columns"),
    sourceRows: number("X-Source-Rows"), sourceColumns: number("X-Source-Columns"),
    offset: number("X-Value-Offset"), scale: number("X-Value-Scale"),
    center: number("X-Window-Center"), width: number("X-Window-Width"),
    invert: response.headers.get("X-Invert") === "1", rowDirection: response.headers.get("X-Row-Direction") || "",
    canvas: document.createElement("canvas"), windowed: null,
  };
  image.canvas.width = image.columns;
  image.canvas.height = image.rows;
  reader.cache.set(key, image);
  return image;
}

// Whether a mammogram's chest wall is on its right edge: from PatientOrientation's row direction
// (columns running towards P), else from where the tissue is (the brighter half).
function chestWallOnRight(image) {
  const direction = image.rowDirection.toUpperCase();
  if (direction.startsWith("P")) return true;
  if (direction.startsWith("A")) return false;
  let left = 0, right = 0;
  const half = Math.floor(image.columns / 2);
  const step = Math.max(1, Math.floor(Math.min(image.rows, image.columns) / 64));
  for (let r = 0; r < image.rows; r += step) {
    for (let c = 0; c < image.columns; c += step) {
      if (c < half) left += image.values[r * image.columns + c]; else right += image.values[r * image.columns + c];
    }
  }
  return image.invert ? right < left : right > left;
}

function windowImage(image) {
  const tag = `${reader.center}/${reader.width}`;
  if (image.windowed === tag) return;
  const context = image.canvas.getContext("2d");
  const pixels = context.createImageData(image.columns, image.rows);
  const low = reader.center - reader.width / 2;
  const gain = 255 / reader.width;
  for (let k = 0; k < image.values.length; k++) {
    let grey = ((image.values[k] * image.scale + image.offset) - low) * gain;
    grey = grey < 0 ? 0 : grey > 255 ? 255 : grey;
    if (image.invert) grey = 255 - grey;
    const at = k * 4;
    pixels.data[at] = pixels.data[at + 1] = pixels.data[at + 2] = grey;
    pixels.data[at + 3] = 255;
  }
  context.putImageData(pixels, 0, 0);
  image.windowed = tag;
}

function drawReader() {
  const canvas = $("#reader-canvas");
  canvas.width = canvas.clientWidth;
  canvas.height = canvas.clientHeight;
  const context = canvas.getContext("2d");
  context.setTransform(1, 0, 0, 1, 0, 0);
  context.fillStyle = "#000";
  context.fillRect(0, 0, canvas.width, canvas.height);
  const page = reader.pages[reader.index] || [];
  const paneWidth = canvas.width / Math.max(page.length, 1);
  const flips = [];
  page.forEach((image, pane) => {
    windowImage(image);
    // In a hung pair the right breast (left pane) faces right, the left breast faces left.
    const facingRight = page.length === 2 ? pane === 0 : chestWallOnRight(image);
    const flip = page.length === 2 && chestWallOnRight(image) !== facingRight;
    flips.push(flip ? 1 : 0);
    const fit = Math.min(paneWidth / image.columns, canvas.height / image.rows) * reader.zoom;
    context.save();
    context.beginPath();
    context.rect(pane * paneWidth, 0, paneWidth, canvas.height);
    context.clip();
    context.translate(pane * paneWidth + paneWidth / 2 + reader.panX, canvas.height / 2 + reader.panY);
    // A hung pair meets at the middle: each image is pushed towards the other.
    if (page.length === 2) context.translate((pane === 0 ? 1 : -1) * (paneWidth - image.columns * fit) / 2, 0);
    context.scale(flip ? -fit : fit, fit);
    context.translate(-image.columns / 2, -image.rows / 2);
    context.imageSmoothingEnabled = fit < 1;
    context.drawImage(image.canvas, 0, 0);
    if (reader.boxes) {
      const sx = image.columns / image.sourceColumns, sy = image.rows / image.sourceRows;
      context.lineWidth = 2 / fit;
      for (const mark of image.instance.marks) {
        const [x0, y0, x1, y1] = mark.corners;
        context.strokeStyle = BOX_COLOURS[mark.kind] || "#fff";
        context.setLineDash(mark.kind === "fracture" ? [] : [6 / fit, 4 / fit]);
        context.strokeRect(x0 * sx, y0 * sy, (x1 - x0) * sx, (y1 - y0) * sy);
      }
    }
    context.restore();
  });
  const element = $("#reader");
  Object.assign(element.dataset, {
    index: reader.index, center: reader.center.toFixed(1), width: reader.width.toFixed(1), zoom: reader.zoom.toFixed(2),
    boxes: reader.boxes ? "on" : "off", flipped: flips.join(","),
    layout: page.map((i) => `${i.instance.laterality || ""}-${i.instance.view || ""}`).join("|"),
  });
  $("#reader-status").textContent = `Image ${reader.index + 1} of ${reader.pages.length} · ${element.dataset.layout} · window ${Math.round(reader.width)} level ${Math.round(reader.center)} · zoom ${reader.zoom.toFixed(1)}x · AI boxes ${reader.boxes ? "shown" : "hidden"}`;
}

async function showPage(index) {
  reader.index = Math.max(0, Math.min(index, reader.pages.length - 1));
  const page = await Promise.all(reader.pages[reader.index].map((i) => loadFullDepth(reader.study.item.study_id, i.instance || i)));
  reader.pages[reader.index] = page;
  Object.assign(reader, { center: page[0].center, width: page[0].width, zoom: 1, panX: 0, panY: 0 });
  drawReader();
}

async function openReader(study, sopInstanceUid) {
  if (!reader.study || reader.study.item.study_id !== study.item.study_id) reader.cache.clear();  // one study's values at a time
  reader.study = study;
  reader.pages = hangingPages(study);
  const start = reader.pages.findIndex((p) => p.some((i) => (i.instance || i).sop_instance_uid === sopInstanceUid));
  $("#reader").hidden = false;
  $("#reader-canvas").focus();
  try { await showPage(Math.max(start, 0)); } catch (error) { $("#reader-status").textContent = `Not shown: ${error.message}`; }
}

function closeReader() { $("#reader").hidden = true; }

async function stepReader(by) {
  const next = reader.index + by;
  if (next >= 0 && next < reader.pages.length) await showPage(next);
}

(function wireTheReader() {
  const canvas = $("#reader-canvas");
  let drag = null;
  canvas.addEventListener("contextmenu", (event) => event.preventDefault());
  canvas.addEventListener("mousedown", (event) => {
    drag = { x: event.clientX, y: event.clientY, pan: event.shiftKey || event.button === 2 };
  });
  window.addEventListener("mouseup", () => { drag = null; });
  canvas.addEventListener("mousemove", (event) => {
    if (!drag) return;
    const dx = event.clientX - drag.x, dy = event.clientY - drag.y;
    drag.x = event.clientX;
    drag.y = event.clientY;
    if (drag.pan) {
      reader.panX += dx;
      reader.panY += dy;
    } else {  // a window's worth of values per 256 screen pixels
      const step = Math.max(reader.width, 16) / 256;
      reader.width = Math.max(1, reader.width + dx * step);
      reader.center -= dy * step;
    }
    drawReader();
  });
  canvas.addEventListener("wheel", (event) => {
    event.preventDefault();
    reader.zoom = Math.min(16, Math.max(0.25, reader.zoom * Math.exp(-event.deltaY * 0.002)));
    drawReader();
  }, { passive: false });
  document.addEventListener("keydown", (event) => {
    if ($("#reader").hidden) return;
    if (["ArrowRight", "PageDown"].includes(event.key)) stepReader(1);
    else if (["ArrowLeft", "PageUp"].includes(event.key)) stepReader(-1);
    else if (event.key === "b" || event.key === "B") { reader.boxes = !reader.boxes; drawReader(); }
    else if (event.key === "r" || event.key === "R") showPage(reader.index);
    else if (event.key === "Escape") closeReader();
    else return;
    event.preventDefault();
  });
  $("#reader-previous").addEventListener("click", () => stepReader(-1));
  $("#reader-next").addEventListener("click", () => stepReader(1));
  $("#reader-boxes").addEventListener("click", () => { reader.boxes = !reader.boxes; drawReader(); });
  $("#reader-close").addEventListener("click", closeReader);
  window.addEventListener("resize", () => { if (!$("#reader").hidden) drawReader(); });
})();
