// The reader's page of a blind test: /blind/{token}. One item at a time; the answers are sent
// for a receipt, and no score comes back while the test is open (a score per submission would let
// one reader find the answers under several names). When the author closes the test, the page shows
// the results: every reader's together, and those of the readers who answered on this device (by
// their receipts). The token in the address is the only permission it needs (docs/studio-api.md).

import { applyI18n, formatP, formatPercent, getLang, onLangChange, setLang, t } from './i18n.js';

const $ = (selector) => document.querySelector(selector);
const token = decodeURIComponent(location.pathname.replace(/\/+$/, '').split('/').pop() ?? '');
const base = `/blind/${encodeURIComponent(token)}/api`;
// Progress survives a reload (a reader who closes the tab by mistake keeps their answers).
const storageKey = `dvoinik.blind.${token}`;
// Receipts of the readers who answered on this device: their results, once the test closes.
const receiptsKey = `dvoinik.blind.${token}.receipts`;

const state = {
  test: null, // {title, items: [{index, kind, opening, text} | {index, kind, opening, a, b}]}
  reader: '',
  answers: {}, // item index -> "writer" | "double" | "a" | "b"
  position: 0,
  result: null, // {reader}: sent
  sending: false,
  yours: [], // closed test: [{reader, score}] of this device's receipts
};

function receipts() {
  try {
    const list = JSON.parse(localStorage.getItem(receiptsKey) ?? '[]');
    return Array.isArray(list) ? list : [];
  } catch {
    return [];
  }
}

function keepReceipt(reader, receipt) {
  localStorage.setItem(receiptsKey, JSON.stringify([...receipts(), { reader, receipt }]));
}

function remember() {
  const { reader, answers, position, result } = state;
  localStorage.setItem(storageKey, JSON.stringify({ reader, answers, position, result }));
}

function recall() {
  try {
    Object.assign(state, JSON.parse(localStorage.getItem(storageKey) ?? '{}'));
  } catch { /* a broken entry: start afresh */ }
}

function show(section) {
  for (const id of ['intro', 'item', 'review', 'result', 'closed']) $(`#${id}`).hidden = id !== section;
}

function fail(message) {
  $('#reader-loading').hidden = true;
  $('#reader-error').textContent = message;
  $('#reader-error').hidden = false;
}

function clearError() {
  $('#reader-error').hidden = true;
  $('#reader-error').textContent = '';
}

/** Positions of the items not answered yet. */
function unanswered() {
  return state.test.items.flatMap((item, position) => (state.answers[item.index] ? [] : [position]));
}

/** Prose as paragraphs, so long passages read like a page and not like one block. */
function paragraphs(node, text) {
  node.replaceChildren(...String(text ?? '').split(/\n+/).filter((line) => line.trim()).map((line) => {
    const p = document.createElement('p');
    p.textContent = line;
    return p;
  }));
}

function render() {
  if (!state.test) return;
  $('#test-title').textContent = state.test.title || t('reader.name');
  $('#intro-count').textContent = t('reader.count', { count: state.test.items.length, n: state.test.items.length });
  if (state.test.closed) renderClosed();
  else if (state.result) renderResult();
  else if (!state.reader) show('intro');
  else if (state.position >= state.test.items.length) show('review');
  else renderItem();
}

function renderItem() {
  const items = state.test.items;
  const item = items[state.position];
  show('item');
  $('#progress').textContent = t('reader.progress', { n: state.position + 1, total: items.length });
  paragraphs($('#opening'), item.opening);
  const single = item.kind === 'single';
  $('#single').hidden = !single;
  $('#pair').hidden = single;
  if (single) paragraphs($('#continuation'), item.text);
  else {
    paragraphs($('#text-a'), item.a);
    paragraphs($('#text-b'), item.b);
  }
  $('#question').textContent = t(single ? 'reader.q.single' : 'reader.q.pair');
  const choices = single ? [['writer', t('reader.writer')], ['double', t('reader.double')]]
    : [['a', t('reader.aIsWriter')], ['b', t('reader.bIsWriter')]];
  $('#answers').replaceChildren(...choices.map(([value, label]) => {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'answer';
    button.dataset.testid = `answer-${value}`;
    button.setAttribute('aria-pressed', String(state.answers[item.index] === value));
    button.textContent = label;
    button.addEventListener('click', () => answer(item.index, value));
    return button;
  }));
  $('#back').hidden = state.position === 0;
  window.scrollTo({ top: 0 });
}

function answer(index, value) {
  state.answers[index] = value;
  state.position += 1;
  remember();
  render();
}

function back() {
  state.position = Math.max(0, state.position - 1);
  remember();
  render();
}

