// The review page's replay: a drawing's strokes drawn again on a small canvas, in the order and at the pace they were drawn.
(() => {
  'use strict';

  const { api, showAlert } = window.Inkling;
  // A slow drawing is sped up to this, so a reviewer never waits long for one.
  const LONGEST_REPLAY_MS = 3000;
  // The drawing pad's default pen, as a fraction of the canvas.
  const PEN = 1 / 14;
  const alerts = document.getElementById('admin-alerts');
  const loaded = new Map();

  async function strokesOf(button) {
    const url = button.dataset.strokesUrl;
    if (!loaded.has(url)) loaded.set(url, api.get(url));
    try {
      return await loaded.get(url);
    } catch (error) {
      loaded.delete(url); // a later click may try again
      throw error;
    }
  }

  function canvasFor(card) {
    let canvas = card.querySelector('.review-replay-canvas');
    if (canvas) return canvas;
    const image = card.querySelector('.review-image');
    canvas = document.createElement('canvas');
    canvas.className = 'review-image review-replay-canvas';
    canvas.width = canvas.height = 192;
    image.after(canvas);
    image.hidden = true;
    return canvas;
  }

  // Everything drawn up to `until` ms: each stroke as far as its points have come.
  function drawUntil(canvas, drawing, until) {
    const ctx = canvas.getContext('2d');
    const scale = canvas.width / Math.max(drawing.width, drawing.height);
    ctx.fillStyle = '#ffffff';
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.strokeStyle = ctx.fillStyle = '#000000';
    ctx.lineWidth = Math.max(1, canvas.width * PEN);
    ctx.lineCap = ctx.lineJoin = 'round';
    for (const stroke of drawing.strokes) {
      if (stroke.t[0] > until) break;
      ctx.beginPath();
      ctx.moveTo(stroke.x[0] * scale, stroke.y[0] * scale);
      // A one-point stroke is a dot: a zero-length line with round caps.
      ctx.lineTo(stroke.x[0] * scale, stroke.y[0] * scale);
      for (let i = 1; i < stroke.t.length && stroke.t[i] <= until; i += 1) {
        ctx.lineTo(stroke.x[i] * scale, stroke.y[i] * scale);
      }
      ctx.stroke();
    }
  }

  function animate(canvas, drawing) {
    const strokes = drawing.strokes;
    const last = strokes[strokes.length - 1];
    const duration = last.t[last.t.length - 1];
    const speed = Math.max(1, duration / LONGEST_REPLAY_MS);
    canvas.dataset.state = 'playing';
    return new Promise((resolve) => {
      let started = null;
      const frame = (now) => {
        started ??= now;
        const until = (now - started) * speed;
        drawUntil(canvas, drawing, until);
        if (until >= duration) {
          canvas.dataset.state = 'done';
          resolve();
        } else {
          requestAnimationFrame(frame);
        }
      };
      requestAnimationFrame(frame);
    });
  }

  // The buttons come disabled, and work once this script has wired them.
  for (const button of document.querySelectorAll('[data-replay]')) {
    button.disabled = false;
    button.addEventListener('click', async () => {
      button.disabled = true;
      try {
        const drawing = await strokesOf(button);
        await animate(canvasFor(button.closest('.review-card')), drawing);
      } catch (error) {
        showAlert(alerts, 'danger', error.message);
      } finally {
        button.disabled = false;
      }
    });
  }
})();
