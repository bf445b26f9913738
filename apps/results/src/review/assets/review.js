// Thorax review page (docs/review.md). Plain browser JavaScript, no dependencies, nothing from
// another origin. Data comes from the results APIs; with API authentication on, every request
// carries the bearer token kept in sessionStorage.
(function () {
  'use strict';

  const TOKEN_KEY = 'thorax.review.token';
  const $ = (id) => document.getElementById(id);
  const state = {
    studies: [],
    studyIndex: -1,
    imageIndex: 0,
    result: null,
    labelIndex: 0,
    overlay: '',
    opacity: 45,
    urls: new Map(),
    loadSeq: 0,
  };

  // ---------- API ----------
  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  function token() {
    return sessionStorage.getItem(TOKEN_KEY) || '';
  }

  async function api(path, init) {
    const headers = Object.assign({ Accept: 'application/json' }, (init && init.headers) || {});
    if (token()) headers.Authorization = 'Bearer ' + token();
    const res = await fetch(path, Object.assign({}, init, { headers, cache: 'no-store' }));
    if (res.status === 401) {
      openToken(token() ? 'The token was refused (expired or invalid).' : '');
      throw new ApiError(401, 'UNAUTHENTICATED', 'a token is needed');
    }
    if (!res.ok) {
      let body = null;
      try { body = await res.json(); } catch (_) { body = null; }
      const error = (body && body.error) || {};
      if (res.status === 403) openToken('This token lacks the read scope.');
      throw new ApiError(res.status, error.code || 'HTTP_' + res.status, error.message || res.statusText);
    }
    return res;
  }

  async function json(path, init) {
    return (await api(path, init)).json();
  }

  /** An image of the API as a blob: URL (img elements cannot send the bearer token). */
  async function imageUrl(path) {
    if (state.urls.has(path)) return state.urls.get(path);
    const blob = await (await api(path, { headers: { Accept: 'image/png' } })).blob();
    const url = URL.createObjectURL(blob);
    state.urls.set(path, url);
    if (state.urls.size > 64) {
      const [oldest, oldUrl] = state.urls.entries().next().value;
      URL.revokeObjectURL(oldUrl);
      state.urls.delete(oldest);
    }
    return url;
  }

  const enc = encodeURIComponent;

  // ---------- formatting ----------
  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'text') node.textContent = v;
      else if (k === 'class') node.className = v;
      else if (k === 'style') Object.assign(node.style, v); // CSSOM, which the page's CSP allows

      else node.setAttribute(k, v === true ? '' : String(v));
    }
    for (const child of children || []) if (child) node.append(child);
    return node;
  }

  function clock(iso) {
    const d = new Date(iso);
    const today = new Date();
    const hm = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    return d.toDateString() === today.toDateString() ? hm : d.toLocaleDateString([], { month: 'short', day: 'numeric' }) + ' ' + hm;
  }

  const pretty = (label) => label.replace(/_/g, ' ');

  function setStatus(text, isError) {
    const node = $('feedback-status');
    node.textContent = text;
    node.classList.toggle('error', !!isError);
  }

  // ---------- worklist ----------
  async function loadWorklist() {
    let body;
    try {
      body = await json('/v1/review/worklist?limit=100');
    } catch (error) {
      if (!(error instanceof ApiError) || error.status >= 500) $('worklist-count').textContent = 'unavailable';
      return;
    }
    const selected = state.studies[state.studyIndex];
    state.studies = body.studies;
    $('worklist-count').textContent = body.studies.length + (body.studies.length === 1 ? ' study' : ' studies');
    $('worklist-empty').hidden = body.studies.length > 0;
    renderWorklist();
    const keep = selected ? state.studies.findIndex((s) => s.ref === selected.ref) : -1;
    if (keep >= 0) {
      state.studyIndex = keep;
      markSelectedStudy();
    } else if (state.studies.length > 0 && state.studyIndex < 0) {
      selectStudy(0);
    }
  }

  function renderWorklist() {
    const list = $('studies');
    list.replaceChildren(
      ...state.studies.map((study, i) => {
        const reviewed = study.images.every((img) => img.reviewedLabels.length > 0);
        const chips = study.positives.length
          ? study.positives.map((p) => el('span', { class: 'pos', text: pretty(p) }))
          : [el('span', { text: 'no positive finding' })];
        const withCommas = study.images.length > 1 ? [el('span', { class: 'images', text: study.images.length + ' images · ' })] : [];
        chips.forEach((c, j) => { if (j) withCommas.push(document.createTextNode(', ')); withCommas.push(c); });
        const name = study.accession ? study.accession : 'Study ' + study.ref;
        return el('li', { role: 'option', 'data-index': i, 'aria-selected': i === state.studyIndex ? 'true' : 'false', 'data-ref': study.ref }, [
          el('span', { class: 'badge ' + study.priority, text: study.priority === 'stat' ? 'STAT' : 'ROUT' }),
          el('span', { class: 'ref', text: name, title: study.patientId ? 'Patient ' + study.patientId : null }),
          el('span', { class: 'time' }, [reviewed ? el('span', { class: 'done', text: '✓ ', title: 'reviewed' }) : null, document.createTextNode(clock(study.completedAt))]),
          el('span', { class: 'chips' }, withCommas),
        ]);
      }),
    );
  }

  function markSelectedStudy() {
    for (const li of $('studies').children) {
      const on = Number(li.dataset.index) === state.studyIndex;
      li.setAttribute('aria-selected', on ? 'true' : 'false');
      if (on) li.scrollIntoView({ block: 'nearest' });
    }
  }

  function selectStudy(index) {
    if (index < 0 || index >= state.studies.length) return;
    state.studyIndex = index;
    state.imageIndex = 0;
    markSelectedStudy();
    const study = state.studies[index];
    $('study-priority').className = 'badge ' + study.priority;
    $('study-priority').textContent = study.priority === 'stat' ? 'STAT' : 'ROUTINE';
    $('study-title').textContent = (study.accession ? 'Accession ' + study.accession : 'Study ' + study.ref) + (study.patientId ? ' · Patient ' + study.patientId : '');
    $('image-tabs').replaceChildren(
      ...study.images.map((img, i) =>
        el('button', { type: 'button', 'aria-pressed': i === 0 ? 'true' : 'false', 'data-index': i, text: (img.viewPosition || 'Image') + ' ' + (i + 1), title: 'Image ' + (i + 1) + ' of ' + study.images.length + ' (n / p)' }),
      ),
    );
    void loadResult();
  }

  function selectImage(index) {
    const study = state.studies[state.studyIndex];
    if (!study || index < 0 || index >= study.images.length) return;
    state.imageIndex = index;
    for (const b of $('image-tabs').children) b.setAttribute('aria-pressed', Number(b.dataset.index) === index ? 'true' : 'false');
    void loadResult();
  }

  // ---------- study view ----------
  async function loadResult() {
    const study = state.studies[state.studyIndex];
    const image = study && study.images[state.imageIndex];
    if (!image) return;
    const seq = ++state.loadSeq;
    let result;
    try {
      result = await json('/v1/review/results/' + enc(image.id));
    } catch (error) {
      if (seq === state.loadSeq) setStatus('Could not load the result: ' + error.message, true);
      return;
    }
    if (seq !== state.loadSeq) return;
    state.result = result;
    const firstPositive = result.findings.findIndex((f) => f.positive);
    state.labelIndex = firstPositive >= 0 ? firstPositive : 0;
    state.overlay = '';
    renderFindings();
    renderModel();
    renderOverlayChoices();
    selectLabel(state.labelIndex);
    setStatus('');
    const wire = $('wire');
    if (result.wireImage) {
      try {
        const url = await imageUrl('/v1/findings/' + enc(result.id) + '/image?modelVersion=' + enc(result.model.version));
        if (seq !== state.loadSeq) return;
        wire.src = url;
        wire.hidden = false;
        $('placeholder').hidden = true;
      } catch (error) {
        showPlaceholder('Image unavailable');
      }
    } else {
      showPlaceholder('No image kept for this result');
    }
    await showOverlay();
  }

  function showPlaceholder(text) {
    $('wire').hidden = true;
    $('wire').removeAttribute('src');
    $('placeholder').textContent = text;
    $('placeholder').hidden = false;
  }

  function verdictOf(label) {
    const mine = (state.result && state.result.feedback) || [];
    return mine.filter((f) => f.label === label).sort((a, b) => b.reviewedAt.localeCompare(a.reviewedAt))[0] || null;
  }

  function renderFindings() {
    const r = state.result;
    $('positive-count').textContent = r.positives.length + ' positive of ' + r.findings.length;
    $('labels').replaceChildren(
      ...r.findings.map((f, i) => {
        const verdict = verdictOf(f.label);
        const pct = Math.round(f.probability * 100);
        const mark = verdict
          ? el('span', { class: 'mark ' + verdict.verdict, text: verdict.verdict === 'agree' ? '✓' : '✗', title: verdict.verdict + ' (' + verdict.reviewer + ')' })
          : el('span', { class: 'mark' + (r.heatmaps.includes(f.label) ? ' heat' : ''), title: r.heatmaps.includes(f.label) ? 'heatmap available' : null });
        return el('li', { class: f.positive ? 'positive' : 'negative', role: 'option', 'data-index': i, 'data-label': f.label, 'aria-selected': 'false', title: pretty(f.label) + ': ' + pct + '% (threshold ' + Math.round(f.threshold * 100) + '%)' }, [
          el('span', { class: 'name', text: pretty(f.label) }),
          el('span', { class: 'bar', 'aria-hidden': 'true' }, [
            el('span', { class: 'fill', style: { width: (f.probability * 100).toFixed(1) + '%' } }),
            el('span', { class: 'tick', style: { left: 'calc(' + (f.threshold * 100).toFixed(1) + '% - 1px)' } }),
          ]),
          el('span', { class: 'pct', text: pct + '%' }),
          mark,
        ]);
      }),
    );
  }

  function renderModel() {
    const r = state.result;
    const m = r.model;
    const rows = [
      ['Model', m.name],
      ['Version', m.version],
      ['Provider', m.provider || '–'],
      ['Completed', new Date(r.timing.completedAt).toLocaleString()],
    ];
    const nodes = [];
    for (const [k, v] of rows) nodes.push(el('dt', { text: k }), el('dd', { text: v, title: v }));
    if (m.provenance && m.provenance.note) nodes.push(el('dt', { text: 'Trained' }), el('dd', { class: 'note', text: m.provenance.note }));
    $('model').replaceChildren(...nodes);
  }

  /** Labels whose heatmap can be shown: every label with a map (older results: the positive ones). */
  function overlayable(r) {
    return r.mapLabels || r.heatmaps;
  }

  function renderOverlayChoices() {
    const select = $('overlay-label');
    const positives = state.result.heatmaps;
    const others = overlayable(state.result).filter((l) => !positives.includes(l));
    const labels = positives.concat(others);
    // Positive findings first, as ever; the other labels' maps below, for a second look.
    select.replaceChildren(
      el('option', { value: '', text: labels.length ? 'none' : 'no heatmaps' }),
      ...positives.map((l) => el('option', { value: l, text: pretty(l) })),
      ...(others.length ? [el('optgroup', { label: 'Other labels' }, others.map((l) => el('option', { value: l, text: pretty(l) })))] : []),
    );
    select.disabled = labels.length === 0;
    select.value = state.overlay;
    $('opacity').disabled = labels.length === 0;
  }

  async function showOverlay() {
    const overlay = $('overlay');
    const r = state.result;
    overlay.style.opacity = String(state.opacity / 100);
    $('opacity-value').textContent = state.opacity + '%';
    $('overlay-label').value = state.overlay;
    if (!r || !state.overlay || !overlayable(r).includes(state.overlay) || !r.wireImage) {
      overlay.hidden = true;
      overlay.removeAttribute('src');
      document.body.dataset.overlay = '';
      return;
    }
    const seq = state.loadSeq;
    try {
      const url = await imageUrl('/v1/findings/' + enc(r.id) + '/heatmaps/' + enc(state.overlay) + '?modelVersion=' + enc(r.model.version));
      if (seq !== state.loadSeq) return;
      overlay.src = url;
      overlay.alt = 'Heatmap of ' + pretty(state.overlay);
      overlay.hidden = false;
      document.body.dataset.overlay = state.overlay;
    } catch (error) {
      setStatus('Heatmap unavailable: ' + error.message, true);
    }
  }

  function selectLabel(index) {
    const r = state.result;
    if (!r || index < 0 || index >= r.findings.length) return;
    state.labelIndex = index;
    const label = r.findings[index].label;
    for (const li of $('labels').children) {
      const on = Number(li.dataset.index) === index;
      li.setAttribute('aria-selected', on ? 'true' : 'false');
      if (on) li.scrollIntoView({ block: 'nearest' });
    }
    $('selected-label').textContent = pretty(label) + ' · ' + (r.findings[index].positive ? 'model: positive' : 'model: negative');
    const verdict = verdictOf(label);
    $('agree').disabled = false;
    $('disagree').disabled = false;
    $('comment').disabled = false;
    $('agree').setAttribute('aria-pressed', verdict && verdict.verdict === 'agree' ? 'true' : 'false');
    $('disagree').setAttribute('aria-pressed', verdict && verdict.verdict === 'disagree' ? 'true' : 'false');
    $('comment').value = verdict && verdict.comment ? verdict.comment : '';
  }

  function toggleOverlay() {
    const r = state.result;
    if (!r) return;
    const label = r.findings[state.labelIndex] && r.findings[state.labelIndex].label;
    if (state.overlay && (state.overlay === label || !overlayable(r).includes(label))) state.overlay = '';
    else if (overlayable(r).includes(label)) state.overlay = label;
    else if (r.heatmaps.length) state.overlay = r.heatmaps[0];
    void showOverlay();
  }

  function setOpacity(value) {
    state.opacity = Math.max(0, Math.min(100, value));
    $('opacity').value = String(state.opacity);
    void showOverlay();
  }

  // ---------- feedback ----------
  async function sendVerdict(verdict) {
    const r = state.result;
    if (!r) return;
    const finding = r.findings[state.labelIndex];
    const comment = $('comment').value.trim();
    setStatus('Saving…');
    try {
      const body = await json('/v1/findings/' + enc(r.id) + '/feedback', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ label: finding.label, verdict, comment: comment || null, modelVersion: r.model.version }),
      });
      const saved = body.feedback;
      r.feedback = r.feedback.filter((f) => !(f.label === saved.label && f.reviewer === saved.reviewer)).concat([saved]);
      renderFindings();
      selectLabel(state.labelIndex);
      setStatus((verdict === 'agree' ? 'Agreed' : 'Disagreed') + ' on ' + pretty(finding.label) + ' · revision ' + saved.revision + (body.published ? '' : ' (queued for the feedback topic)'));
      const study = state.studies[state.studyIndex];
      const image = study && study.images[state.imageIndex];
      if (image && !image.reviewedLabels.includes(saved.label)) {
        image.reviewedLabels.push(saved.label);
        renderWorklist();
        markSelectedStudy();
      }
    } catch (error) {
      setStatus('Not saved: ' + error.message, true);
    }
  }

  // ---------- token ----------
  function openToken(message) {
    const dialog = $('token-dialog');
    $('token-error').textContent = message || '';
    $('token-input').value = '';
    if (!dialog.open) dialog.showModal();
    $('token-input').focus();
  }

  function showWho() {
    const t = token();
    if (!t) { $('who').textContent = ''; return; }
    try {
      const payload = JSON.parse(atob(t.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
      $('who').textContent = payload.sub ? 'Signed in as ' + payload.sub : 'Token set';
    } catch (_) {
      $('who').textContent = 'Token set';
    }
  }

  // ---------- events ----------
  function wire() {
    $('studies').addEventListener('click', (e) => {
      const li = e.target.closest('li');
      if (li) selectStudy(Number(li.dataset.index));
    });
    $('image-tabs').addEventListener('click', (e) => {
      const b = e.target.closest('button');
      if (b) selectImage(Number(b.dataset.index));
    });
    $('labels').addEventListener('click', (e) => {
      const li = e.target.closest('li');
      if (!li) return;
      selectLabel(Number(li.dataset.index));
      if (state.result && overlayable(state.result).includes(li.dataset.label) && state.overlay) {
        state.overlay = li.dataset.label;
        void showOverlay();
      }
    });
    $('overlay-label').addEventListener('change', (e) => {
      state.overlay = e.target.value;
      const i = state.result ? state.result.findings.findIndex((f) => f.label === state.overlay) : -1;
      if (i >= 0) selectLabel(i);
      void showOverlay();
    });
    $('opacity').addEventListener('input', (e) => setOpacity(Number(e.target.value)));
    $('agree').addEventListener('click', () => void sendVerdict('agree'));
    $('disagree').addEventListener('click', () => void sendVerdict('disagree'));
    $('refresh').addEventListener('click', () => void loadWorklist());
    $('token-button').addEventListener('click', () => openToken(''));
    $('help-button').addEventListener('click', () => $('help-dialog').showModal());
    $('token-form').addEventListener('submit', () => {
      const value = $('token-input').value.trim().replace(/^Bearer\s+/i, '');
      if (value) sessionStorage.setItem(TOKEN_KEY, value);
      showWho();
      void loadWorklist();
    });
    $('token-clear').addEventListener('click', () => {
      sessionStorage.removeItem(TOKEN_KEY);
      showWho();
      $('token-dialog').close();
    });
    $('comment').addEventListener('keydown', (e) => {
      if (e.key === 'Escape') { e.preventDefault(); $('comment').blur(); }
      if (e.key === 'Enter' && !e.shiftKey) {
        e.preventDefault();
        const verdict = verdictOf(state.result && state.result.findings[state.labelIndex].label);
        void sendVerdict(verdict ? verdict.verdict : 'agree');
        $('comment').blur();
      }
    });
    document.addEventListener('keydown', (e) => {
      if (e.ctrlKey || e.metaKey || e.altKey) return;
      const target = e.target;
      if (target instanceof HTMLTextAreaElement || target instanceof HTMLInputElement || target instanceof HTMLSelectElement) return;
      if (document.querySelector('dialog[open]')) return;
      const keys = {
        j: () => selectStudy(state.studyIndex + 1),
        k: () => selectStudy(state.studyIndex - 1),
        n: () => selectImage(state.imageIndex + 1),
        p: () => selectImage(state.imageIndex - 1),
        ArrowDown: () => selectLabel(state.labelIndex + 1),
        ArrowUp: () => selectLabel(state.labelIndex - 1),
        h: toggleOverlay,
        '[': () => setOpacity(state.opacity - 10),
        ']': () => setOpacity(state.opacity + 10),
        a: () => void sendVerdict('agree'),
        d: () => void sendVerdict('disagree'),
        c: () => { if (!$('comment').disabled) $('comment').focus(); },
        r: () => void loadWorklist(),
        t: () => openToken(''),
        '?': () => $('help-dialog').showModal(),
      };
      const action = keys[e.key];
      if (action) {
        e.preventDefault();
        action();
      }
    });
  }

  wire();
  showWho();
  void loadWorklist();
  setInterval(() => { if (!document.hidden && !document.querySelector('dialog[open]')) void loadWorklist(); }, 15000);
})();