async function submit() {
  if (state.sending) return;
  clearError();
  const missing = unanswered();
  if (missing.length) { // the server takes every item or none (422)
    state.position = missing[0];
    remember();
    render();
    fail(t('reader.unanswered', { n: missing.length }));
    return;
  }
  state.sending = true;
  $('#submit').disabled = true;
  const answers = state.test.items.map((item) => ({ index: item.index, answer: state.answers[item.index] }));
  try {
    const response = await fetch(`${base}/answers`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ reader: state.reader, answers }),
    });
    if (response.status === 409 && await closedMeanwhile()) return;
    if (response.status === 409) {
      // Someone of that name has answered already (a reader's answers are final): ask for another
      // name and keep the answers, so they need not be given again.
      const name = state.reader;
      state.reader = '';
      remember();
      render();
      $('#reader-name').value = name;
      $('#reader-name').select();
      $('#reader-name').focus();
      fail(t('reader.nameTaken', { name }));
      return;
    }
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      const message = body?.detail?.msg ?? `${response.status} ${response.statusText}`;
      if (response.status === 429) {
        fail(t('reader.tooMany', { message }));
        return;
      }
      throw new Error(message);
    }
    const { reader, receipt } = await response.json();
    keepReceipt(reader, receipt);
    state.result = { reader };
    remember();
    render();
  } catch (error) {
    fail(t('reader.sendFailed', { message: error.message }));
  } finally {
    state.sending = false;
    $('#submit').disabled = false;
  }
}

function renderResult() {
  show('result');
  $('#received').textContent = t('reader.received', { name: state.result.reader });
}

/** The author closed the test while this reader was answering: show the results instead. */
async function closedMeanwhile() {
  try {
    const response = await fetch(base);
    if (!response.ok) return false;
    const test = await response.json();
    if (!test.closed) return false;
    state.test = test;
    await loadYours();
    render();
    return true;
  } catch {
    return false;
  }
}

/** The scores of the readers who answered on this device, by their receipts. */
async function loadYours() {
  const found = await Promise.all(receipts().map(async ({ receipt }) => {
    try {
      const response = await fetch(`${base}/receipts/${encodeURIComponent(receipt)}`);
      return response.ok ? await response.json() : null;
    } catch {
      return null;
    }
  }));
  state.yours = found.filter((entry) => entry?.score);
}

function renderClosed() {
  show('closed');
  const overall = state.test.results?.overall;
  $('#all-readers').textContent = overall?.answers
    ? t('reader.allReaders', {
      correct: overall.correct, answers: overall.answers, accuracy: formatPercent(overall.accuracy),
      chance: formatPercent(overall.chance),
    })
    : '';
  $('#yours').replaceChildren(...state.yours.map(({ reader, score }) => {
    const item = document.createElement('li');
    item.dataset.testid = 'reader-your-score';
    item.textContent = `${t('reader.yours', {
      name: reader, correct: score.correct, answers: score.answers, accuracy: formatPercent(score.accuracy),
    })} ${t('reader.scoreDetail', {
      low: formatPercent(score.ci_low), high: formatPercent(score.ci_high), chance: formatPercent(score.chance),
      p: formatP(score.p_value),
    })}`;
    return item;
  }));
}

/** The next reader: nothing of the last one stays on the screen, and they need a name of their own. */
function again() {
  localStorage.removeItem(storageKey);
  Object.assign(state, { reader: '', answers: {}, position: 0, result: null });
  $('#received').textContent = '';
  $('#reader-name').value = '';
  clearError();
  render();
  $('#reader-name').focus();
}

function renderLanguage() {
  applyI18n(document);
  for (const button of document.querySelectorAll('[data-lang]')) {
    button.setAttribute('aria-pressed', String(button.dataset.lang === getLang()));
  }
  render();
}

async function start() {
  for (const button of document.querySelectorAll('[data-lang]')) {
    button.addEventListener('click', () => setLang(button.dataset.lang));
  }
  onLangChange(renderLanguage);
  $('#reader-form').addEventListener('submit', (event) => {
    event.preventDefault();
    state.reader = $('#reader-name').value.trim();
    if (!state.reader) return;
    clearError();
    // A reader renamed after a taken name keeps their answers: straight to sending them.
    const missing = unanswered();
    state.position = missing.length ? missing[0] : state.test.items.length;
    remember();
    render();
  });
  $('#back').addEventListener('click', back);
  $('#review-back').addEventListener('click', back);
  $('#submit').addEventListener('click', submit);
  $('#again').addEventListener('click', again);
  renderLanguage();
  try {
    const response = await fetch(base);
    if (!response.ok) throw new Error(response.status === 404 ? t('reader.notFound') : `${response.status} ${response.statusText}`);
    state.test = await response.json();
    if (state.test.closed) await loadYours();
  } catch (error) {
    fail(error.message === t('reader.notFound') ? error.message : t('reader.loadFailed', { message: error.message }));
    return;
  }
  recall();
  $('#reader-loading').hidden = true;
  render();
  document.body.dataset.ready = 'true';
}

start();
