// The studio page: documents, continuing with variants, context, sampler settings, the log
// and blind tests. Plain DOM, no framework; the HTTP contract is docs/studio-api.md.

import { ApiError, api, download, readEvents, setKeyPrompt } from './api.js';
import { applyI18n, formatNumber, formatP, formatPercent, formatTime, getLang, onLangChange, setLang, t } from './i18n.js';

const $ = (selector, root = document) => root.querySelector(selector);
const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

/** Create an element: el('button', {class: 'x', dataset: {testid: 'y'}, onclick}, 'text', child…). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'dataset') Object.assign(node.dataset, value);
    else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else if (name === 'class') node.className = value;
    else if (name === 'style') node.style.cssText = value; // through the CSSOM: the CSP forbids style attributes
    // `value` is a property (a textarea has no such attribute); so are booleans like `checked`.
    else if (name in node && (typeof value !== 'string' || name === 'value')) node[name] = value;
    else node.setAttribute(name, value === true ? '' : value);
  }
  node.append(...children.flat().filter((child) => child !== null && child !== undefined && child !== false));
  return node;
}

const SAVE_DELAY_MS = 600; // after the last keystroke
const DRAFT_DELAY_MS = 200; // localStorage copy of unsaved edits
const RETRY_SAVE_MS = [2000, 5000, 10000, 30000];
const COPY_ALARM_TOKENS = 50; // a span of token ids this long is worth a look whatever the guard
const COPY_ALARM_WORDS = 27; // `dvoinik check`'s threshold ([check] min_words) when the server does not give its own
const DOC_FIELDS = ['title', 'text', 'memory', 'authors_note', 'note_depth', 'world_info', 'settings'];
// What the document's history keeps: a change of these is a step, and is refused (409) when the
// document moved on since the page read it. The title and the settings are not in the history.
const HISTORY_FIELDS = ['text', 'memory', 'authors_note', 'note_depth', 'world_info'];
// Which tab wrote a draft: a tab clears only its own (two tabs may have one document open).
const TAB_ID = Math.random().toString(36).slice(2) + Date.now().toString(36);
const SAMPLERS = ['temperature', 'top_p', 'top_k', 'min_p', 'typical_p', 'repetition_penalty'];

const state = {
  info: null,
  documents: [], // [{id, title, chars, updated_at}]
  doc: null, // the open document as the server last returned it
  // The revision of the document that the page's text, memory, note and world info are based on:
  // sent with every save of those as `base_version`, so a change made elsewhere is not overwritten.
  baseRevision: null,
  unsaved: new Set(), // fields edited since the server last acknowledged them
  // A pick, undo or redo in flight (a promise): the history fields are read-only and autosaves wait.
  changing: null,
  locks: 0, // see lockEditing()
  conflicts: 0, // saves refused because the document changed elsewhere
  locked: false,
  kept: null, // a draft set aside (the document changed elsewhere): {fields, revision, at, reason}
  saving: null, // the PATCH in flight
  saveTimer: 0,
  draftTimer: 0,
  retryTimer: 0,
  retries: 0,
  saveState: 'idle',
  saveMessage: '',
  meter: null,
  meterTimer: 0,
  generation: null, // see startGeneration()
  lastSeed: null,
  log: null,
  blindTests: null,
  blindBusy: false,
  interviews: null, // [{id, title, turns, updated_at}]
  interview: null, // the open interview as the server last returned it
  frames: null, // {default, names, builtin}
  asking: null, // {interviewId, question, text, controller} while the double answers
};

// ---------------------------------------------------------------------------- notices

let noticeTimer = 0;

function notify(message, { sticky = false } = {}) {
  $('#notice-text').textContent = message;
  $('#notice').hidden = false;
  clearTimeout(noticeTimer);
  if (!sticky) noticeTimer = setTimeout(() => { $('#notice').hidden = true; }, 8000);
}

function describeError(error) {
  if (error instanceof ApiError) {
    if (error.offline) return t('err.offline');
    if (error.status === 503) return t('gen.busy', { seconds: error.retryAfter ?? 5 });
    if (error.status === 401) return t('err.key');
    return t('err.server', { message: error.message });
  }
  return t('err.server', { message: String(error?.message ?? error) });
}

// ---------------------------------------------------------------------------- documents

async function loadDocuments() {
  state.documents = await api('/studio/api/documents');
  renderDocumentList();
}

function renderDocumentList() {
  const list = $('#doc-list');
  list.replaceChildren(...state.documents.map((summary) => {
    const current = summary.id === state.doc?.id;
    return el('li', {},
      el('button', {
        type: 'button',
        class: 'doc-item',
        'aria-current': current ? 'page' : undefined,
        dataset: { testid: 'doc-item', id: String(summary.id) },
        onclick: () => openDocument(summary.id),
      },
      el('span', { class: 'doc-item-title' }, summary.title || t('doc.untitled')),
      el('span', { class: 'doc-item-meta' },
        `${t('docs.chars', { count: summary.chars, n: formatNumber(summary.chars) })} · ${formatTime(summary.updated_at)}`)));
  }));
  $('#doc-list-empty').hidden = state.documents.length > 0;
}

function updateSummary(doc) {
  const summary = state.documents.find((item) => item.id === doc.id);
  const fresh = { id: doc.id, title: doc.title, chars: doc.text.length, updated_at: doc.updated_at };
  if (summary) Object.assign(summary, fresh);
  else state.documents.unshift(fresh);
  state.documents.sort((a, b) => (b.updated_at > a.updated_at ? 1 : b.updated_at < a.updated_at ? -1 : 0));
  renderDocumentList();
}

async function createDocument() {
  if (!(await flush())) return;
  try {
    const doc = await api('/studio/api/documents', { method: 'POST', body: { title: t('doc.untitled') } });
    updateSummary(doc);
    await openDocument(doc.id, doc);
    $('#doc-title').select();
    $('#doc-title').focus();
  } catch (error) {
    notify(describeError(error));
  }
}

async function deleteDocument() {
  const doc = state.doc;
  if (!doc || !confirm(t('doc.delete.confirm', { title: doc.title || t('doc.untitled') }))) return;
  try {
    await api(`/studio/api/documents/${doc.id}`, { method: 'DELETE' });
  } catch (error) {
    notify(describeError(error));
    return;
  }
  clearDraft(doc.id);
  localStorage.removeItem(keptKey(doc.id));
  state.unsaved.clear();
  state.documents = state.documents.filter((item) => item.id !== doc.id);
  closeDocument();
  if (state.documents.length) await openDocument(state.documents[0].id);
  else renderDocumentList();
}

function closeDocument() {
  abortGeneration({ silent: true });
  state.generation = null;
  state.doc = null;
  state.baseRevision = null;
  state.meter = null;
  state.log = null;
  showKept(null);
  renderVariants();
  $('#document-view').hidden = true;
  $('#no-document').hidden = false;
  localStorage.removeItem('dvoinik.document');
  setSaveState('idle');
}

async function openDocument(id, loaded = null) {
  if (state.doc && state.doc.id !== id && !(await flush())) {
    // The server is down: the edits stay in this document's draft and come back when it is opened again.
    clearTimeout(state.retryTimer);
  }
  let doc = loaded;
  try {
    doc ??= await api(`/studio/api/documents/${id}`);
  } catch (error) {
    notify(describeError(error));
    return;
  }
  if (state.doc?.id !== id) {
    abortGeneration({ silent: true });
    state.generation = null;
    state.log = null;
    state.meter = null;
    renderVariants();
  }
  state.doc = doc;
  state.baseRevision = doc.version;
  state.unsaved = new Set();
  state.retries = 0;
  fillFields(doc);
  $('#document-view').hidden = false;
  $('#no-document').hidden = true;
  localStorage.setItem('dvoinik.document', String(id));
  renderDocumentList();
  updateHistoryButtons();
  renderGenerationControls();
  setSaveState('saved');
  restoreDraft(doc);
  refreshMeter();
  if (activeTab() === 'log') refreshLog();
}

// ---------------------------------------------------------------------------- fields and autosave

/** Put a document's values into the page (the page is the truth while the writer edits); `skip` keeps some as they are. */
function fillFields(doc, skip = []) {
  for (const field of DOC_FIELDS) if (!skip.includes(field)) setField(field, doc[field]);
  updateEditorStats();
}

function setField(field, value) {
  switch (field) {
    case 'title': $('#doc-title').value = value ?? ''; break;
    case 'text': $('#editor').value = value ?? ''; break;
    case 'memory': $('#memory').value = value ?? ''; break;
    case 'authors_note': $('#authors-note').value = value ?? ''; break;
    case 'note_depth': $('#note-depth').value = value ?? 3; break;
    case 'world_info': renderWorldInfo(value ?? []); break;
    case 'settings': fillSettings(value ?? {}); break;
    default: throw new Error(`unknown field ${field}`);
  }
}

function fieldValue(field) {
  switch (field) {
    case 'title': return $('#doc-title').value.trim();
    case 'text': return $('#editor').value;
    case 'memory': return $('#memory').value;
    case 'authors_note': return $('#authors-note').value;
    case 'note_depth': {
      const depth = Number.parseInt($('#note-depth').value, 10);
      return Number.isFinite(depth) && depth >= 0 ? depth : 3;
    }
    case 'world_info': return readWorldInfo().entries;
    case 'settings': return readSettings();
    default: throw new Error(`unknown field ${field}`);
  }
}

