// A drawing pad for square image inputs: strokes drawn at a size a person can draw at, read
// back at the model's size (side x side pixels, 0 = blank, 1 = full ink) by averaging each
// pixel's cell, as the data sets' own images were made from finer scans.

const PAD_PIXELS = 280; // the pad's drawing size before it is fitted to whole cells

export class DrawPad {
  constructor(canvas, onStroke) {
    this.canvas = canvas;
    this.context = canvas.getContext("2d", { willReadFrequently: true });
    this.onStroke = onStroke;
    this.side = 0;
    this.drawing = false;
    canvas.addEventListener("pointerdown", (event) => this.start(event));
    canvas.addEventListener("pointermove", (event) => this.move(event));
    canvas.addEventListener("pointerup", (event) => this.end(event));
    canvas.addEventListener("pointercancel", (event) => this.end(event));
  }

  // Fit the pad to a model of side x side pixels: whole cells, so every cell averages as many
  // pad pixels; strokes as wide, in cells, as the data sets' strokes are (about one cell of an
  // 8x8 digit, two to three of a 28x28 one).
  resize(side) {
    this.side = side;
    const cell = Math.ceil(PAD_PIXELS / side);
    this.canvas.width = this.canvas.height = cell * side;
    this.cell = cell;
    this.lineWidth = cell * Math.min(2.6, Math.max(1.2, side / 10));
    this.clear();
  }

  clear() {
    this.context.clearRect(0, 0, this.canvas.width, this.canvas.height);
  }

  point(event) {
    const box = this.canvas.getBoundingClientRect();
    return [
      ((event.clientX - box.left) * this.canvas.width) / box.width,
      ((event.clientY - box.top) * this.canvas.height) / box.height,
    ];
  }

  start(event) {
    if (event.button !== 0) return;
    event.preventDefault();
    this.canvas.setPointerCapture(event.pointerId);
    this.drawing = true;
    const [x, y] = this.point(event);
    const c = this.context;
    c.lineCap = c.lineJoin = "round";
    c.lineWidth = this.lineWidth;
    c.strokeStyle = c.fillStyle = "#000";
    c.beginPath();
    c.arc(x, y, this.lineWidth / 2, 0, 2 * Math.PI);
    c.fill();
    c.beginPath();
    c.moveTo(x, y);
  }

  move(event) {
    if (!this.drawing) return;
    const [x, y] = this.point(event);
    this.context.lineTo(x, y);
    this.context.stroke();
  }

  end(event) {
    if (!this.drawing) return;
    this.move(event);
    this.drawing = false;
    this.onStroke();
  }

  // side x side values in [0, 1], row by row: each cell's mean ink (the alpha channel).
  pixels() {
    const { width } = this.canvas;
    const data = this.context.getImageData(0, 0, width, width).data;
    const values = new Float64Array(this.side * this.side);
    for (let y = 0; y < width; y += 1) {
      const row = Math.floor(y / this.cell) * this.side;
      for (let x = 0; x < width; x += 1) {
        values[row + Math.floor(x / this.cell)] += data[(y * width + x) * 4 + 3];
      }
    }
    const full = 255 * this.cell * this.cell;
    return Array.from(values, (total) => total / full);
  }

  // Show an input of side x side values (an example, or typed numbers) on the pad, one cell a
  // pixel, so further strokes add to it.
  show(values) {
    this.clear();
    paintPixels(this.context, values, this.side, this.cell);
  }
}

// Pixels of a side x side input as grey squares of `cell` canvas pixels (ink is dark); values
// outside [0, 1] are clipped for display only.
export function paintPixels(context, values, side, cell) {
  for (let y = 0; y < side; y += 1) {
    for (let x = 0; x < side; x += 1) {
      const ink = Math.min(1, Math.max(0, values[y * side + x]));
      if (ink > 0) {
        context.fillStyle = `rgba(0, 0, 0, ${ink})`;
        context.fillRect(x * cell, y * cell, cell, cell);
      }
    }
  }
}

// The side of a square image input of `size` values, or 0 where it is not square.
export function imageSide(size) {
  const side = Math.round(Math.sqrt(size));
  return side * side === size && side > 1 ? side : 0;
}
