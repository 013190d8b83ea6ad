// A tiny fetch helper for Inkling's JSON API, and the one way pages show its outcome to people.
(() => {
  'use strict';

  // Every failure becomes one of these, so pages only ever handle `message` and `code`.
  class ApiError extends Error {
    constructor(message, { status = 0, code = 'network_error' } = {}) {
      super(message);
      this.name = 'ApiError';
      this.status = status;
      this.code = code;
    }
  }

  const isAbort = (error) => error?.name === 'AbortError';
  // The page's language for the sentences below; base.html puts them on every page.
  const text = JSON.parse(document.getElementById('api-messages').textContent);

  // The API words its errors in English, as clauses ("nothing is drawn"); the page's own sentence for the code
  // comes first, and the English only for a code this page does not know (a newer server's).
  function explain(data) {
    const known = data && typeof data.code === 'string' && Object.hasOwn(text.codes || {}, data.code);
    return known ? text.codes[data.code] : sentence(data?.error);
  }

  // Shown alone, the API's clauses read better as sentences.
  function sentence(text) {
    if (typeof text !== 'string' || text.trim() === '') return '';
    const trimmed = text.trim();
    const capitalised = trimmed.charAt(0).toUpperCase() + trimmed.slice(1);
    return /[.!?]$/.test(capitalised) ? capitalised : `${capitalised}.`;
  }

  async function request(method, url, { body, signal } = {}) {
    const init = { method, signal, headers: { Accept: 'application/json' }, credentials: 'same-origin' };
    // Admin calls ride on the session cookie; the server wants this page's CSRF token with them.
    const csrf = document.querySelector('meta[name="csrf-token"]')?.content;
    if (csrf && method !== 'GET') init.headers['X-CSRFToken'] = csrf;
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }

    let response;
    try {
      response = await fetch(url, init);
    } catch (error) {
      if (isAbort(error)) throw error; // the caller cancelled it and is not waiting for an answer
      throw new ApiError(text.unreachable);
    }

    let data = null;
    if ((response.headers.get('Content-Type') || '').includes('json')) {
      try {
        data = await response.json();
      } catch (error) {
        if (isAbort(error)) throw error;
        // A proxy's error page or a truncated body: fall through to the status line below.
      }
    }
    if (!response.ok) {
      const status = `${response.status}${response.statusText ? ` ${response.statusText}` : ''}`;
      const fallback = text.http_error.replace('{status}', status);
      throw new ApiError(explain(data) || fallback, { status: response.status, code: data?.code || `http_${response.status}` });
    }
    if (data === null) {
      throw new ApiError(text.unreadable, { status: response.status, code: 'bad_response' });
    }
    return data;
  }

  // Replaces whatever the region shows; the region itself is the aria-live element.
  function showAlert(region, kind, message, { dismissible = true } = {}) {
    const alert = document.createElement('div');
    alert.className = `alert alert-${kind} d-flex align-items-start gap-2 mb-3${dismissible ? ' alert-dismissible' : ''}`;
    alert.dataset.kind = kind;
    const body = document.createElement('div');
    body.textContent = message;
    alert.append(body);
    if (dismissible) {
      const close = document.createElement('button');
      close.type = 'button';
      close.className = 'btn-close';
      close.setAttribute('aria-label', text.dismiss);
      close.addEventListener('click', () => alert.remove());
      alert.append(close);
    }
    region.replaceChildren(alert);
    return alert;
  }

  function clearAlert(region) {
    region.replaceChildren();
  }

  window.Inkling = Object.assign(window.Inkling || {}, {
    ApiError,
    isAbort,
    api: {
      get: (url, options) => request('GET', url, options),
      post: (url, body, options) => request('POST', url, { ...options, body }),
    },
    showAlert,
    clearAlert,
  });
})();