/** A value with its object keys sorted and null members left out, as the server stores settings. */
function canonical(value) {
  if (Array.isArray(value)) return value.map(canonical);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.keys(value).sort().filter((key) => value[key] !== null && value[key] !== undefined)
      .map((key) => [key, canonical(value[key])]));
  }
  return value;
}

const same = (a, b) => JSON.stringify(canonical(a)) === JSON.stringify(canonical(b));

function edited(field) {
  if (!state.doc) return;
  state.unsaved.add(field);
  setSaveState('saving');
  clearTimeout(state.draftTimer);
  state.draftTimer = setTimeout(writeDraft, DRAFT_DELAY_MS);
  clearTimeout(state.saveTimer);
  state.saveTimer = setTimeout(save, SAVE_DELAY_MS);
}

/**
 * Send every unsaved field in one PATCH. Resolves true when the server has them all (or there was
 * nothing to send), false when it could not be reached or refused; the draft keeps them meanwhile.
 */
async function save({ keepalive = false, held = false } = {}) {
  // One save at a time; while a pick, undo or redo is in flight, saves wait for it (`held` is its own).
  while (state.saving || (state.changing && !held)) await (state.saving ?? state.changing);
  clearTimeout(state.saveTimer);
  if (!state.doc || state.unsaved.size === 0) return true;
  const id = state.doc.id;
  const body = {};
  for (const field of state.unsaved) body[field] = fieldValue(field);
  if (body.title === '') { // a title being retyped: keep the old one until there is a new one
    delete body.title;
    state.unsaved.delete('title');
    if (Object.keys(body).length === 0) { setSaveState('saved'); return true; }
  }
  // A step in the history is made only on top of the revision the page shows (409 otherwise).
  const guarded = HISTORY_FIELDS.some((field) => field in body);
  if (guarded && state.baseRevision !== null) body.base_version = state.baseRevision;
  setSaveState('saving');
  state.saving = (async () => {
    try {
      const doc = await api(`/studio/api/documents/${id}`, { method: 'PATCH', body, keepalive });
      if (state.doc?.id !== id) return true;
      // Only what has not changed again since it was sent counts as saved.
      for (const [field, value] of Object.entries(body)) {
        if (field !== 'base_version' && same(fieldValue(field), value)) state.unsaved.delete(field);
      }
      let movedOn = false;
      if (guarded || doc.version === state.baseRevision) {
        state.baseRevision = doc.version;
      } else if (!HISTORY_FIELDS.some((field) => state.unsaved.has(field))) {
        // Only the title or settings were sent, and the document had changed elsewhere meanwhile:
        // nothing of the page's is pending there, so show the newer version.
        state.baseRevision = doc.version;
        movedOn = true;
      } // else: the page's own pending edit will be refused (409) and kept as a draft.
      state.doc = { ...doc, ...Object.fromEntries([...state.unsaved].map((field) => [field, fieldValue(field)])) };
      if (movedOn) {
        fillFields(doc, DOC_FIELDS.filter((field) => !HISTORY_FIELDS.includes(field)));
        notify(t('doc.updatedElsewhere'));
      }
      state.retries = 0;
      writeDraft();
      updateSummary(doc);
      updateHistoryButtons();
      if (state.unsaved.size) state.saveTimer = setTimeout(save, SAVE_DELAY_MS);
      else setSaveState('saved');
      scheduleMeter();
      return true;
    } catch (error) {
      if (error instanceof ApiError && error.status === 409 && guarded && state.doc?.id === id) {
        await resolveConflict(id, body.base_version);
        return false;
      }
      writeDraft();
      if (error instanceof ApiError && (error.offline || error.status >= 500)) {
        // A full disk (507) says where and how much is free; the draft waits, and is retried, either way.
        if (error.status === 507) setSaveState('error', error.message);
        else setSaveState('offline');
        const delay = RETRY_SAVE_MS[Math.min(state.retries, RETRY_SAVE_MS.length - 1)];
        state.retries += 1;
        clearTimeout(state.retryTimer);
        state.retryTimer = setTimeout(save, delay);
      } else {
        setSaveState('error', error.message);
      }
      return false;
    } finally {
      state.saving = null;
    }
  })();
  return state.saving;
}

/** Save now and wait; used before anything that reads the saved document on the server. */
async function flush() {
  clearTimeout(state.saveTimer);
  return save();
}

function setSaveState(name, message = '') {
  state.saveState = name;
  state.saveMessage = message;
  const node = $('#save-state');
  node.dataset.state = name;
  node.textContent = {
    idle: '',
    saved: t('save.saved'),
    saving: t('save.saving'),
    offline: t('save.offline'),
    error: t('save.error', { message }),
  }[name];
}

// A copy of unsaved edits in localStorage, kept until the server has them: nothing typed is lost
// when the server is down or the tab is closed first. Keyed by the server's database as well as
// the document, so a draft never lands in another workspace's document of the same number.
const storeId = () => state.info?.store_id ?? '';
const draftKey = (id) => `dvoinik.draft.${storeId()}.${id}`;
// A draft set aside because the document changed elsewhere: shown, never applied unasked.
const keptKey = (id) => `dvoinik.kept.${storeId()}.${id}`;

function readStored(key) {
  try {
    const value = JSON.parse(localStorage.getItem(key) ?? 'null');
    return value?.fields && typeof value.fields === 'object' ? value : null;
  } catch {
    return null;
  }
}

function store(key, value) {
  try {
    localStorage.setItem(key, JSON.stringify(value));
  } catch {
    // Storage full: the autosave still runs; nothing better to do here.
  }
}

function writeDraft() {
  clearTimeout(state.draftTimer);
  if (!state.doc) return;
  const key = draftKey(state.doc.id);
  if (state.unsaved.size === 0) {
    clearDraft(state.doc.id);
    return;
  }
  const fields = Object.fromEntries([...state.unsaved].map((field) => [field, fieldValue(field)]));
  store(key, { fields, version: state.baseRevision, at: Date.now(), tab: TAB_ID });
}

/** Forget this tab's draft of a document (another tab's, on the same document, is its own business). */
function clearDraft(id) {
  const key = draftKey(id);
  const draft = readStored(key);
  if (!draft?.tab || draft.tab === TAB_ID) localStorage.removeItem(key);
}

/** The fields of a draft that differ from the document. */
function differing(fields, doc) {
  return Object.entries(fields).filter(([field, value]) => DOC_FIELDS.includes(field) && !same(value, doc[field]));
}

/**
 * A document was opened: bring back what this browser kept of it. A draft made on the revision
 * the server still has is put back and saved; one the server has moved on from (another tab,
 * an undo, a save that went through after all) is set aside for the writer to choose; one the
 * server already has is dropped.
 */
function restoreDraft(doc) {
  const key = draftKey(doc.id);
  const draft = readStored(key);
  const changed = draft ? differing(draft.fields, doc) : [];
  if (draft && !changed.length) localStorage.removeItem(key);
  else if (draft && draft.version === doc.version) {
    for (const [field, value] of changed) {
      setField(field, value);
      state.unsaved.add(field);
    }
    updateEditorStats();
    notify(t('save.restored'));
    save();
  } else if (draft) {
    localStorage.removeItem(key);
    store(keptKey(doc.id), { ...draft, fields: Object.fromEntries(changed), reason: 'stale' });
  }
  showKept(doc);
}

/** The server refused a save (409): the document changed elsewhere. Keep the writer's version aside, show the server's. */
async function resolveConflict(id, revision) {
  state.conflicts += 1;
  const mine = [...state.unsaved].filter((field) => HISTORY_FIELDS.includes(field));
  const fields = Object.fromEntries(mine.map((field) => [field, fieldValue(field)]));
  store(keptKey(id), { fields, revision, at: Date.now(), reason: 'conflict' });
  for (const field of mine) state.unsaved.delete(field);
  writeDraft();
  lockEditing(true); // nothing may be typed into what is about to be replaced
  try {
    const doc = await api(`/studio/api/documents/${id}`);
    if (state.doc?.id !== id) return;
    applyServerDocument(doc);
    showKept(doc);
    setSaveState(state.unsaved.size ? 'saving' : 'saved');
    // The title or settings changed meanwhile are not in the history: they are saved as they are.
    if (state.unsaved.size) state.saveTimer = setTimeout(save, SAVE_DELAY_MS);
  } catch (error) {
    showKept(state.doc);
    setSaveState('error', error.message);
  } finally {
    lockEditing(false);
  }
}

/** Show the draft set aside for the open document, if there is one the server does not already have. */
function showKept(doc) {
  state.kept = null;
  if (doc) {
    const kept = readStored(keptKey(doc.id));
    if (kept && differing(kept.fields, doc).length) state.kept = kept;
    else if (kept) localStorage.removeItem(keptKey(doc.id));
  }
  renderKept();
}

