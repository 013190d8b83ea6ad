// The models page: every version of both networks, their accuracy from ratings, and the drawings collected.
(() => {
  'use strict';

  const { api, showAlert } = window.Inkling;

  const MODEL_TITLES = { fnn: 'Fully-connected (FNN)', cnn: 'Convolutional (CNN)' };
  const STATUS_STYLES = {
    active: 'text-bg-success',
    candidate: 'text-bg-info',
    pending: 'text-bg-info',
    training: 'text-bg-warning',
    confirmed: 'text-bg-success',
    rejected: 'text-bg-danger',
    failed: 'text-bg-danger',
  };
  const percent = new Intl.NumberFormat(undefined, { style: 'percent', minimumFractionDigits: 1, maximumFractionDigits: 2 });
  const number = new Intl.NumberFormat(undefined, { maximumSignificantDigits: 4 });
  const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

  const $ = (id) => document.getElementById(id);
  const alerts = $('models-alerts');

  // Builds elements with textContent only: names and metrics come from the server and are never parsed as HTML.
  function el(tag, { className, text, attrs } = {}, children = []) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    node.append(...children);
    return node;
  }

  const titleOf = (name) => MODEL_TITLES[name] || name.toUpperCase();
  const humanize = (key) => key.replace(/_/g, ' ').replace(/^./, (c) => c.toUpperCase());

  function fill(container, ...children) {
    container.replaceChildren(...children);
    container.setAttribute('aria-busy', 'false');
  }

  function muted(text) {
    return el('p', { className: 'text-body-secondary', text });
  }

  function badge(status) {
    return el('span', { className: `badge ${STATUS_STYLES[status] || 'text-bg-secondary'}`, text: status });
  }

  function formatMetric(key, value) {
    if (typeof value !== 'number') return String(value);
    // Accuracies and other rates are fractions; counts and losses are shown as they are.
    if (/accuracy|rate|precision|recall|f1/i.test(key) && value >= 0 && value <= 1) return percent.format(value);
    return number.format(value);
  }

  function created(iso) {
    if (!iso) return el('span', { text: '–' });
    const date = new Date(iso);
    return el('time', { attrs: { datetime: iso }, text: Number.isNaN(date.getTime()) ? iso : dateTime.format(date) });
  }

  // --- Versions -----------------------------------------------------------------------------

  function versionsTable(model) {
    const versions = [...(model.versions || [])].sort((a, b) => b.version - a.version);
    const heading = el('h3', { className: 'h6 mt-3', text: titleOf(model.name) });
    if (versions.length === 0) return [heading, muted('No versions yet.')];

    const head = el('thead', {}, [el('tr', {}, ['Version', 'Status', 'Created', 'Parent', 'MNIST accuracy',
      'Fine-tuning samples', 'Other metrics'].map((text) => el('th', { text, attrs: { scope: 'col' } })))]);
    const rows = versions.map((version) => {
      const metrics = version.metrics || {};
      const accuracy = metrics.mnist_test_accuracy;
      const others = Object.entries(metrics).filter(([key]) => key !== 'mnist_test_accuracy');
      const status = el('td', {}, [badge(version.status || 'unknown')]);
      if (version.active && version.status !== 'active') status.append(' ', badge('active'));
      // Why a version was rejected or retired is worth seeing next to the verdict.
      if (version.reason) status.append(el('div', { className: 'small text-body-secondary', text: version.reason }));
      return el('tr', { className: version.active ? 'is-active-version' : '', attrs: { 'data-version': version.version } }, [
        el('th', { text: `v${version.version}`, attrs: { scope: 'row' } }),
        status,
        el('td', {}, [created(version.created)]),
        el('td', { text: version.parent == null ? '–' : `v${version.parent}` }),
        el('td', { className: 'text-end', text: typeof accuracy === 'number' ? percent.format(accuracy) : '–' }),
        el('td', { className: 'text-end', text: version.samples == null ? '–' : number.format(version.samples) }),
        el('td', { className: 'small' }, others.length === 0 ? ['–'] : [el('ul', { className: 'list-unstyled mb-0' },
          others.map(([key, value]) => el('li', { text: `${humanize(key)}: ${formatMetric(key, value)}` })))]),
      ]);
    });
    const table = el('table', { className: 'table table-sm table-striped align-middle mb-0', attrs: { id: `versions-${model.name}` } }, [
      el('caption', { className: 'visually-hidden', text: `Versions of the ${titleOf(model.name)} network` }),
      head,
      el('tbody', {}, rows),
    ]);
    return [heading, el('div', { className: 'table-responsive' }, [table])];
  }

  function renderModels(data) {
    const models = data.models || [];
    if (models.length === 0) {
      fill($('model-tables'), muted('No models have been trained yet.'));
      return;
    }
    fill($('model-tables'), ...models.flatMap(versionsTable));
  }

  // --- Stats --------------------------------------------------------------------------------

  function accuracyCard(name, figures) {
    const rated = figures?.rated || 0;
    const body = el('div', { className: 'card-body' }, [el('h3', { className: 'h6 card-title', text: titleOf(name) })]);
    if (rated === 0 || figures.accuracy == null) {
      body.append(muted('No ratings yet. Rate a prediction on the Draw page to start the count.'));
    } else {
      body.append(
        el('p', { className: 'display-6 mb-1', text: percent.format(figures.accuracy), attrs: { 'data-role': 'accuracy' } }),
        el('p', { className: 'text-body-secondary mb-0',
          text: `right on ${number.format(figures.correct)} of ${number.format(rated)} rated drawings` }),
      );
    }
    return el('div', { className: 'col' }, [el('div', { className: 'card h-100', attrs: { id: `accuracy-${name}` } }, [body])]);
  }

  function countList(title, counts) {
    const entries = Object.entries(counts || {}).filter(([, n]) => n > 0);
    const items = entries.length === 0
      ? [el('li', { className: 'list-inline-item text-body-secondary', text: 'none' })]
      : entries.map(([key, n]) => el('li', { className: 'list-inline-item' }, [badge(key), ` ${number.format(n)}`]));
    return el('div', { className: 'col-12 col-sm-6' }, [
      el('h3', { className: 'h6', text: title }),
      el('ul', { className: 'list-inline count-list mb-0' }, items),
    ]);
  }

  function labelChart(byLabel) {
    const counts = Array.from({ length: 10 }, (_, digit) => Number(byLabel?.[digit] ?? byLabel?.[String(digit)]) || 0);
    const most = Math.max(...counts, 1);
    const rows = counts.map((n, digit) => {
      const bar = el('div', { className: 'progress-bar label-fill' });
      bar.style.width = `${(100 * n) / most}%`;
      return el('li', { className: 'prob-row' }, [
        el('span', { className: 'prob-digit', text: String(digit), attrs: { 'aria-hidden': 'true' } }),
        el('div', { className: 'progress prob-track', attrs: { role: 'progressbar', 'aria-label': `Digit ${digit}`,
          'aria-valuemin': '0', 'aria-valuemax': String(most), 'aria-valuenow': String(n),
          'aria-valuetext': `${number.format(n)} drawings` } }, [bar]),
        el('span', { className: 'prob-value', text: number.format(n), attrs: { 'aria-hidden': 'true' } }),
      ]);
    });
    return el('div', { className: 'col-12 col-md-6' }, [
      el('h3', { className: 'h6', text: 'By digit' }),
      el('ol', { className: 'prob-bars list-unstyled mb-0', attrs: { id: 'drawings-by-label' } }, rows),
    ]);
  }

  function renderStats(data) {
    const accuracy = data.accuracy || {};
    const names = [...new Set(['fnn', 'cnn', ...Object.keys(accuracy)])];
    fill($('accuracy-cards'), ...names.map((name) => accuracyCard(name, accuracy[name])));

    const drawings = data.drawings || {};
    const total = Number(drawings.total) || 0;
    if (total === 0) {
      fill($('dataset-stats'), muted('No drawings collected yet. Add one on the Contribute page.'));
      return;
    }
    fill($('dataset-stats'),
      el('p', {}, [el('strong', { text: number.format(total), attrs: { id: 'drawings-total' } }),
        total === 1 ? ' drawing in all.' : ' drawings in all.']),
      el('div', { className: 'row g-4' }, [
        labelChart(drawings.by_label),
        el('div', { className: 'col-12 col-md-6' }, [el('div', { className: 'row g-3' }, [
          countList('By status', drawings.by_status),
          countList('By source', drawings.by_source),
        ])]),
      ]),
    );
  }

  // --- Load ---------------------------------------------------------------------------------

  // Each half of the page stands on its own, so one failing request still leaves the other visible.
  async function load() {
    const [models, stats] = await Promise.allSettled([api.get('/api/v1/models'), api.get('/api/v1/stats')]);
    const problems = [];
    if (models.status === 'fulfilled') {
      renderModels(models.value);
    } else {
      fill($('model-tables'), muted('Model versions are unavailable.'));
      problems.push(`Model versions could not be loaded: ${models.reason.message}`);
    }
    if (stats.status === 'fulfilled') {
      renderStats(stats.value);
    } else {
      fill($('accuracy-cards'), el('div', { className: 'col' }, [muted('Accuracy is unavailable.')]));
      fill($('dataset-stats'), muted('Drawing counts are unavailable.'));
      problems.push(`Statistics could not be loaded: ${stats.reason.message}`);
    }
    if (problems.length > 0) showAlert(alerts, 'danger', problems.join(' '));
  }

  load();
})();
