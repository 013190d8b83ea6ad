// The drawing pad: Pointer Events ink on a white canvas, a stroke history for undo (sent with the image as
// strokes), and the pad's controls.
(() => {
  'use strict';

  // Black ink on white paper, so an export looks like a scanned page whatever the reader expects.
  const PAPER = '#ffffff';
  const INK = '#000000';
  // The server's limits on strokes (webapp/strokes.py): a drawing beyond them is thinned or sent without strokes.
  const STROKE_LIMITS = { points: 4000, strokes: 250, durationMs: 15 * 60 * 1000 };

  // Strokes are kept in coordinates relative to the canvas (0..1), so a resize can redraw them
  // crisply at the new backing-store size; each point has the time it was drawn (the event's timeStamp).
  class DrawingPad {
    constructor(canvas, { onChange = () => {}, onStrokeStart = () => {}, width = 1 / 14 } = {}) {
      this.canvas = canvas;
      this.ctx = canvas.getContext('2d');
      this.onChange = onChange;
      this.onStrokeStart = onStrokeStart;
      this.width = width; // a fraction of the canvas width, so the digit survives a downscale to 28x28
      this.strokes = [];
      this.current = null;
      this.pointerId = null;
      this.rect = null;

      canvas.addEventListener('pointerdown', (e) => this.#down(e));
      canvas.addEventListener('pointermove', (e) => this.#move(e));
      canvas.addEventListener('pointerup', (e) => this.#up(e));
      canvas.addEventListener('pointercancel', (e) => this.#up(e));
      canvas.addEventListener('lostpointercapture', (e) => this.#up(e));
      // A long press would otherwise open the context menu on touch screens mid-stroke.
      canvas.addEventListener('contextmenu', (e) => e.preventDefault());

      if ('ResizeObserver' in window) {
        new ResizeObserver(() => this.#resize()).observe(canvas);
      }
      this.#resize();
    }

    isEmpty() {
      return this.strokes.length === 0 && this.current === null;
    }

    toDataURL() {
      return this.canvas.toDataURL('image/png');
    }

    // The strokes still on the pad as the server keeps them, in Quick, Draw!'s raw shape: per stroke x and y in
    // whole pixels of the image toDataURL() gives (whole numbers cost the server less to read and store than
    // fractions), and t in ms since the first point. null without ink, or when the
    // drawing outgrows the server's limits on count or time (it then goes without strokes).
    strokeData() {
      const strokes = this.strokes;
      if (strokes.length === 0 || strokes.length > STROKE_LIMITS.strokes) return null;
      const total = strokes.reduce((sum, stroke) => sum + stroke.points.length, 0);
      // Past the point limit, every step-th point (and each stroke's last) keeps the shape.
      const step = Math.max(1, Math.ceil(total / (STROKE_LIMITS.points - 2 * strokes.length)));
      const { width, height } = this.canvas;
      const start = strokes[0].points[0].t;
      let last = 0;
      const data = strokes.map(({ points }) => {
        const kept = points.filter((_, i) => i % step === 0 || i === points.length - 1);
        const stroke = { x: [], y: [], t: [] };
        for (const point of kept) {
          // Never backwards, even if a browser's coalesced events disagree by a fraction of a millisecond.
          last = Math.max(last, Math.round(point.t - start));
          stroke.x.push(Math.round(point.x * width));
          stroke.y.push(Math.round(point.y * height));
          stroke.t.push(last);
        }
        return stroke;
      });
      return last <= STROKE_LIMITS.durationMs ? data : null;
    }

    clear() {
      const hadInk = !this.isEmpty();
      this.strokes = [];
      this.current = null;
      this.#redraw();
      if (hadInk) this.onChange({ reason: 'clear' });
    }

    undo() {
      if (this.strokes.length === 0) return;
      this.strokes.pop();
      this.#redraw();
      this.onChange({ reason: 'undo' });
    }

    #resize() {
      const { width } = this.canvas.getBoundingClientRect();
      if (width === 0) return; // hidden; keep the old backing store until it is laid out
      const size = Math.round(width * (window.devicePixelRatio || 1));
      if (size === this.canvas.width && size === this.canvas.height) return;
      this.canvas.width = size;
      this.canvas.height = size;
      this.#redraw();
    }

    #point(event) {
      const rect = this.rect;
      const x = (event.clientX - rect.left) / rect.width;
      const y = (event.clientY - rect.top) / rect.height;
      // Only a pen reports meaningful pressure; mouse and most fingers report a constant.
      const pressure = event.pointerType === 'pen' && event.pressure > 0 ? event.pressure : 0.5;
      return { x: Math.min(Math.max(x, 0), 1), y: Math.min(Math.max(y, 0), 1), pressure, t: event.timeStamp };
    }

    #down(event) {
      if (this.pointerId !== null) return; // a second finger must not start a second stroke
      if (event.pointerType === 'mouse' && event.button !== 0) return;
      event.preventDefault();
      // preventDefault also keeps focus where it was; a press elsewhere would normally take it away, and
      // leaving it on, say, Clear would make the next Enter clear the drawing instead of submitting it.
      if (document.activeElement instanceof HTMLElement) document.activeElement.blur();
      this.pointerId = event.pointerId;
      this.canvas.setPointerCapture(event.pointerId);
      this.rect = this.canvas.getBoundingClientRect();
      this.current = { width: this.width, points: [this.#point(event)] };
      this.onStrokeStart();
      this.#drawDot(this.current, this.current.points[0]);
    }

    #move(event) {
      if (event.pointerId !== this.pointerId || this.current === null) return;
      const coalesced = event.getCoalescedEvents?.() ?? [];
      const events = coalesced.length > 0 ? coalesced : [event];
      for (const e of events) {
        const points = this.current.points;
        const point = this.#point(e);
        const last = points[points.length - 1];
        if (point.x === last.x && point.y === last.y) continue;
        points.push(point);
        this.#drawSegment(this.current, last, point);
      }
    }

    #up(event) {
      if (event.pointerId !== this.pointerId) return;
      this.pointerId = null;
      if (this.current === null) return;
      // A cancelled touch (the browser took over a gesture) still keeps the ink already shown.
      this.strokes.push(this.current);
      this.current = null;
      this.onChange({ reason: 'stroke' });
    }

    #lineWidth(stroke, point) {
      // Pressure only nudges the width (+-25%), so a light pen still leaves a readable stroke.
      return stroke.width * this.canvas.width * (0.75 + 0.5 * point.pressure);
    }

    #drawDot(stroke, point) {
      const size = this.canvas.width;
      this.ctx.fillStyle = INK;
      this.ctx.beginPath();
      this.ctx.arc(point.x * size, point.y * size, this.#lineWidth(stroke, point) / 2, 0, Math.PI * 2);
      this.ctx.fill();
    }

    #drawSegment(stroke, from, to) {
      const size = this.canvas.width;
      const ctx = this.ctx;
      ctx.strokeStyle = INK;
      ctx.lineCap = 'round';
      ctx.lineJoin = 'round';
      ctx.lineWidth = this.#lineWidth(stroke, to);
      ctx.beginPath();
      ctx.moveTo(from.x * size, from.y * size);
      ctx.lineTo(to.x * size, to.y * size);
      ctx.stroke();
    }

    #redraw() {
      const ctx = this.ctx;
      ctx.fillStyle = PAPER;
      ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
      const strokes = this.current ? [...this.strokes, this.current] : this.strokes;
      for (const stroke of strokes) {
        this.#drawDot(stroke, stroke.points[0]);
        for (let i = 1; i < stroke.points.length; i += 1) {
          this.#drawSegment(stroke, stroke.points[i - 1], stroke.points[i]);
        }
      }
    }
  }

  const TEXT_INPUT_TYPES = new Set(['text', 'search', 'email', 'url', 'tel', 'password', 'number', 'date', 'time']);

  // Keys typed into a field belong to that field, never to the page's shortcuts.
  function isTypingTarget(element) {
    if (!(element instanceof Element)) return false;
    if (element.isContentEditable) return true;
    const tag = element.tagName;
    if (tag === 'TEXTAREA' || tag === 'SELECT') return true;
    return tag === 'INPUT' && TEXT_INPUT_TYPES.has(element.type);
  }

  // Enter on a button or link already activates it; a shortcut must not steal that.
  function ownsEnter(element) {
    return isTypingTarget(element) || (element instanceof Element && element.closest('button, a[href], summary') !== null);
  }

  // Wires a _canvas.html include: the pad, its Undo/Clear buttons, the width slider and keyboard shortcuts.
  function setUpPad(root, { onChange = () => {}, onStrokeStart = () => {}, onSubmit = null } = {}) {
    const canvas = root.querySelector('[data-pad-canvas]');
    const undoButton = root.querySelector('[data-pad-undo]');
    const clearButton = root.querySelector('[data-pad-clear]');
    const widthInput = root.querySelector('[data-pad-width]');

    const pad = new DrawingPad(canvas, {
      onStrokeStart,
      onChange: (change) => {
        syncButtons();
        onChange(change);
      },
    });

    function syncButtons() {
      undoButton.disabled = pad.strokes.length === 0;
      clearButton.disabled = pad.isEmpty();
    }

    undoButton.addEventListener('click', () => pad.undo());
    clearButton.addEventListener('click', () => pad.clear());

    if (widthInput) {
      const applyWidth = () => { pad.width = Number(widthInput.value) / 100; };
      widthInput.addEventListener('input', applyWidth);
      applyWidth();
    }

    document.addEventListener('keydown', (event) => {
      if (event.defaultPrevented || event.altKey) return;
      const target = event.target;
      const key = event.key || ''; // autofill sends keydown events without a key
      const mod = event.ctrlKey || event.metaKey;
      if (mod && !event.shiftKey && key.toLowerCase() === 'z') {
        if (isTypingTarget(target)) return;
        event.preventDefault();
        pad.undo();
      } else if (!mod && ['Escape', 'Delete', 'Backspace'].includes(key)) {
        if (isTypingTarget(target)) return;
        event.preventDefault();
        pad.clear();
      } else if (!mod && key === 'Enter' && onSubmit) {
        if (event.repeat || ownsEnter(target)) return;
        event.preventDefault();
        onSubmit();
      }
    });

    syncButtons();
    return pad;
  }

  window.Inkling = Object.assign(window.Inkling || {}, { DrawingPad, setUpPad, isTypingTarget });
})();
