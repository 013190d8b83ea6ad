// The admin pages: keyboard review, the retrain button with live progress, activation and rollback.
(() => {
  'use strict';

  const { api, showAlert } = window.Inkling;
  const alerts = document.getElementById('admin-alerts');
  // The dashboard's sentences in the page's language; the review page needs none.
  const text = JSON.parse(document.getElementById('admin-messages')?.textContent || '{}');
  const isTyping = (target) => target && (target.isContentEditable || /^(INPUT|SELECT|TEXTAREA)$/.test(target.tagName))
    && !(target.classList && target.classList.contains('review-select'));

  // ---- review queue ------------------------------------------------------------------------
  const grid = document.getElementById('review-grid');
  if (grid) {
    const cards = [...grid.querySelectorAll('.review-card')];
    const status = document.getElementById('review-status');
    let current = cards.findIndex((card) => !card.classList.contains('is-done'));

    const focus = (index) => {
      if (!cards.length) return;
      current = Math.max(0, Math.min(cards.length - 1, index));
      cards.forEach((card, i) => card.classList.toggle('is-current', i === current));
      cards[current].focus({ preventScroll: false });
    };
    const columns = () => {
      if (cards.length < 2) return 1;
      const top = cards[0].offsetTop;
      const index = cards.findIndex((card) => card.offsetTop !== top);
      return index === -1 ? cards.length : index;
    };
    const selected = () => cards.filter((card) => card.classList.contains('is-selected'));
    const toggle = (card, on) => {
      const value = on ?? !card.classList.contains('is-selected');
      card.classList.toggle('is-selected', value);
      card.querySelector('.review-select').checked = value;
    };
    const nextOpen = (from) => {
      for (let i = from + 1; i < cards.length; i += 1) if (!cards[i].classList.contains('is-done')) return i;
      return Math.min(from + 1, cards.length - 1);
    };

    async function decide(targets, decision) {
      const items = targets.map((card) => {
        const item = { id: card.dataset.id, status: decision.status };
        if (decision.label !== undefined) item.label = decision.label;
        if (decision.notDigit) item.not_digit = true;
        return item;
      });
      try {
        const answer = await api.post('/api/v1/drawings/review', { items });
        for (const row of answer.items) {
          const card = cards.find((c) => c.dataset.id === row.id);
          card.dataset.status = row.status;
          card.dataset.label = row.label ?? '';
          card.classList.add('is-done');
          toggle(card, false);
          card.querySelector('.review-label-value').textContent = row.class_name ?? row.label ?? '–';
          const badge = card.querySelector('.review-badge');
          badge.textContent = row.status;
          badge.className = `badge review-badge text-bg-${row.status === 'confirmed' ? 'success' : 'danger'}`;
        }
        status.textContent = `${answer.items.length} ${grid.dataset.done}`;
        if (cards.every((card) => card.classList.contains('is-done'))) {
          document.getElementById('page-next')?.focus();
        }
        return true;
      } catch (error) {
        showAlert(alerts, 'danger', error.message);
        return false;
      }
    }

    cards.forEach((card, index) => {
      card.addEventListener('click', (event) => {
        if (event.target.classList.contains('review-select')) {
          toggle(card, event.target.checked);
        }
        focus(index);
      });
    });

    document.addEventListener('keydown', async (event) => {
      if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey || isTyping(event.target)) return;
      if (!cards.length) return;
      const card = cards[current] || cards[0];
      const key = event.key;
      let handled = true;
      if (key === 'ArrowRight' || key === 'l' || key === 'j') focus(current + 1);
      else if (key === 'ArrowLeft' || key === 'h' || key === 'k') focus(current - 1);
      else if (key === 'ArrowDown') focus(current + columns());
      else if (key === 'ArrowUp') focus(current - columns());
      else if (key === 'x' || key === ' ') toggle(card);
      else if (key === 'a') cards.forEach((c) => toggle(c, !c.classList.contains('is-done')));
      else if (key === 'C' || key === 'R') {
        const targets = selected();
        if (targets.length) await decide(targets, { status: key === 'C' ? 'confirmed' : 'rejected' });
      } else if (key === 'c' || key === 'r' || key === 'n' || /^[0-9]$/.test(key)) {
        let decision;
        if (key === 'c') decision = { status: 'confirmed' };
        else if (key === 'r') decision = { status: 'rejected' };
        else if (key === 'n') decision = { status: 'rejected', notDigit: true };
        else decision = { status: 'confirmed', label: Number(key) };
        if (await decide([card], decision)) focus(nextOpen(current));
      } else handled = false;
      if (handled) event.preventDefault();
    });

    if (current >= 0) focus(current);
  }

  // ---- dashboard: retrain, live progress, activation -----------------------------------------
  const retrain = document.getElementById('retrain-button');
  const panel = document.getElementById('run-panel');

  function showRun(run) {
    panel.hidden = false;
    document.getElementById('run-id').textContent = run.id.slice(0, 8);
    document.getElementById('run-status').textContent = run.status;
    const percent = Number(run.progress?.percent ?? (run.status === 'succeeded' || run.status === 'rejected' ? 100 : 0));
    const bar = document.getElementById('run-bar');
    bar.style.width = `${percent}%`;
    bar.textContent = `${percent}%`;
    document.getElementById('run-progress').setAttribute('aria-valuenow', String(percent));
    const progress = run.progress || {};
    const parts = [progress.phase, progress.model && progress.model.toUpperCase(),
      progress.epoch !== undefined && progress.epochs
        ? text.epoch.replace('{epoch}', progress.epoch).replace('{epochs}', progress.epochs) : null];
    document.getElementById('run-phase').textContent = parts.filter(Boolean).join(' · ');
    const result = document.getElementById('run-result');
    result.replaceChildren();
    if (run.error) result.textContent = run.error;
    for (const [name, entry] of Object.entries(run.result || {})) {
      const line = document.createElement('div');
      line.dataset.model = name;
      line.textContent = `${name.toUpperCase()} ${entry.decision}${entry.version ? ` v${entry.version}` : ''}: ${entry.reason || ''}`;
      result.append(line);
    }
  }

  async function watch(id) {
    for (;;) {
      let run;
      try {
        run = await api.get(`/api/v1/training-runs/${id}`);
      } catch (error) {
        showAlert(alerts, 'warning', error.message);
        await new Promise((resolve) => setTimeout(resolve, 5000));
        continue;
      }
      showRun(run);
      if (!['queued', 'running'].includes(run.status)) {
        retrain.disabled = false;
        panel.dataset.finished = run.status;
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }

  if (retrain) {
    retrain.addEventListener('click', async () => {
      retrain.disabled = true;
      try {
        const run = await api.post('/api/v1/training-runs', { label_set: retrain.dataset.labelSet || 'digits' });
        showRun(run);
        watch(run.id);
      } catch (error) {
        retrain.disabled = false;
        showAlert(alerts, 'danger', error.message);
      }
    });
    if (retrain.dataset.run) watch(retrain.dataset.run);
  }

  for (const button of document.querySelectorAll('[data-activate]')) {
    button.addEventListener('click', async () => {
      const [name, version] = button.dataset.activate.split('/');
      button.disabled = true;
      try {
        await api.post(`/api/v1/models/${name}/versions/${version}/activate`,
          { reason: 'activated from the dashboard', label_set: retrain?.dataset.labelSet || 'digits' });
        window.location.reload();
      } catch (error) {
        button.disabled = false;
        showAlert(alerts, 'danger', error.message);
      }
    });
  }
})();
