// The contribute page: a drawing plus the digit it shows (or "not a digit"), saved to the pool the
// models learn from; it asks for the digit the dataset needs most and shows how the dataset grows.
(() => {
  'use strict';

  const { api, showAlert, setUpPad, isTypingTarget } = window.Inkling;

  const $ = (id) => document.getElementById(id);
  const text = JSON.parse($('contribute-messages').textContent);
  const fill = (template, values) => template.replace(/\{(\w+)\}/g, (_, key) => String(values[key] ?? ''));
  const form = $('contribute-form');
  const saveButton = $('save-button');
  const saveSpinner = $('save-spinner');
  const saveHint = $('save-hint');
  const alerts = $('contribute-alerts');
  const count = $('contribution-count');
  const radios = [...form.querySelectorAll('input[name="label"]')];
  // A label set other than digits: its class names (by index) and slug; digits show the index itself.
  const classes = form.dataset.classes ? JSON.parse(form.dataset.classes) : null;
  const labelSet = form.dataset.labelSet || null;
  const nameOf = (label) => (classes ? (classes[label] ?? String(label)) : String(label));
  const needsUrl = labelSet ? `/api/v1/dataset/needs?label_set=${encodeURIComponent(labelSet)}` : '/api/v1/dataset/needs';

  let saving = false;

  const pad = setUpPad(document.querySelector('[data-pad]'), {
    onChange: syncSave,
    onSubmit: () => {
      if (!saveButton.disabled) form.requestSubmit(saveButton);
    },
  });

  // A digit, 'none' for "not a digit", or null when nothing is chosen.
  function chosenLabel() {
    const checked = radios.find((radio) => radio.checked);
    if (!checked) return null;
    return checked.value === 'none' ? 'none' : Number(checked.value);
  }

  function syncSave() {
    const empty = pad.isEmpty();
    const label = chosenLabel();
    saveButton.disabled = saving || empty || label === null;
    if (saving) saveHint.textContent = text.saving;
    else if (empty && label === null) saveHint.textContent = text.draw_and_choose;
    else if (label === 'none') saveHint.textContent = empty ? text.draw_and_choose : text.ready_not_digit;
    else if (empty) saveHint.textContent = fill(text.now_draw, { digit: nameOf(label) });
    else if (label === null) saveHint.textContent = text.now_choose;
    else saveHint.textContent = fill(text.ready, { digit: nameOf(label) });
  }

  for (const radio of radios) radio.addEventListener('change', syncSave);

  // Number keys pick the label, so drawing and labelling need no trip to the mouse: the digit
  // itself, or 1-9 for the first nine classes of another label set.
  document.addEventListener('keydown', (event) => {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    if (!/^[0-9]$/.test(event.key || '') || isTypingTarget(event.target)) return;
    const wanted = classes ? String(Number(event.key) - 1) : event.key;
    const radio = radios.find((r) => r.value === wanted && !r.disabled);
    if (!radio) return;
    event.preventDefault();
    radio.checked = true;
    syncSave();
  });

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const label = chosenLabel();
    if (saving || pad.isEmpty() || label === null) return;

    saving = true;
    saveSpinner.hidden = false;
    syncSave();
    try {
      const body = label === 'none' ? { image: pad.toDataURL(), not_digit: true } : { image: pad.toDataURL(), label };
      const strokes = pad.strokeData();
      if (strokes) body.strokes = strokes;
      if (labelSet) body.label_set = labelSet;
      const answer = await api.post('/api/v1/drawings', body);
      showAlert(alerts, 'success', answer.not_digit ? text.saved_not_digit : fill(text.saved, { digit: nameOf(answer.label ?? label) }));
      pad.clear();
      for (const radio of radios) radio.checked = false;
      if (Number.isInteger(answer.client_contributions)) showCount(answer.client_contributions);
      loadNeeds();
    } catch (error) {
      // The drawing and its label stay as they were, so nothing is lost and Save can simply be tried again.
      const message = error.code === 'empty_drawing' ? text.no_ink : error.message;
      showAlert(alerts, error.code === 'empty_drawing' ? 'info' : 'danger', message);
    } finally {
      saving = false;
      saveSpinner.hidden = true;
      syncSave();
    }
  });

  function showCount(n) {
    count.dataset.count = String(n);
    if (n === 0) count.textContent = text.none_yet;
    else count.textContent = n === 1 ? text.count_one : fill(text.count_many, { count: n });
  }

  async function loadCount() {
    try {
      const me = await api.get('/api/v1/me');
      showCount(Number(me.contributions) || 0);
    } catch {
      // The count is a courtesy: saving still works without it, so say so quietly rather than raise an alert.
      count.textContent = text.count_failed;
    }
  }

  // The guided prompt: ask for the digit the dataset needs most, and pick it as the label.
  async function loadNeeds() {
    let needs;
    try {
      needs = await api.get(needsUrl);
    } catch {
      return; // contributing works without the prompt
    }
    const prompt = $('needs-prompt');
    prompt.hidden = false;
    prompt.dataset.digit = String(needs.digit);
    $('needs-digit').textContent = nameOf(needs.digit);
    $('needs-text').textContent = fill(prompt.dataset.template, { digit: nameOf(needs.digit) });
    $('needs-reason').textContent = needs.reason === 'fewest drawings so far'
      ? prompt.dataset.reasonFewest : prompt.dataset.reasonMisread;
    // The label is not picked for the visitor: a pre-filled answer invites saving whatever was
    // drawn under it, and wrong labels are what review has to catch.

    const growth = $('dataset-growth');
    growth.hidden = false;
    const recent = needs.growth.reduce((sum, day) => sum + day.drawings, 0);
    const summary = $('growth-summary');
    summary.textContent = fill(summary.dataset.template, { total: needs.total, confirmed: needs.confirmed, recent });
    const most = Math.max(1, ...needs.digits.map((d) => d.drawings));
    const rows = needs.digits.map((d) => {
      const row = document.createElement('div');
      row.className = 'growth-row';
      row.dataset.digit = String(d.digit);
      const name = document.createElement('span');
      name.className = 'growth-digit';
      name.textContent = nameOf(d.digit);
      const bar = document.createElement('progress');
      bar.max = most;
      bar.value = d.drawings;
      bar.setAttribute('aria-label', `${nameOf(d.digit)}: ${d.drawings}`);
      const value = document.createElement('span');
      value.className = 'growth-value small text-body-secondary';
      value.textContent = String(d.drawings);
      row.append(name, bar, value);
      return row;
    });
    $('growth-digits').replaceChildren(...rows);
  }

  syncSave();
  loadCount();
  loadNeeds();
})();