function renderKept() {
  const kept = state.kept;
  $('#draft-bar').hidden = !kept;
  if (!kept) return;
  $('#draft-bar').dataset.reason = kept.reason;
  $('#draft-message').textContent = kept.reason === 'conflict' ? t('draft.conflict')
    : t('draft.stale', { time: formatTime(kept.at / 1000) });
  const labels = { memory: 'ctx.memory', authors_note: 'ctx.note', note_depth: 'ctx.depth', world_info: 'wi.heading',
    title: 'doc.title', settings: 'panels.sampler' };
  $('#draft-text').value = Object.entries(kept.fields).map(([field, value]) => {
    if (field === 'text') return value;
    const shown = field === 'world_info'
      ? value.map((entry) => `${entry.keys.join(', ')}: ${entry.content}`).join('\n')
      : typeof value === 'string' ? value : JSON.stringify(value);
    return `${t(labels[field] ?? field)}:\n${shown}`;
  }).join('\n\n');
}

/** The writer chose the draft set aside: it replaces what the page shows, and is saved. */
function restoreKept() {
  const kept = state.kept;
  if (!kept || !state.doc || state.locked) return;
  localStorage.removeItem(keptKey(state.doc.id));
  state.kept = null;
  renderKept();
  for (const [field, value] of Object.entries(kept.fields)) {
    if (!DOC_FIELDS.includes(field)) continue;
    setField(field, value);
    edited(field);
  }
  updateEditorStats();
  notify(t('draft.restored'));
}

function discardKept() {
  if (!state.doc) return;
  localStorage.removeItem(keptKey(state.doc.id));
  state.kept = null;
  renderKept();
}

/** The page is going away: keep the draft and try one last save that outlives the page. */
function saveOnLeave() {
  if (!state.doc || state.unsaved.size === 0) return;
  writeDraft();
  save({ keepalive: true });
}

// ---------------------------------------------------------------------------- history

function updateHistoryButtons() {
  $('#undo').disabled = !state.doc?.can_undo || state.locked;
  $('#redo').disabled = !state.doc?.can_redo || state.locked;
}

/**
 * Change the document on the server (a pick, an undo, a redo) and show the result. The history
 * fields are read-only meanwhile, so nothing typed is replaced by the server's answer; whatever
 * was typed before is saved first, so the change is made on top of it; autosaves of the title
 * or settings wait until the answer is in. Resolves to the document, or null when nothing was sent.
 */
async function changeOnServer(send) {
  if (!state.doc || state.changing) return null;
  const id = state.doc.id;
  let release;
  state.changing = new Promise((resolve) => { release = resolve; });
  lockEditing(true);
  const conflicts = state.conflicts;
  try {
    if (!(await save({ held: true }))) {
      // A refused save has set the writer's version aside and says so; anything else is a server away.
      if (state.saveState !== 'saved') notify(t('err.unsaved'));
      return null;
    }
    // The document changed elsewhere (the page now shows that version, the writer's is set aside):
    // the writer decides first, before anything is done to it.
    if (state.doc?.id !== id || state.conflicts !== conflicts) return null;
    const doc = await send(id);
    if (state.doc?.id === doc.id) {
      applyServerDocument(doc);
      if (!state.unsaved.size) setSaveState('saved');
    }
    return doc;
  } finally {
    state.changing = null;
    release();
    lockEditing(false);
  }
}

/** Make the fields of the document's history read-only (or writable again); locks nest. */
function lockEditing(on) {
  state.locks = Math.max(0, (state.locks ?? 0) + (on ? 1 : -1));
  state.locked = state.locks > 0;
  for (const selector of ['#editor', '#memory', '#authors-note', '#note-depth']) $(selector).readOnly = state.locked;
  $('#wi-add').disabled = state.locked;
  lockWorldInfo();
  $('#document-view').setAttribute('aria-busy', String(state.locked));
  updateHistoryButtons();
}

function lockWorldInfo() {
  for (const node of $$('.wi-entry input:not([type=checkbox]), .wi-entry textarea', $('#wi-list'))) node.readOnly = state.locked;
  for (const node of $$('.wi-entry input[type=checkbox], .wi-entry button', $('#wi-list'))) node.disabled = state.locked;
}

async function history(direction) {
  if (!state.doc || state.generation?.running || state.changing) return;
  try {
    await changeOnServer((id) => api(`/studio/api/documents/${id}/${direction}`, { method: 'POST' }));
  } catch (error) {
    if (error instanceof ApiError && error.status === 409) notify(t(direction === 'undo' ? 'doc.undo.none' : 'doc.redo.none'));
    else notify(describeError(error));
  }
}

/**
 * The server changed the document (undo, redo, a picked variant) or the page reloaded it: show its
 * version. The title and settings the writer changed meanwhile are not in the history: they stay.
 */
function applyServerDocument(doc) {
  state.baseRevision = doc.version;
  for (const field of HISTORY_FIELDS) state.unsaved.delete(field);
  const pending = [...state.unsaved];
  state.doc = { ...doc, ...Object.fromEntries(pending.map((field) => [field, fieldValue(field)])) };
  fillFields(doc, pending);
  writeDraft();
  updateSummary(doc);
  updateHistoryButtons();
  refreshMeter();
}

