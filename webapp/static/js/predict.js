// The draw & predict page: live predictions from both networks while drawing, and the rating that follows.
(() => {
  'use strict';

  const { api, isAbort, showAlert, clearAlert, setUpPad } = window.Inkling;
  const MODELS = ['fnn', 'cnn'];
  const LIVE_DELAY_MS = 300;
  const percent = new Intl.NumberFormat(undefined, { style: 'percent', maximumFractionDigits: 1 });

  const $ = (id) => document.getElementById(id);
  const text = JSON.parse($('predict-messages').textContent);
  const fill = (template, values) => template.replace(/\{(\w+)\}/g, (_, key) => String(values[key] ?? ''));
  const alerts = $('predict-alerts');
  // A label set other than digits: its class names (by index) and slug; digits show the index itself.
  const classes = $('results').dataset.classes ? JSON.parse($('results').dataset.classes) : null;
  const labelSet = $('results').dataset.labelSet || null;
  const nameOf = (label) => (classes ? (classes[label] ?? String(label)) : String(label));
  const summary = $('prediction-summary');
  const results = $('results');
  const predictButton = $('predict-button');
  const spinner = $('predict-spinner');
  const liveToggle = $('live-predict');
  const preview = $('preview-image');
  const previewEmpty = $('preview-empty');
  const rating = $('rating');
  const ratingControls = $('rating-controls');

  let timer = null;
  let inFlight = null;
  // Answers can arrive out of order; only the newest request may touch the page.
  let sequence = 0;
  let current = null; // { id, labels: {fnn, cnn} } of the prediction being rated

  const pad = setUpPad(document.querySelector('[data-pad]'), {
    onStrokeStart: () => {
      cancelPending();
      drawingChanged();
    },
    onChange: () => {
      drawingChanged();
      if (pad.isEmpty()) {
        cancelPending();
        resetResults();
        clearAlert(alerts);
      } else if (liveToggle.checked) {
        schedule();
      }
    },
    onSubmit: () => predict(),
  });

  predictButton.addEventListener('click', () => predict());
  liveToggle.addEventListener('change', () => {
    if (liveToggle.checked && !pad.isEmpty() && results.dataset.state !== 'done') schedule();
  });

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(() => predict({ live: true }), LIVE_DELAY_MS);
  }

  function cancelPending() {
    clearTimeout(timer);
    timer = null;
    inFlight?.abort();
    inFlight = null;
    setBusy(false);
  }

  // The answers on screen no longer describe the drawing, so they cannot be rated either.
  function drawingChanged() {
    current = null;
    rating.hidden = true;
    if (results.dataset.state === 'done') setState('stale');
  }

  async function predict({ live = false } = {}) {
    clearTimeout(timer);
    if (pad.isEmpty()) {
      if (!live) showAlert(alerts, 'info', text.empty_hint);
      return;
    }
    inFlight?.abort();
    const controller = new AbortController();
    inFlight = controller;
    const mine = ++sequence;
    setBusy(true);
    try {
      const body = { image: pad.toDataURL() };
      const strokes = pad.strokeData();
      if (strokes) body.strokes = strokes;
      if (labelSet) body.label_set = labelSet;
      const answer = await api.post('/api/v1/predictions', body, { signal: controller.signal });
      if (mine !== sequence) return;
      clearAlert(alerts);
      render(answer);
    } catch (error) {
      if (isAbort(error) || mine !== sequence) return;
      if (error.code === 'empty_drawing') {
        resetResults();
        showAlert(alerts, 'info', text.empty_hint);
      } else {
        setState(results.dataset.state === 'idle' ? 'idle' : 'stale');
        showAlert(alerts, 'danger', error.message);
      }
    } finally {
      // Only the request still on record may end the busy state; a newer one may be running.
      if (inFlight === controller) {
        inFlight = null;
        setBusy(false);
      }
    }
  }

  function setBusy(busy) {
    spinner.hidden = !busy;
    results.setAttribute('aria-busy', String(busy));
  }

  function setState(state) {
    results.dataset.state = state;
  }

  function render(answer) {
    const predictions = answer.predictions || {};
    const spoken = [];
    for (const model of MODELS) {
      const prediction = predictions[model];
      renderCard(model, prediction, { unavailable: !prediction });
      const name = model.toUpperCase();
      spoken.push(prediction
        ? fill(text.says, { model: name, digit: nameOf(prediction.label), confidence: percent.format(Number(prediction.confidence) || 0) })
        : fill(text.no_answer, { model: name }));
    }
    summary.textContent = spoken.join(' ');

    if (answer.preview) {
      preview.src = answer.preview;
      preview.hidden = false;
      previewEmpty.hidden = true;
    }
    setState('done');
    offerRating(answer.id, predictions);
  }

  // With no prediction the card goes blank: '?' before any answer, 'Unavailable' when the server sent none.
  function renderCard(model, prediction, { unavailable = false } = {}) {
    const card = $(`card-${model}`);
    card.classList.toggle('is-unavailable', unavailable);
    $(`${model}-label`).textContent = prediction ? nameOf(prediction.label) : (unavailable ? '–' : '?');
    $(`${model}-confidence`).textContent = prediction
      ? percent.format(Number(prediction.confidence) || 0)
      : (unavailable ? text.unavailable : '–');
    $(`${model}-version`).textContent = prediction?.model_version != null ? `v${prediction.model_version}` : '–';

    const probabilities = prediction?.probabilities || [];
    const top = prediction ? prediction.label : -1;
    for (const row of card.querySelectorAll('.prob-row')) {
      const digit = Number(row.dataset.digit);
      const p = Number(probabilities[digit]) || 0;
      const value = prediction ? percent.format(p) : '–';
      row.classList.toggle('is-top', digit === top);
      row.querySelector('.prob-fill').style.width = `${(p * 100).toFixed(1)}%`;
      row.querySelector('.prob-value').textContent = value;
      const track = row.querySelector('.prob-track');
      track.setAttribute('aria-valuenow', (p * 100).toFixed(1));
      track.setAttribute('aria-valuetext', digit === top ? fill(text.top_answer, { value }) : value);
    }
  }

  function resetResults() {
    sequence += 1; // anything still on its way is now stale
    for (const model of MODELS) renderCard(model, null);
    preview.hidden = true;
    preview.removeAttribute('src');
    previewEmpty.hidden = false;
    summary.textContent = '';
    current = null;
    rating.hidden = true;
    setState('idle');
  }

  // --- Rating -------------------------------------------------------------------------------

  function offerRating(id, predictions) {
    // The server answers without an id when it could not store the drawing: nothing to rate.
    if (!id) {
      rating.hidden = true;
      return;
    }
    const labels = {};
    for (const model of MODELS) {
      if (predictions[model]) labels[model] = predictions[model].label;
    }
    current = { id, labels };
    const distinct = [...new Set(Object.values(labels))];
    const agreed = distinct.length === 1 ? distinct[0] : null;

    $('rating-agree').hidden = agreed === null;
    $('rating-disagree').hidden = distinct.length !== 2;
    $('rate-right').dataset.label = agreed ?? '';
    rating.querySelector('[data-role="agreed-label"]').textContent = agreed === null ? '' : nameOf(agreed);
    for (const model of MODELS) {
      $(`rate-${model}`).dataset.label = labels[model] ?? '';
      rating.querySelector(`[data-role="${model}-choice"]`).textContent = model in labels ? nameOf(labels[model]) : '';
    }
    $('rating-picker-title').textContent = distinct.length === 2 ? text.neither : text.wrong;
    for (const button of rating.querySelectorAll('.rate-digit')) {
      // Picking a label one of the models already gave is what the buttons above are for.
      button.disabled = distinct.includes(Number(button.dataset.label));
    }
    ratingControls.disabled = false;
    rating.dataset.rated = 'false';
    rating.hidden = false;
  }

  rating.addEventListener('click', (event) => {
    const button = event.target.closest('button[data-label]');
    if (!button || button.disabled || ratingControls.disabled || current === null || button.dataset.label === '') return;
    rate(current, Number(button.dataset.label));
  });

  // Scribbles and letters: kept out of training, and shown to admins.
  $('rate-not-digit').addEventListener('click', async () => {
    if (ratingControls.disabled || current === null) return;
    const prediction = current;
    ratingControls.disabled = true;
    try {
      await api.post(`/api/v1/drawings/${encodeURIComponent(prediction.id)}/not-a-digit`, {});
      if (current !== prediction) return;
      rating.dataset.rated = 'not-digit';
      showAlert(alerts, 'success', text.flagged);
    } catch (error) {
      if (current !== prediction) return;
      ratingControls.disabled = false;
      showAlert(alerts, 'danger', error.message);
    }
  });

  async function rate(prediction, label) {
    ratingControls.disabled = true;
    try {
      const answer = await api.post(`/api/v1/predictions/${encodeURIComponent(prediction.id)}/feedback`, { label });
      if (current !== prediction) return;
      rating.dataset.rated = 'true';
      showAlert(alerts, 'success', thanks(answer.label ?? label, answer.correct || {}));
    } catch (error) {
      if (current !== prediction) return;
      // A 409 means this prediction was already rated, so offering the buttons again would only fail again.
      ratingControls.disabled = error.status === 409;
      showAlert(alerts, 'danger', error.message);
    }
  }

  function thanks(label, correct) {
    const verdicts = MODELS.filter((model) => model in correct)
      .map((model) => fill(correct[model] ? text.was_right : text.was_wrong, { model: model.toUpperCase() }));
    if (verdicts.length === 0) return fill(text.thanks, { digit: nameOf(label) });
    return fill(text.thanks_verdicts, { digit: nameOf(label), verdicts: verdicts.join(text.separator) });
  }
})();
