// The models page: every version of both networks, their accuracy from ratings, and the drawings collected.
(() => {
  'use strict';

  const { api, showAlert } = window.Inkling;

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
  const text = JSON.parse($('models-messages').textContent);
  const format = (template, values) => template.replace(/\{(\w+)\}/g, (_, key) => String(values[key] ?? ''));
  // A count's message in the page's language: forms for "one", "few" and "many", the last also standing for "other".
  const plurals = new Intl.PluralRules(document.documentElement.lang || undefined);
  const formOf = (forms, n) => forms[plurals.select(n)] ?? forms.many;
  const counted = (forms, n, values = {}) => format(formOf(forms, n), { ...values, count: number.format(n) });
  // Names, statuses and sources are the API's words; shown in the page's language when it has them.
  const wordFor = (words, key, otherwise = key) => (Object.hasOwn(words, key) ? words[key] : otherwise);

  // Builds elements with textContent only: names and metrics come from the server and are never parsed as HTML.
  function el(tag, { className, text, attrs } = {}, children = []) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    node.append(...children);
    return node;
  }

  const titleOf = (name) => wordFor(text.titles, name, name.toUpperCase());
  const humanize = (key) => wordFor(text.metrics, key, key.replace(/_/g, ' ').replace(/^./, (c) => c.toUpperCase()));

  function fill(container, ...children) {
    container.replaceChildren(...children);
    container.setAttribute('aria-busy', 'false');
  }

  function muted(message) {
    return el('p', { className: 'text-body-secondary', text: message });
  }

  function badge(status, words = text.statuses) {
    return el('span', { className: `badge ${STATUS_STYLES[status] || 'text-bg-secondary'}`, text: wordFor(words, status) });
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

  // A sentence with the count set in its own element: the text around it, in the translation's order.
  function withCount(template, countElement) {
    const [before, ...after] = template.split('{count}');
    return after.length === 0 ? [template] : [before, countElement, after.join('{count}')];
  }

  // --- Versions -----------------------------------------------------------------------------

  function versionsTable(model) {
    const versions = [...(model.versions || [])].sort((a, b) => b.version - a.version);
    const heading = el('h3', { className: 'h6 mt-3', text: titleOf(model.name) });
    if (versions.length === 0) return [heading, muted(text.no_versions)];

    const head = el('thead', {}, [el('tr', {}, text.columns.map((column) => el('th', { text: column, attrs: { scope: 'col' } })))]);
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
      el('caption', { className: 'visually-hidden', text: format(text.versions_of, { model: titleOf(model.name) }) }),
      head,
      el('tbody', {}, rows),
    ]);
    return [heading, el('div', { className: 'table-responsive' }, [table])];
  }

  function renderModels(data) {
    const models = data.models || [];
    if (models.length === 0) {
      fill($('model-tables'), muted(text.no_models));
      return;
    }
    fill($('model-tables'), ...models.flatMap(versionsTable));
  }

  // --- Stats --------------------------------------------------------------------------------

  function accuracyCard(name, figures) {
    const rated = figures?.rated || 0;
    const body = el('div', { className: 'card-body' }, [el('h3', { className: 'h6 card-title', text: titleOf(name) })]);
    if (rated === 0 || figures.accuracy == null) {
      body.append(muted(text.no_ratings));
    } else {
      body.append(
        el('p', { className: 'display-6 mb-1', text: percent.format(figures.accuracy), attrs: { 'data-role': 'accuracy' } }),
        el('p', { className: 'text-body-secondary mb-0',
          text: counted(text.right_on, rated, { correct: number.format(figures.correct) }) }),
      );
    }
    return el('div', { className: 'col' }, [el('div', { className: 'card h-100', attrs: { id: `accuracy-${name}` } }, [body])]);
  }

  function countList(title, counts, words) {
    const entries = Object.entries(counts || {}).filter(([, n]) => n > 0);
    const items = entries.length === 0
      ? [el('li', { className: 'list-inline-item text-body-secondary', text: text.none })]
      : entries.map(([key, n]) => el('li', { className: 'list-inline-item' }, [badge(key, words), ` ${number.format(n)}`]));
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
        el('div', { className: 'progress prob-track', attrs: { role: 'progressbar', 'aria-label': format(text.digit, { digit }),
          'aria-valuemin': '0', 'aria-valuemax': String(most), 'aria-valuenow': String(n),
          'aria-valuetext': counted(text.drawings, n) } }, [bar]),
        el('span', { className: 'prob-value', text: number.format(n), attrs: { 'aria-hidden': 'true' } }),
      ]);
    });
    return el('div', { className: 'col-12 col-md-6' }, [
      el('h3', { className: 'h6', text: text.by_digit }),
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
      fill($('dataset-stats'), muted(text.no_drawings));
      return;
    }
    fill($('dataset-stats'),
      el('p', {}, withCount(formOf(text.in_all, total),
        el('strong', { text: number.format(total), attrs: { id: 'drawings-total' } }))),
      el('div', { className: 'row g-4' }, [
        labelChart(drawings.by_label),
        el('div', { className: 'col-12 col-md-6' }, [el('div', { className: 'row g-3' }, [
          countList(text.by_status, drawings.by_status, text.statuses),
          countList(text.by_source, drawings.by_source, text.sources),
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
      fill($('model-tables'), muted(text.versions_unavailable));
      problems.push(format(text.versions_failed, { reason: models.reason.message }));
    }
    if (stats.status === 'fulfilled') {
      renderStats(stats.value);
    } else {
      fill($('accuracy-cards'), el('div', { className: 'col' }, [muted(text.accuracy_unavailable)]));
      fill($('dataset-stats'), muted(text.counts_unavailable));
      problems.push(format(text.stats_failed, { reason: stats.reason.message }));
    }
    if (problems.length > 0) showAlert(alerts, 'danger', problems.join(' '));
  }

  load();
})();