function updateEditorStats() {
  const text = $('#editor').value;
  const words = (text.match(/[\p{L}\p{N}]+(?:[-’'][\p{L}\p{N}]+)*/gu) ?? []).length;
  $('#editor-stats').textContent = `${t('docs.chars', { count: text.length, n: formatNumber(text.length) })} · ${
    t('doc.words', { count: words, n: formatNumber(words) })}`;
}

// ---------------------------------------------------------------------------- world info

function renderWorldInfo(entries) {
  $('#wi-list').replaceChildren(...entries.map((entry) => worldInfoEntry(entry)));
  lockWorldInfo();
  markWorldInfoInContext();
}

function worldInfoEntry(entry = { keys: [], secondary_keys: [], content: '', always: false }) {
  const changed = () => edited('world_info');
  const node = el('fieldset', { class: 'wi-entry', dataset: { testid: 'wi-entry' } },
    el('legend', {}, el('span', { class: 'wi-badge', dataset: { testid: 'wi-badge' } })),
    el('label', { class: 'field' }, el('span', {}, t('wi.keys')),
      el('input', { class: 'wi-keys', value: entry.keys.join(', '), dataset: { testid: 'wi-keys' }, oninput: changed,
        placeholder: t('wi.keys.placeholder') })),
    el('label', { class: 'field' }, el('span', {}, t('wi.secondary')),
      el('input', { class: 'wi-secondary', value: (entry.secondary_keys ?? []).join(', '),
        dataset: { testid: 'wi-secondary' }, oninput: changed, placeholder: t('wi.secondary.placeholder') })),
    el('label', { class: 'field' }, el('span', {}, t('wi.content')),
      el('textarea', { class: 'wi-content prose-small', rows: 3, value: entry.content, dataset: { testid: 'wi-content' },
        oninput: changed })),
    el('div', { class: 'wi-foot' },
      el('label', { class: 'inline' },
        el('input', { type: 'checkbox', class: 'wi-always', checked: Boolean(entry.always),
          dataset: { testid: 'wi-always' }, onchange: changed }),
        el('span', {}, t('wi.always'))),
      el('button', { type: 'button', class: 'link danger', dataset: { testid: 'wi-remove' },
        onclick: () => { node.remove(); changed(); markWorldInfoInContext(); } }, t('wi.remove'))));
  return node;
}

const splitKeys = (text) => text.split(',').map((key) => key.trim()).filter(Boolean);

/**
 * The entries as the document keeps them. Entries still blank are not sent (the writer has only
 * just pressed "add"), so `index` maps a saved entry back to its place on the page.
 */
function readWorldInfo() {
  const entries = [];
  const index = [];
  worldInfoOnPage().forEach(({ entry }, position) => {
    if (!entry.keys.length && !entry.secondary_keys.length && !entry.content.trim() && !entry.always) return;
    entries.push(entry);
    index.push(position);
  });
  return { entries, index };
}

function worldInfoOnPage() {
  return $$('.wi-entry', $('#wi-list')).map((node) => ({
    node,
    entry: {
      keys: splitKeys($('.wi-keys', node).value),
      secondary_keys: splitKeys($('.wi-secondary', node).value),
      content: $('.wi-content', node).value,
      always: $('.wi-always', node).checked,
    },
  }));
}

/** Badge each world-info entry the meter says was inserted into the context. */
function markWorldInfoInContext() {
  const part = state.meter?.parts?.find((item) => item.part === 'world_info');
  const inserted = new Set(part?.entries ?? []);
  const { index } = readWorldInfo();
  const nodes = $$('.wi-entry', $('#wi-list'));
  nodes.forEach((node) => { node.dataset.inContext = 'false'; });
  index.forEach((position, saved) => {
    if (inserted.has(saved)) nodes[position].dataset.inContext = 'true';
  });
  for (const node of nodes) {
    $('.wi-badge', node).textContent = node.dataset.inContext === 'true' ? t('wi.inContext') : t('wi.notInContext');
  }
}

// ---------------------------------------------------------------------------- sampler settings

function presetValues(name) {
  return state.info?.presets?.[name] ?? {};
}

function fillSettings(settings) {
  const defaults = state.info?.defaults ?? {};
  const preset = settings.preset ?? defaults.preset;
  $('#preset').value = preset in (state.info?.presets ?? {}) ? preset : defaults.preset;
  $('#n').value = settings.n ?? defaults.n ?? 3;
  $('#max-new-tokens').value = settings.max_new_tokens ?? defaults.max_new_tokens ?? '';
  $('#guard').value = settings.guard ?? defaults.guard ?? '';
  $('#seed').value = settings.seed ?? '';
  for (const name of SAMPLERS) $(`#${name}`).value = settings[name] ?? '';
  for (const slider of $$('input[data-style]')) {
    slider.value = settings.style?.[slider.dataset.style] ?? 0;
    showStyleWeight(slider);
  }
  fillVoice(settings.voice);
  updatePresetHints();
}

function numberOf(input, integer = false) {
  if (input.value.trim() === '' || !input.checkValidity()) return undefined;
  const value = integer ? Number.parseInt(input.value, 10) : Number.parseFloat(input.value);
  return Number.isFinite(value) ? value : undefined;
}

/** The settings on the page; a blank field is left out, so the preset (or the server's default) decides. */
function readSettings() {
  const settings = { preset: $('#preset').value };
  const n = numberOf($('#n'), true);
  const maxNew = numberOf($('#max-new-tokens'), true);
  const guard = numberOf($('#guard'), true);
  if (n !== undefined) settings.n = n;
  if (maxNew !== undefined) settings.max_new_tokens = maxNew;
  if (guard !== undefined) settings.guard = guard;
  settings.seed = numberOf($('#seed'), true) ?? null;
  for (const name of SAMPLERS) {
    const value = numberOf($(`#${name}`), name === 'top_k');
    if (value !== undefined) settings[name] = value;
  }
  const style = {};
  for (const slider of $$('input[data-style]')) {
    const weight = Number.parseFloat(slider.value);
    if (weight > 0) style[slider.dataset.style] = weight;
  }
  if (Object.keys(style).length) settings.style = style;
  const voice = readVoice();
  if (voice) settings.voice = voice;
  return settings;
}

function updatePresetHints() {
  const name = $('#preset').value;
  const values = presetValues(name);
  for (const sampler of SAMPLERS) {
    const input = $(`#${sampler}`);
    input.placeholder = values[sampler] === undefined ? '—' : String(values[sampler]);
  }
  const key = `preset.${name}`;
  $('#preset-hint').textContent = t.has(key) ? t(key) : '';
}

function renderPresets() {
  const presets = Object.keys(state.info?.presets ?? {});
  $('#preset').replaceChildren(...presets.map((name) => el('option', { value: name }, name)));
}

function renderStyleSliders() {
  const styles = state.info?.styles ?? [];
  $('#styles').hidden = styles.length === 0;
  $('#style-sliders').replaceChildren(...styles.map((run) => {
    const slider = el('input', {
      type: 'range', min: '0', max: '1', step: '0.05', value: '0',
      dataset: { style: run, testid: 'style-slider' },
      oninput: (event) => { showStyleWeight(event.target); edited('settings'); },
    });
    return el('label', { class: 'style-row' }, el('span', { class: 'style-name' }, run), slider,
      el('output', { class: 'style-weight' }, '0'));
  }));
}

function showStyleWeight(slider) {
  const output = slider.parentElement?.querySelector('output');
  if (output) output.textContent = formatNumber(Number.parseFloat(slider.value), 2);
}

// ---------------------------------------------------------------------------- voices

const MIX = '__mix__'; // the select's value for "a mix" (no author is called that)

function renderVoices() {
  const voices = state.info?.voices ?? [];
  $('#voices').hidden = voices.length === 0;
  const current = $('#voice').value;
  $('#voice').replaceChildren(
    ...voices.map((name, index) => el('option', { value: name }, index === 0 ? t('s.voice.target', { name }) : name)),
    voices.length > 1 ? el('option', { value: MIX }, t('s.voice.mix')) : null);
  if (current) $('#voice').value = current;
  $('#voice-sliders').replaceChildren(...voices.map((name) => {
    const slider = el('input', {
      type: 'range', min: '0', max: '1', step: '0.05', value: '0',
      dataset: { voice: name, testid: 'voice-slider' },
      oninput: (event) => { showStyleWeight(event.target); edited('settings'); },
    });
    return el('label', { class: 'style-row' }, el('span', { class: 'style-name' }, name), slider,
      el('output', { class: 'style-weight' }, '0'));
  }));
}

/** Show a document's voice ({name: weight}): one voice in the picker, several as a mix on the sliders. */
function fillVoice(voice) {
  const voices = state.info?.voices ?? [];
  if (!voices.length) return;
  const chosen = Object.entries(voice ?? {}).filter(([name, weight]) => voices.includes(name) && weight > 0);
  $('#voice').value = chosen.length > 1 ? MIX : chosen[0]?.[0] ?? voices[0];
  for (const slider of $$('input[data-voice]')) {
    slider.value = chosen.length > 1 ? (voice[slider.dataset.voice] ?? 0) : Number(slider.dataset.voice === $('#voice').value);
    showStyleWeight(slider);
  }
  $('#voice-sliders').hidden = $('#voice').value !== MIX;
}

/** One voice picked: its slider at 1, the others at 0; "a mix": the sliders, from where they are. */
function pickVoice() {
  const picked = $('#voice').value;
  $('#voice-sliders').hidden = picked !== MIX;
  if (picked !== MIX) {
    for (const slider of $$('input[data-voice]')) {
      slider.value = slider.dataset.voice === picked ? '1' : '0';
      showStyleWeight(slider);
    }
  }
  edited('settings');
}

/** The voice on the page: {name: 1}, or the mix's weights; undefined when the double has no voices. */
function readVoice() {
  if (!(state.info?.voices ?? []).length) return undefined;
  const picked = $('#voice').value;
  $('#voice-sliders').hidden = picked !== MIX;
  if (picked !== MIX) return picked ? { [picked]: 1 } : undefined;
  const weights = {};
  for (const slider of $$('input[data-voice]')) {
    const weight = Number.parseFloat(slider.value);
    if (weight > 0) weights[slider.dataset.voice] = weight;
  }
  return Object.keys(weights).length ? weights : undefined;
}

function showLastSeed() {
  $('#last-seed').textContent = state.lastSeed === null ? '' : t('s.lastSeed', { seed: String(state.lastSeed) });
}

// ---------------------------------------------------------------------------- context meter

const METER_PARTS = ['memory', 'world_info', 'authors_note', 'story'];

function scheduleMeter() {
  clearTimeout(state.meterTimer);
  state.meterTimer = setTimeout(refreshMeter, 150);
}

async function refreshMeter() {
  clearTimeout(state.meterTimer);
  if (!state.doc) return;
  const id = state.doc.id;
  const maxNew = readSettings().max_new_tokens ?? state.info?.defaults?.max_new_tokens ?? 200;
  try {
    const meter = await api(`/studio/api/documents/${id}/context?max_new_tokens=${maxNew}`);
    if (state.doc?.id !== id) return;
    state.meter = meter;
  } catch (error) {
    if (error instanceof ApiError && error.status === 422) state.meter = null;
    else return; // keep the last meter; the save state already says the server is away
  }
  renderMeter();
}

/**
 * The budget as one stacked bar: the parts of the prompt, the tokens kept for the continuation,
 * and what is left over. `budget` is the whole window (prompt + continuation).
 */
function renderMeter() {
  const meter = state.meter;
  const bar = $('#meter-bar');
  const legend = $('#meter-legend');
  if (!meter) {
    bar.replaceChildren();
    legend.replaceChildren();
    $('#meter-note').textContent = '';
    return;
  }
  const parts = METER_PARTS.map((name) => meter.parts.find((part) => part.part === name)
    ?? { part: name, tokens: 0, cut_tokens: 0 });
  const free = Math.max(0, meter.budget - meter.used - meter.max_new_tokens);
  const segments = [
    ...parts.map((part) => ({ name: part.part, tokens: part.tokens, cut: part.cut_tokens ?? 0 })),
    { name: 'continuation', tokens: meter.max_new_tokens, cut: 0 },
    { name: 'free', tokens: free, cut: 0 },
  ];
  const total = Math.max(meter.budget, segments.reduce((sum, part) => sum + part.tokens, 0), 1);
  bar.replaceChildren(...segments.filter((part) => part.tokens > 0).map((part) => el('span', {
    class: `meter-segment part-${part.name}`,
    style: `flex-basis: ${(100 * part.tokens) / total}%`,
    title: `${t(`meter.${part.name}`)}: ${formatNumber(part.tokens)}`,
  })));
  bar.setAttribute('aria-label', segments.map((part) => `${t(`meter.${part.name}`)} ${part.tokens}`).join(', '));
  legend.replaceChildren(...segments.map((part) => el('li', {
    class: 'meter-row', dataset: { testid: `meter-${part.name.replace('_', '-')}`, tokens: String(part.tokens), cut: String(part.cut) },
  },
  el('span', { class: `swatch part-${part.name}`, 'aria-hidden': 'true' }),
  el('span', { class: 'meter-name' }, t(`meter.${part.name}`)),
  el('span', { class: 'meter-tokens' }, formatNumber(part.tokens)),
  part.cut > 0 ? el('span', { class: 'meter-cut' }, t('meter.cut', { count: part.cut, n: formatNumber(part.cut) })) : null)));
  $('#meter-note').textContent = t('meter.total', {
    used: formatNumber(meter.used), budget: formatNumber(meter.budget), reserve: formatNumber(meter.max_new_tokens),
  });
  markWorldInfoInContext();
}

// ---------------------------------------------------------------------------- continuing

/** The request body of a generation: the page's settings; a seed only when the writer fixed one. */
function generationRequest() {
  const settings = readSettings();
  const body = { ...settings };
  if (body.seed === null) delete body.seed;
  return body;
}

async function startGeneration(request = null) {
  if (!state.doc || state.generation?.running || state.changing) return;
  if (state.generation) await chooseVariant(null, undefined, { quiet: true }); // unpicked variants count as discarded
  if (!(await flush())) {
    notify(t('err.unsaved'));
    return;
  }
  const body = request ?? generationRequest();
  const documentId = state.doc.id;
  const generation = {
    documentId,
    request: body,
    id: null,
    controller: new AbortController(),
    running: true,
    stopped: false,
    error: null,
    variants: Array.from({ length: body.n ?? state.info?.defaults?.n ?? 1 }, () => ({ text: '', result: null })),
  };
  state.generation = generation;
  renderVariants();
  setGenerationStatus(() => t('gen.writing'));
  try {
    const response = await api(`/studio/api/documents/${documentId}/generate`, {
      method: 'POST', body, signal: generation.controller.signal, raw: true,
    });
    let finished = false;
    for await (const { event, data } of readEvents(response)) {
      if (state.generation !== generation) break;
      if (event === 'start') {
        generation.id = data.generation_id;
        state.lastSeed = data.seed;
        showLastSeed();
        if (data.context) { state.meter = data.context; renderMeter(); }
      } else if (event === 'text') {
        const variant = ensureVariant(generation, data.variant);
        variant.text += data.text;
        updateVariantText(data.variant);
      } else if (event === 'done') {
        generation.id ??= data.generation_id;
        data.variants.forEach((result, index) => {
          const variant = ensureVariant(generation, index);
          variant.text = result.text;
          variant.result = result;
        });
        generation.variants.length = data.variants.length;
        finished = true;
      } else if (event === 'error') {
        throw new Error(typeof data === 'string' ? data : data.msg);
      }
    }
    if (!finished && !generation.stopped) throw new Error(t('gen.cut'));
  } catch (error) {
    if (error.name === 'AbortError' || generation.stopped) {
      generation.stopped = true;
    } else {
      generation.error = error;
    }
  } finally {
    generation.running = false;
    clearTimeout(generation.abortTimer);
  }
  if (state.generation !== generation) return;
  if (generation.error) {
    const busy = generation.error instanceof ApiError && generation.error.status === 503;
    const { error } = generation;
    setGenerationStatus(() => (busy ? t('gen.busy', { seconds: error.retryAfter ?? 5 }) : describeError(error)), true);
    if (!generation.id) state.generation = null; // nothing was written: no cards to keep
  } else {
    const count = generation.variants.length;
    setGenerationStatus(generation.stopped ? () => t('gen.stopped') : () => t('gen.done', { count }));
  }
  renderVariants();
  if (activeTab() === 'log') refreshLog();
}

function ensureVariant(generation, index) {
  while (generation.variants.length <= index) {
    generation.variants.push({ text: '', result: null });
    renderVariants();
  }
  return generation.variants[index];
}

function abortGeneration({ silent = false } = {}) {
  const generation = state.generation;
  if (!generation?.running) return;
  generation.stopped = true;
  if (silent || !generation.id) {
    generation.controller.abort(); // closing the stream stops the server too
    return;
  }
  // Asking the server to stop keeps the stream open for its last event: the variants as far as
  // they got, logged as "aborted", which the writer can still pick from. Closing the stream is
  // the fallback when the server does not answer.
  setGenerationStatus(() => t('gen.stopping'));
  api(`/studio/api/generations/${generation.id}/abort`, { method: 'POST' }).catch(() => generation.controller.abort());
  generation.abortTimer = setTimeout(() => generation.controller.abort(), 5000);
}

/** Append variant `index` (or the writer's edit of it) to the story; `index` null discards all. */
async function chooseVariant(index, text, { quiet = false } = {}) {
  const generation = state.generation;
  if (!generation || generation.running || state.changing) return;
  if (!generation.id) { // stopped before the server named it: nothing was recorded
    state.generation = null;
    renderVariants();
    return;
  }
  const body = { variant: index };
  if (text !== undefined) body.text = text;
  const send = () => api(`/studio/api/generations/${generation.id}/choose`, { method: 'POST', body });
  try {
    if (index === null) {
      await send(); // discarding changes nothing in the document: the page stays as it is
    } else if (!(await changeOnServer(send))) {
      return; // not saved first (the server is away, or the document changed elsewhere): the variants stay
    }
    if (state.generation === generation) state.generation = null;
    renderVariants();
    setGenerationStatus(quiet ? '' : index === null ? () => t('gen.discarded') : () => t('gen.appended'));
    if (index !== null) {
      const editor = $('#editor');
      editor.scrollTop = editor.scrollHeight;
    }
  } catch (error) {
    if (quiet) { state.generation = null; renderVariants(); return; }
    notify(describeError(error));
  }
  if (activeTab() === 'log') refreshLog();
}

// Status lines are kept as functions, so a change of language re-words them.
const statusLines = {};

function setStatus(selector, message, isError = false) {
  statusLines[selector] = { render: typeof message === 'function' ? message : () => message, isError };
  showStatus(selector);
}

function showStatus(selector) {
  const line = statusLines[selector];
  if (!line) return;
  $(selector).textContent = line.render();
  $(selector).classList.toggle('error', line.isError);
}

const setGenerationStatus = (message, isError = false) => setStatus('#gen-status', message, isError);

function renderGenerationControls() {
  const generation = state.generation;
  const running = Boolean(generation?.running);
  const hasCards = Boolean(generation && !running);
  $('#continue').disabled = running || !state.doc;
  $('#stop').hidden = !running;
  $('#retry').hidden = !hasCards;
  $('#discard').hidden = !hasCards;
}

function renderVariants() {
  renderGenerationControls();
  const generation = state.generation;
  const box = $('#variants');
  if (!generation) {
    box.replaceChildren();
    return;
  }
  box.replaceChildren(...generation.variants.map((variant, index) => variantCard(generation, variant, index)));
}

function variantCard(generation, variant, index) {
  const status = generation.running ? 'streaming' : variant.result ? 'done' : 'stopped';
  // The server can append only variants it has recorded, i.e. those that reached the `done` event.
  const canPick = !generation.running && Boolean(generation.id && variant.result) && variant.text.length > 0;
  const text = el('div', { class: 'variant-text prose', dataset: { testid: 'variant-text' } }, variant.text);
  const editor = el('textarea', { class: 'variant-edit prose', hidden: true, rows: 6, dataset: { testid: 'variant-edit' },
    'aria-label': t('gen.variant', { n: index + 1 }) });
  const pick = el('button', { type: 'button', class: 'primary', disabled: !canPick, dataset: { testid: 'pick' },
    onclick: () => chooseVariant(index) }, t('gen.pick'));
  const edit = el('button', { type: 'button', disabled: !canPick, dataset: { testid: 'edit' }, onclick: () => {
    editor.value = variant.text;
    text.hidden = true;
    editor.hidden = false;
    pick.hidden = true;
    edit.hidden = true;
    appendEdited.hidden = false;
    cancelEdit.hidden = false;
    editor.focus();
  } }, t('gen.edit'));
  const appendEdited = el('button', { type: 'button', class: 'primary', hidden: true, dataset: { testid: 'append-edited' },
    onclick: () => chooseVariant(index, editor.value) }, t('gen.appendEdited'));
  const cancelEdit = el('button', { type: 'button', hidden: true, onclick: () => renderVariants() }, t('app.cancel'));
  return el('article', { class: 'variant', dataset: { testid: 'variant', index: String(index), state: status } },
    el('header', { class: 'variant-head' },
      el('h3', { class: 'variant-number' }, t('gen.variant', { n: index + 1 })),
      el('span', { class: 'variant-meta muted' }, variantMeta(variant, status))),
    text,
    editor,
    copyScore(generation, variant),
    el('div', { class: 'variant-actions' }, pick, edit, appendEdited, cancelEdit,
      index < 9 ? el('kbd', { class: 'muted small', title: t('gen.pick.key', { n: index + 1 }) }, String(index + 1)) : null));
}

function variantMeta(variant, status) {
  if (status === 'streaming') return t('gen.streaming');
  if (!variant.result) return t('gen.stoppedShort');
  const reason = variant.result.finish_reason;
  const reasonText = t.has(`finish.${reason}`) ? t(`finish.${reason}`) : reason;
  return `${t('gen.tokens', { count: variant.result.new_tokens, n: formatNumber(variant.result.new_tokens) })} · ${reasonText}`;
}

/** "How much of this is the author's books": the longest copied span, in normalised words when the server measures
 * them (else in tokens), alarming past `dvoinik check`'s threshold or the guard, and marked when it is a copy the
 * token guard could not see. */
function copyScore(generation, variant) {
  if (!variant.result) return null;
  const copy = variant.result.copy;
  const guard = generation.request.guard ?? state.info?.defaults?.guard ?? 0;
  const tokens = copy?.tokens ?? 0;
  const words = copy?.words ?? null; // null: the server has no word index
  const minWords = state.info?.defaults?.min_words ?? COPY_ALARM_WORDS;
  const missed = Boolean(copy?.missed_by_guard);
  const alarm = missed || (words !== null && words >= minWords)
    || (tokens > 0 && (tokens >= COPY_ALARM_TOKENS || (guard > 0 && tokens >= guard)));
  const node = el('p', { class: `copy-score${alarm ? ' alarm' : ''}`, dataset: {
    testid: 'copy-score', tokens: String(tokens), words: words === null ? '' : String(words), missed: String(missed) } });
  if (!copy || (words ?? tokens) === 0) {
    node.textContent = t('copy.none');
    return node;
  }
  const [work, author, text] = words !== null
    ? [copy.words_work, copy.words_author, copy.words_text] : [copy.work, copy.author, copy.text];
  const source = [work ? `«${work}»` : '', author ?? ''].filter(Boolean).join(', ');
  const amount = words !== null
    ? `${t('copy.words', { count: words, n: formatNumber(words) })} ${t('copy.wordsTokens', { count: copy.words_tokens, n: formatNumber(copy.words_tokens) })}`
    : t('copy.span', { count: tokens, n: formatNumber(tokens) });
  node.append(
    el('span', { class: 'copy-tokens' }, amount),
    source ? ` — ${source}` : '',
    missed
      ? el('strong', { class: 'copy-missed', title: t('copy.missedWhy', { n: guard }), dataset: { testid: 'copy-missed' } },
        ` ${t('copy.missed')}`)
      : alarm ? el('strong', { class: 'copy-alarm' }, ` ${t('copy.alarm')}`) : '');
  if (text) node.title = text;
  return node;
}

function updateVariantText(index) {
  const card = $(`.variant[data-index="${index}"]`);
  if (!card) { renderVariants(); return; }
  $('.variant-text', card).textContent = state.generation.variants[index].text;
}

// ---------------------------------------------------------------------------- log and exports

async function refreshLog() {
  if (!state.doc) return;
  const id = state.doc.id;
  try {
    const log = await api(`/studio/api/generations?document=${id}&limit=50`);
    if (state.doc?.id !== id) return;
    state.log = log;
  } catch (error) {
    notify(describeError(error));
    return;
  }
  renderLog();
}

function renderLog() {
  const log = state.log ?? [];
  $('#log-empty').hidden = log.length > 0;
  $('#log').start = log.length; // newest first, numbered as the document's generations
  $('#log').replaceChildren(...log.map((entry) => {
    const settings = Object.entries(entry.settings ?? {})
      .filter(([, value]) => value !== null && typeof value !== 'object')
      .map(([name, value]) => `${name}=${value}`).join(' · ');
    const chosen = entry.chosen === null || entry.chosen === undefined
      ? t('log.noneChosen') : t('log.chosen', { n: entry.chosen + 1 });
    const status = t.has(`log.status.${entry.status}`) ? t(`log.status.${entry.status}`) : entry.status;
    const prompt = entry.prompt ?? '';
    return el('li', { class: 'log-entry', dataset: { testid: 'log-entry', status: entry.status } },
      el('details', {},
        el('summary', {},
          el('span', { class: 'log-time' }, formatTime(entry.created_at)), ' · ', status, ' · ',
          t('log.variants', { count: entry.variants?.length ?? 0 }), ' · ', chosen),
        el('dl', { class: 'log-facts' },
          el('dt', {}, t('log.seed')), el('dd', {}, String(entry.seed ?? '—')),
          el('dt', {}, t('log.checkpoint')), el('dd', {}, entry.checkpoint ?? '—'),
          el('dt', {}, t('log.settings')), el('dd', { class: 'mono' }, settings || '—')),
        el('p', { class: 'log-label' }, t('log.prompt')),
        el('p', { class: 'log-prompt prose-small' }, prompt.length > 300 ? `…${prompt.slice(-300)}` : prompt),
        el('ol', { class: 'log-variants' }, (entry.variants ?? []).map((variant, index) => el('li', {
          class: index === entry.chosen ? 'chosen' : '',
        }, typeof variant === 'string' ? variant : variant.text ?? ''))),
        entry.chosen_text && entry.chosen !== null && entry.variants?.[entry.chosen]
          && entry.chosen_text !== (entry.variants[entry.chosen].text ?? entry.variants[entry.chosen])
          ? el('div', {}, el('p', { class: 'log-label' }, t('log.edited')), el('p', { class: 'prose-small' }, entry.chosen_text))
          : null));
  }));
}

async function exportFile(kind) {
  try {
    if (kind === 'prefs') await download('/studio/api/export/preferences.jsonl', 'preferences.jsonl');
    else if (state.doc) await download(`/studio/api/documents/${state.doc.id}/export?format=${kind}`, `document.${kind}`);
  } catch (error) {
    notify(describeError(error));
  }
}

// ---------------------------------------------------------------------------- blind tests

async function refreshBlindTests() {
  try {
    state.blindTests = await api('/studio/api/blind-tests');
  } catch (error) {
    notify(describeError(error));
    return;
  }
  renderBlindTests();
}

async function createBlindTest(event) {
  event.preventDefault();
  if (state.blindBusy) return;
  const passages = numberOf($('#blind-passages'), true);
  const body = { kind: $('#blind-kind').value };
  if (passages !== undefined) body.passages = passages;
  if ($('#blind-title').value.trim()) body.title = $('#blind-title').value.trim();
  state.blindBusy = true;
  $('#blind-create').disabled = true;
  setStatus('#blind-status', () => t('blind.creating'));
  try {
    await api('/studio/api/blind-tests', { method: 'POST', body });
    setStatus('#blind-status', () => t('blind.created'));
    $('#blind-title').value = '';
    await refreshBlindTests();
  } catch (error) {
    setStatus('#blind-status', () => describeError(error), true);
  } finally {
    state.blindBusy = false;
    $('#blind-create').disabled = false;
  }
}

/** Close a test for good: no more answers; the results (and which passage was whose) are shown. */
async function closeBlindTest(test) {
  if (!confirm(t('blind.close.confirm', { title: test.title }))) return;
  try {
    await api(`/studio/api/blind-tests/${test.id}/close`, { method: 'POST' });
  } catch (error) {
    notify(describeError(error));
    return;
  }
  await refreshBlindTests();
}

async function deleteBlindTest(test) {
  if (!confirm(t('blind.delete.confirm', { title: test.title }))) return;
  try {
    await api(`/studio/api/blind-tests/${test.id}`, { method: 'DELETE' });
  } catch (error) {
    notify(describeError(error));
    return;
  }
  await refreshBlindTests();
}

function renderBlindTests() {
  $('#blind-local').hidden = state.info?.shareable !== false;
  // A server built without a workspace (no held-out texts) cannot make tests; it can still show them.
  const canCreate = state.info?.blind_tests !== false;
  $('#blind-create').disabled = !canCreate || state.blindBusy;
  if (!canCreate) setStatus('#blind-status', () => t('blind.unavailable'));
  const tests = state.blindTests ?? [];
  $('#blind-empty').hidden = tests.length > 0;
  $('#blind-list').replaceChildren(...tests.map((test) => {
    const link = new URL(test.url, location.origin).href;
    const count = Array.isArray(test.items) ? test.items.length : test.items;
    const copyButton = el('button', { type: 'button', class: 'link', onclick: async () => {
      try {
        await navigator.clipboard.writeText(link);
        copyButton.textContent = t('blind.copied');
      } catch {
        window.prompt(t('blind.copy'), link);
      }
    } }, t('blind.copy'));
    return el('article', { class: 'blind-test', dataset: { testid: 'blind-test', id: String(test.id) } },
      el('header', { class: 'blind-test-head' },
        el('h4', {}, test.title || t('blind.untitled')),
        el('span', { class: 'muted small' }, `${formatTime(test.created_at)} · ${t('blind.items', { count, n: count })}`)),
      el('p', { class: 'blind-link-row' },
        el('a', { href: link, target: '_blank', rel: 'noopener', dataset: { testid: 'blind-link' } }, link), ' ', copyButton),
      test.status === 'closed' ? blindResults(test.results) : blindOpen(test),
      el('button', { type: 'button', class: 'link danger', dataset: { testid: 'blind-delete' },
        onclick: () => deleteBlindTest(test) }, t('blind.delete')));
  }));
}

/** An open test: how many have answered, and the button that closes it (results are sealed until then). */
function blindOpen(test) {
  const readers = test.readers ?? 0;
  return el('div', { class: 'blind-open' },
    el('p', { class: 'muted small', dataset: { testid: 'blind-readers' } },
      readers ? t('blind.readers', { count: readers, n: readers }) : t('blind.noAnswers')),
    el('p', { class: 'hint' }, t('blind.sealed')),
    el('button', { type: 'button', dataset: { testid: 'blind-close' }, disabled: readers === 0,
      onclick: () => closeBlindTest(test) }, t('blind.close')));
}

function blindResults(results) {
  if (!results?.overall?.answers) return el('p', { class: 'muted small', dataset: { testid: 'blind-results' } }, t('blind.noAnswers'));
  const rows = [
    ['overall', t('blind.overall'), results.overall],
    ['single', t('blind.single'), results.single],
    ['pairs', t('blind.pairs'), results.pairs],
    ...(results.readers ?? []).map((reader) => ['reader', reader.reader, reader]),
  ].filter(([, , score]) => score && score.answers > 0);
  const header = ['blind.col.who', 'blind.col.accuracy', 'blind.col.ci', 'blind.col.p']
    .map((key) => el('th', { scope: 'col', title: t(`${key}.hint`) }, t(key)));
  return el('div', { class: 'table-wrap' },
    el('table', { class: 'results', dataset: { testid: 'blind-results' } },
      el('thead', {}, el('tr', {}, header)),
      el('tbody', {}, rows.map(([kind, label, score]) => el('tr', { dataset: { testid: `blind-row-${kind}` } },
        el('th', { scope: 'row' }, label),
        el('td', { dataset: { testid: 'accuracy' } }, formatPercent(score.accuracy),
          el('span', { class: 'muted' }, ` ${score.correct}/${score.answers}`)),
        el('td', { dataset: { testid: 'ci' } }, `${formatPercent(score.ci_low)}–${formatPercent(score.ci_high)}`),
        el('td', {}, formatP(score.p_value)))))),
    el('p', { class: 'hint', dataset: { testid: 'blind-chance' } }, t('blind.chance', { chance: formatPercent(results.overall.chance) })),
    el('p', { class: 'hint' }, verdict(results.overall)));
}

/** One sentence a writer can read: could the readers tell? */
function verdict(score) {
  if (score.p_value < 0.05 && score.accuracy > score.chance) return t('blind.verdict.tell');
  if (score.ci_high < score.chance) return t('blind.verdict.fooled');
  return t('blind.verdict.cannot');
}

// ---------------------------------------------------------------------------- interviews

const INTERVIEW_STORAGE = 'dvoinik.interview';
const escapeBreaks = (text) => (text ?? '').replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
const unescapeBreaks = (text) => text.replace(/\\(n|\\)/g, (_, c) => (c === 'n' ? '\n' : '\\'));

async function loadInterviews() {
  try {
    state.frames ??= await api('/studio/api/interview/frames');
    state.interviews = await api('/studio/api/interviews');
  } catch (error) {
    notify(describeError(error));
    return;
  }
  renderFrameKinds();
  const remembered = Number(localStorage.getItem(INTERVIEW_STORAGE));
  const chosen = state.interviews.find((item) => item.id === (state.interview?.id ?? remembered)) ?? state.interviews[0];
  if (chosen) await openInterview(chosen.id);
  else { state.interview = null; renderInterviews(); }
}

async function openInterview(id) {
  try {
    state.interview = await api(`/studio/api/interviews/${id}`);
  } catch (error) {
    notify(describeError(error));
    return;
  }
  localStorage.setItem(INTERVIEW_STORAGE, String(id));
  fillFrame(state.interview.frame);
  renderInterviews();
}

async function createInterview() {
  try {
    const title = t('iv.untitled', { n: (state.interviews?.length ?? 0) + 1 });
    const created = await api('/studio/api/interviews', { method: 'POST', body: { title } });
    state.interviews = await api('/studio/api/interviews');
    await openInterview(created.id);
    $('#iv-question').focus();
  } catch (error) {
    notify(describeError(error));
  }
}

async function deleteInterview() {
  const interview = state.interview;
  if (!interview || !window.confirm(t('iv.delete.confirm', { title: interview.title }))) return;
  try {
    await api(`/studio/api/interviews/${interview.id}`, { method: 'DELETE' });
  } catch (error) {
    notify(describeError(error));
    return;
  }
  state.interview = null;
  localStorage.removeItem(INTERVIEW_STORAGE);
  await loadInterviews();
}

function renderFrameKinds() {
  const names = [...(state.frames?.names ?? []), 'custom'];
  $('#iv-frame-kind').replaceChildren(...names.map((name) => el('option', { value: name }, t(`iv.kind.${name}`))));
}

function frameLabel(frame) {
  return t.has(`iv.kind.${frame.name}`) ? t(`iv.kind.${frame.name}`) : frame.name;
}

function fillFrame(frame) {
  $('#iv-frame-kind').value = frame.name in (state.frames?.builtin ?? {}) ? frame.name : 'custom';
  $('#iv-preamble').value = frame.preamble ?? '';
  $('#iv-question-template').value = escapeBreaks(frame.question);
  $('#iv-answer-opening').value = escapeBreaks(frame.answer);
  $('#iv-end').value = escapeBreaks(frame.end);
  $('#iv-frame-name').textContent = frameLabel(frame);
}

function showBuiltinFrame() {
  const builtin = state.frames?.builtin?.[$('#iv-frame-kind').value];
  if (builtin) fillFrame({ ...builtin, preamble: $('#iv-preamble').value });
}

function frameOnPage() {
  const kind = $('#iv-frame-kind').value;
  const frame = {
    name: kind, preamble: $('#iv-preamble').value, question: unescapeBreaks($('#iv-question-template').value),
    answer: unescapeBreaks($('#iv-answer-opening').value), end: unescapeBreaks($('#iv-end').value),
  };
  const builtin = state.frames?.builtin?.[kind];
  if (!builtin || ['question', 'answer', 'end'].some((part) => builtin[part] !== frame[part])) frame.name = 'custom';
  return frame;
}

async function saveFrame() {
  if (!state.interview) return;
  try {
    state.interview = await api(`/studio/api/interviews/${state.interview.id}`, {
      method: 'PATCH', body: { frame: frameOnPage() },
    });
  } catch (error) {
    setStatus('#iv-status', () => describeError(error), true);
    return;
  }
  fillFrame(state.interview.frame);
  renderInterviews();
  setStatus('#iv-status', () => t('iv.frame.saved'));
}

function renderInterviews() {
  const list = state.interviews ?? [];
  $('#iv-empty').hidden = list.length > 0;
  $('#iv-select').hidden = list.length === 0;
  $('#iv-delete').hidden = !state.interview;
  $('#iv-select').replaceChildren(...list.map((item) => el('option', { value: String(item.id) }, item.title)));
  if (state.interview) $('#iv-select').value = String(state.interview.id);
  $('#iv-view').hidden = !state.interview;
  if (!state.interview) return;
  const asking = state.asking?.interviewId === state.interview.id ? state.asking : null;
  const turns = state.interview.turns.map((turn) => interviewTurn(turn.question, turn.answer, turn));
  if (asking) turns.push(interviewTurn(asking.question, asking.text, null));
  $('#iv-turns').replaceChildren(...(turns.length ? turns : [el('li', { class: 'muted small' }, t('iv.noTurns'))]));
  $('#iv-ask').disabled = Boolean(state.asking);
  $('#iv-stop').hidden = !asking;
  $('#iv-undo').disabled = Boolean(state.asking) || state.interview.turns.length === 0;
}

function interviewTurn(question, answer, turn) {
  const frame = state.interview.frame;
  const copy = turn ? copyScore({ request: {} }, { result: { copy: turn.copy } }) : null;
  return el('li', { class: 'iv-turn', dataset: { testid: 'iv-turn', number: turn ? String(turn.number) : '' } },
    el('p', { class: 'iv-q prose-small', dataset: { testid: 'iv-turn-question' } },
      frame.question.replace('{question}', question).trim()),
    el('p', { class: 'iv-a prose-small', dataset: { testid: 'iv-turn-answer' } }, `${frame.answer}${answer.trim()}`),
    copy);
}

async function askQuestion() {
  const interview = state.interview;
  const question = $('#iv-question').value.trim();
  if (!interview || !question || state.asking) return;
  const settings = readSettings();
  const body = { question };
  for (const name of ['preset', 'max_new_tokens', 'temperature', 'top_p', 'repetition_penalty', 'guard', 'voice']) {
    if (settings[name] !== undefined && settings[name] !== null) body[name] = settings[name];
  }
  const asking = { interviewId: interview.id, question, text: '', controller: new AbortController() };
  state.asking = asking;
  renderInterviews();
  setStatus('#iv-status', () => t('iv.asking'));
  let kept = null;
  let dropped = 0;
  try {
    const response = await api(`/studio/api/interviews/${interview.id}/ask`, {
      method: 'POST', body, signal: asking.controller.signal, raw: true,
    });
    for await (const { event, data } of readEvents(response)) {
      if (event === 'start') dropped = data.turns_dropped ?? 0;
      else if (event === 'text') { asking.text += data.text; renderInterviews(); }
      else if (event === 'done') kept = data.turn;
      else if (event === 'error') throw new Error(typeof data === 'string' ? data : data.msg);
    }
    $('#iv-question').value = '';
    setStatus('#iv-status', () => (kept ? t('iv.answered') : t('iv.noAnswer'))
      + (dropped ? ` ${t('iv.dropped', { count: dropped, n: dropped })}` : ''));
  } catch (error) {
    if (error.name !== 'AbortError') setStatus('#iv-status', () => describeError(error), true);
    else setStatus('#iv-status', () => t('gen.stopped'));
  } finally {
    state.asking = null;
  }
  if (state.interview?.id === interview.id) await openInterview(interview.id); // the turn as the store kept it
  try { state.interviews = await api('/studio/api/interviews'); } catch { /* the list refreshes next time */ }
  renderInterviews();
}

async function takeBackAnswer() {
  if (!state.interview || state.asking) return;
  try {
    state.interview = await api(`/studio/api/interviews/${state.interview.id}/undo`, { method: 'POST' });
  } catch (error) {
    setStatus('#iv-status', () => (error instanceof ApiError && error.status === 409 ? t('iv.undo.none')
      : describeError(error)), true);
    return;
  }
  renderInterviews();
}

// ---------------------------------------------------------------------------- tabs, language, keys

const TABS = ['context', 'sampler', 'log', 'blind', 'interview'];

function activeTab() {
  return TABS.find((name) => $(`#tab-${name}`).getAttribute('aria-selected') === 'true') ?? 'context';
}

function selectTab(name, { focus = false } = {}) {
  for (const tab of TABS) {
    const selected = tab === name;
    const button = $(`#tab-${tab}`);
    button.setAttribute('aria-selected', String(selected));
    button.tabIndex = selected ? 0 : -1;
    $(`#panel-${tab}`).hidden = !selected;
    if (selected && focus) button.focus();
  }
  localStorage.setItem('dvoinik.tab', name);
  if (name === 'log') refreshLog();
  if (name === 'blind') refreshBlindTests();
  if (name === 'interview' && state.info) loadInterviews();
}

function setupTabs() {
  for (const name of TABS) {
    const button = $(`#tab-${name}`);
    button.addEventListener('click', () => selectTab(name));
    button.addEventListener('keydown', (event) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (!step) return;
      event.preventDefault();
      selectTab(TABS[(TABS.indexOf(name) + step + TABS.length) % TABS.length], { focus: true });
    });
  }
  const saved = localStorage.getItem('dvoinik.tab');
  selectTab(TABS.includes(saved) ? saved : 'context');
}

function renderLanguage() {
  applyI18n(document);
  for (const button of $$('[data-lang]')) button.setAttribute('aria-pressed', String(button.dataset.lang === getLang()));
  $('#editor').lang = getLang() === 'en' ? '' : 'ru';
  setSaveState(state.saveState, state.saveMessage);
  renderDocumentList();
  if (state.doc) {
    // Entries are rebuilt from their values so their labels change language; blank ones stay too.
    renderWorldInfo(worldInfoOnPage().map(({ entry }) => entry));
    updateEditorStats();
  }
  updatePresetHints();
  renderKept();
  showLastSeed();
  showStatus('#gen-status');
  showStatus('#blind-status');
  renderMeter();
  renderVariants();
  if (state.log) renderLog();
  if (state.blindTests) renderBlindTests();
  if (state.info) renderVoices();
  if (state.info) fillVoice(readVoice());
  if (state.interviews) renderInterviews();
  showStatus('#iv-status');
  if (state.info) $('#checkpoint').textContent = t('app.checkpoint', { checkpoint: state.info.checkpoint });
}

const isTextField = (node) => node instanceof HTMLTextAreaElement
  || (node instanceof HTMLInputElement && !['checkbox', 'radio', 'range', 'button', 'submit'].includes(node.type))
  || node?.isContentEditable;

function onKeyDown(event) {
  const mod = event.ctrlKey || event.metaKey;
  if (mod && event.key === 'Enter') {
    event.preventDefault();
    startGeneration();
  } else if (event.key === 'Escape' && state.generation?.running) {
    event.preventDefault();
    abortGeneration();
  } else if (mod && event.key.toLowerCase() === 's') {
    event.preventDefault();
    flush();
  } else if (mod && !isTextField(document.activeElement)
    && (event.key.toLowerCase() === 'z' || event.key.toLowerCase() === 'y')) {
    // Inside a text field the browser's own undo edits the field; outside it, the document's history.
    event.preventDefault();
    history(event.key.toLowerCase() === 'y' || event.shiftKey ? 'redo' : 'undo');
  } else if (!mod && !event.altKey && /^[1-9]$/.test(event.key) && !isTextField(document.activeElement)
    && state.generation && !state.generation.running) {
    // A bare digit picks a variant, but only outside text fields, where a digit is not text.
    // (Alt+digit would be nicer, but Chromium on Linux keeps it for switching browser tabs.)
    const index = Number(event.key) - 1;
    if (index < state.generation.variants.length) {
      event.preventDefault();
      chooseVariant(index);
    }
  }
}

function askForKeyDialog() {
  const dialog = $('#key-dialog');
  const input = $('#key-input');
  input.value = '';
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => {
      resolve(dialog.returnValue === 'ok' && input.value.trim() ? input.value.trim() : null);
    }, { once: true });
    dialog.showModal();
  });
}

