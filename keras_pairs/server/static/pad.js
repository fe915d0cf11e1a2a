/**
 * A drawing pad: strokes from mouse, touch or pen (Pointer Events) in white ink on black, as MNIST
 * digits are. Its digit is the drawing converted by mnist_style.js, or a sample digit's exact
 * 28 x 28 pixels until someone draws over it.
 */
import { rgbaToGray, toMnistStyle } from './mnist_style.js';

const INK_WIDTH = 22; // on the 280 px pad: about 2 px of the 28 x 28 digit, like MNIST strokes

export class Pad {
  /** canvas: the pad; onChange: called whenever its digit may have changed. */
  constructor(canvas, onChange) {
    this.canvas = canvas;
    this.context = canvas.getContext('2d', { willReadFrequently: true });
    this.onChange = onChange;
    this.sample = null; // Uint8Array(784) while the pad shows an untouched sample digit
    this.inked = false;
    this.converted = null; // the drawing's digit, until the next stroke
    this.last = null; // the previous point of the stroke being drawn
    canvas.addEventListener('pointerdown', (e) => this.start(e));
    canvas.addEventListener('pointermove', (e) => this.move(e));
    for (const type of ['pointerup', 'pointercancel']) canvas.addEventListener(type, () => { this.last = null; });
    this.clear();
  }

  clear() {
    this.context.fillStyle = 'black';
    this.context.fillRect(0, 0, this.canvas.width, this.canvas.height);
    this.sample = null;
    this.inked = false;
    this.converted = null;
    this.onChange();
  }

  /** Shows a 28 x 28 sample digit enlarged; the pad's digit is exactly those pixels. */
  showSample(pixels) {
    const small = new OffscreenCanvas(28, 28);
    const image = small.getContext('2d').createImageData(28, 28);
    pixels.forEach((v, i) => image.data.set([v, v, v, 255], 4 * i));
    small.getContext('2d').putImageData(image, 0, 0);
    this.context.imageSmoothingEnabled = true;
    this.context.drawImage(small, 0, 0, this.canvas.width, this.canvas.height);
    this.sample = Uint8Array.from(pixels);
    this.inked = true;
    this.onChange();
  }

  /** The 28 x 28 uint8 digit the model gets, or null while the pad is empty. */
  digit() {
    if (this.sample) return this.sample;
    if (this.inked && !this.converted) {
      this.converted = toMnistStyle(this.gray(), this.canvas.width, this.canvas.height);
    }
    return this.converted;
  }

  /** The pad's grey levels (row-major), the input of the conversion. */
  gray() {
    const { width, height } = this.canvas;
    return rgbaToGray(this.context.getImageData(0, 0, width, height).data);
  }

  start(event) {
    this.canvas.setPointerCapture(event.pointerId);
    this.last = this.point(event);
    this.stroke(this.last);
  }

  move(event) {
    if (!this.last) return;
    const points = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
    for (const e of points.length ? points : [event]) this.stroke(this.point(e));
  }

  stroke(to) {
    const c = this.context;
    c.strokeStyle = 'white';
    c.lineWidth = INK_WIDTH;
    c.lineCap = c.lineJoin = 'round';
    c.beginPath();
    c.moveTo(this.last.x, this.last.y);
    c.lineTo(to.x, to.y);
    c.stroke();
    this.last = to;
    this.sample = null; // drawn over: from now on the pad's digit is the converted drawing
    this.inked = true;
    this.converted = null;
    this.onChange();
  }

  point(event) {
    const box = this.canvas.getBoundingClientRect();
    return { x: (event.clientX - box.left) * (this.canvas.width / box.width),
             y: (event.clientY - box.top) * (this.canvas.height / box.height) };
  }
}
