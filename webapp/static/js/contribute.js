// The contribute page: a drawing plus the digit it shows, saved to the pool the models learn from.
(() => {
  'use strict';

  const { api, showAlert, setUpPad, isTypingTarget } = window.Inkling;

  const $ = (id) => document.getElementById(id);
  const form = $('contribute-form');
  const saveButton = $('save-button');
  const saveSpinner = $('save-spinner');
  const saveHint = $('save-hint');
  const alerts = $('contribute-alerts');
  const count = $('contribution-count');
  const radios = [...form.querySelectorAll('input[name="label"]')];

  let saving = false;

  const pad = setUpPad(document.querySelector('[data-pad]'), {
    onChange: syncSave,
    onSubmit: () => {
      if (!saveButton.disabled) form.requestSubmit(saveButton);
    },
  });

  function chosenLabel() {
    const checked = radios.find((radio) => radio.checked);
    return checked ? Number(checked.value) : null;
  }

  function syncSave() {
    const empty = pad.isEmpty();
    const label = chosenLabel();
    saveButton.disabled = saving || empty || label === null;
    if (saving) saveHint.textContent = 'Saving…';
    else if (empty && label === null) saveHint.textContent = 'Draw a digit and choose its label to save.';
    else if (empty) saveHint.textContent = `Now draw your ${label}.`;
    else if (label === null) saveHint.textContent = 'Now choose which digit it is.';
    else saveHint.textContent = `Ready to save as a ${label}.`;
  }

  for (const radio of radios) radio.addEventListener('change', syncSave);

  // Number keys pick the label, so drawing and labelling need no trip to the mouse.
  document.addEventListener('keydown', (event) => {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    if (!/^[0-9]$/.test(event.key || '') || isTypingTarget(event.target)) return;
    const radio = radios.find((r) => r.value === event.key);
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
      const answer = await api.post('/api/v1/drawings', { image: pad.toDataURL(), label });
      showAlert(alerts, 'success', `Saved your ${answer.label ?? label}. Thank you!`);
      pad.clear();
      for (const radio of radios) radio.checked = false;
      if (Number.isInteger(answer.client_contributions)) showCount(answer.client_contributions);
    } catch (error) {
      // The drawing and its label stay as they were, so nothing is lost and Save can simply be tried again.
      const message = error.code === 'empty_drawing'
        ? 'Inkling could not find any ink in that drawing. Try drawing it bigger or bolder.'
        : error.message;
      showAlert(alerts, error.code === 'empty_drawing' ? 'info' : 'danger', message);
    } finally {
      saving = false;
      saveSpinner.hidden = true;
      syncSave();
    }
  });

  function showCount(n) {
    count.dataset.count = String(n);
    if (n === 0) {
      count.textContent = 'You have not contributed any drawings yet.';
      return;
    }
    const strong = document.createElement('strong');
    strong.textContent = String(n);
    count.replaceChildren('You have contributed ', strong, n === 1 ? ' drawing.' : ' drawings.');
  }

  async function loadCount() {
    try {
      const me = await api.get('/api/v1/me');
      showCount(Number(me.contributions) || 0);
    } catch {
      // The count is a courtesy: saving still works without it, so say so quietly rather than raise an alert.
      count.textContent = 'Your contribution count could not be loaded.';
    }
  }

  syncSave();
  loadCount();
})();