// ---------------------------------------------------------------------------- start

function wireEvents() {
  $('#doc-new').addEventListener('click', createDocument);
  $('#doc-delete').addEventListener('click', deleteDocument);
  $('#undo').addEventListener('click', () => history('undo'));
  $('#redo').addEventListener('click', () => history('redo'));
  $('#doc-title').addEventListener('input', () => edited('title'));
  $('#doc-title').addEventListener('change', () => {
    if (!$('#doc-title').value.trim() && state.doc) $('#doc-title').value = state.doc.title;
  });
  $('#editor').addEventListener('input', () => { edited('text'); updateEditorStats(); });
  $('#memory').addEventListener('input', () => edited('memory'));
  $('#authors-note').addEventListener('input', () => edited('authors_note'));
  $('#note-depth').addEventListener('input', () => edited('note_depth'));
  for (const field of ['#doc-title', '#editor', '#memory', '#authors-note', '#note-depth', '#wi-list', '#panel-sampler']) {
    $(field).addEventListener('focusout', () => { if (state.unsaved.size) flush(); });
  }
  $('#wi-add').addEventListener('click', () => {
    const entry = worldInfoEntry();
    $('#wi-list').append(entry);
    markWorldInfoInContext();
    $('.wi-keys', entry).focus();
  });
  for (const input of $$('[data-setting]')) {
    input.addEventListener('input', () => {
      if (input.id === 'preset') updatePresetHints();
      edited('settings');
      if (input.id === 'max-new-tokens') scheduleMeter();
    });
  }
  $('#settings-reset').addEventListener('click', () => {
    fillSettings({ preset: $('#preset').value, n: numberOf($('#n'), true) });
    edited('settings');
    scheduleMeter();
  });
  $('#continue').addEventListener('click', () => startGeneration());
  $('#stop').addEventListener('click', () => abortGeneration());
  $('#retry').addEventListener('click', () => startGeneration(state.generation?.request));
  $('#discard').addEventListener('click', () => chooseVariant(null));
  $('#log-refresh').addEventListener('click', refreshLog);
  $('#export-txt').addEventListener('click', () => exportFile('txt'));
  $('#export-md').addEventListener('click', () => exportFile('md'));
  $('#export-prefs').addEventListener('click', () => exportFile('prefs'));
  $('#blind-form').addEventListener('submit', createBlindTest);
  $('#blind-refresh').addEventListener('click', refreshBlindTests);
  $('#voice').addEventListener('change', pickVoice);
  $('#iv-new').addEventListener('click', createInterview);
  $('#iv-delete').addEventListener('click', deleteInterview);
  $('#iv-select').addEventListener('change', () => openInterview(Number($('#iv-select').value)));
  $('#iv-ask').addEventListener('click', askQuestion);
  $('#iv-stop').addEventListener('click', () => state.asking?.controller.abort());
  $('#iv-undo').addEventListener('click', takeBackAnswer);
  $('#iv-frame-kind').addEventListener('change', showBuiltinFrame);
  $('#iv-frame-save').addEventListener('click', saveFrame);
  $('#iv-question').addEventListener('keydown', (event) => {
    if ((event.ctrlKey || event.metaKey) && event.key === 'Enter') {
      event.preventDefault();
      event.stopPropagation(); // not the document's "continue"
      askQuestion();
    }
  });
  $('#notice-close').addEventListener('click', () => { $('#notice').hidden = true; });
  $('#draft-restore').addEventListener('click', restoreKept);
  $('#draft-discard').addEventListener('click', discardKept);
  for (const button of $$('[data-lang]')) button.addEventListener('click', () => setLang(button.dataset.lang));
  document.addEventListener('keydown', onKeyDown);
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'hidden') saveOnLeave();
    else if (activeTab() === 'blind' && state.info) refreshBlindTests(); // readers may have answered meanwhile
  });
  window.addEventListener('beforeunload', saveOnLeave);
  window.addEventListener('online', () => { if (state.unsaved.size) save(); });
}

async function start() {
  setKeyPrompt(askForKeyDialog);
  wireEvents();
  onLangChange(renderLanguage);
  renderLanguage();
  try {
    state.info = await api('/studio/api/info');
  } catch (error) {
    notify(describeError(error), { sticky: true });
    return;
  }
  $('#n').max = String(state.info.max_variants ?? 8);
  $('#max-new-tokens').max = String(state.info.max_new_tokens ?? 1024);
  renderPresets();
  renderStyleSliders();
  renderVoices();
  setupTabs();
  renderLanguage();
  try {
    await loadDocuments();
  } catch (error) {
    notify(describeError(error), { sticky: true });
    return;
  }
  const remembered = localStorage.getItem('dvoinik.document');
  const first = state.documents.find((item) => String(item.id) === remembered) ?? state.documents[0];
  if (first) await openDocument(first.id);
  else closeDocument();
  document.body.dataset.ready = 'true'; // for tests and screenshots: the page has loaded its data
}

start();
