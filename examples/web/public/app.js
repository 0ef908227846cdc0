/*
 * app.js — the page's script: sends the prompt to the bridge (POST
 * /api/jobs), then shows the answer as it streams, from the job's events
 * served as Server-Sent Events (GET /api/jobs/<id>/events). Plain JS.
 *
 * Each event has a seq; the page keeps the job id, the last seq it applied
 * and the text shown in sessionStorage, updated together with each event.
 * After a reload it shows that text and asks only for the events after that
 * seq (?lastEventId=N): no token is lost or shown twice. When the connection
 * drops, EventSource reconnects by itself and sends the last seq in the
 * Last-Event-ID header, to the same effect.
 *
 * A `retry` event means the attempt being shown failed and chatq starts it
 * over: the text is cleared, and late chunks of the failed attempt ignored.
 */
(function () {
  'use strict';
  const STORE = 'chatq-example-job';
  const $ = (id) => document.getElementById(id);
  const form = $('ask'), promptBox = $('prompt'), sendBtn = $('send'), cancelBtn = $('cancel');
  const statusEl = $('status'), questionEl = $('question'), answerEl = $('answer'), jobEl = $('job');
  let state = null;   // {id, prompt, lastSeq, text, minAttempt, status}
  let source = null;  // the EventSource

  function save() {
    sessionStorage.setItem(STORE, JSON.stringify(state));
  }

  function render() {
    questionEl.textContent = state ? state.prompt : '';
    answerEl.textContent = state ? state.text : '';
    jobEl.textContent = state ? 'job ' + state.id : '';
    const status = state ? state.status : 'idle';
    statusEl.textContent = status;
    statusEl.dataset.status = status;
    const live = status === 'queued' || status === 'streaming' || status === 'reconnecting';
    cancelBtn.disabled = !live;
    sendBtn.disabled = live;
  }

  function contentOf(chunk) {
    const choices = (chunk && chunk.choices) || [];
    const c = choices.find((x) => (x.index || 0) === 0);
    const content = c && c.delta && c.delta.content;
    return typeof content === 'string' ? content : '';
  }

  // Applies one event to the state; true when it was the last.
  function apply(ev) {
    if (ev.type === 'chunk') {
      if ((ev.attempt || 0) >= state.minAttempt) state.text += contentOf(ev.data);
      state.status = 'streaming';
    } else if (ev.type === 'retry') {
      state.text = '';
      state.minAttempt = (ev.attempt || 0) + 1;
    } else if (ev.type === 'done' || ev.type === 'error') {
      state.status = ev.status || (ev.type === 'done' ? 'succeeded' : 'failed');
      if (ev.error && ev.status !== 'cancelled') state.text += '\n[' + ev.error.code + ': ' + ev.error.message + ']';
    }
    if (Number.isInteger(ev.seq)) state.lastSeq = ev.seq;
    return ev.type === 'done' || ev.type === 'error';
  }

  function follow() {
    if (source) source.close();
    const url = '/api/jobs/' + encodeURIComponent(state.id) + '/events' +
      (state.lastSeq >= 0 ? '?lastEventId=' + state.lastSeq : '');
    source = new EventSource(url);
    source.onopen = () => {
      if (state.status === 'reconnecting') { state.status = 'streaming'; render(); }
    };
    source.onmessage = (msg) => {
      const last = apply(JSON.parse(msg.data));
      save();
      render();
      if (last) { source.close(); source = null; }
    };
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) {
        // Refused for good (a 204: the bridge says we have seen the end).
        source = null;
        fetch('/api/jobs/' + encodeURIComponent(state.id)).then((r) => r.json()).then((j) => {
          if (j.status) { state.status = j.status; save(); render(); }
        });
      } else {
        state.status = 'reconnecting'; // EventSource retries by itself
        render();
      }
    };
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const prompt = promptBox.value.trim();
    if (!prompt) return;
    sendBtn.disabled = true;
    const r = await fetch('/api/jobs', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ prompt }),
    });
    const j = await r.json();
    if (!r.ok) {
      statusEl.textContent = 'error: ' + j.error;
      sendBtn.disabled = false;
      return;
    }
    state = { id: j.id, prompt, lastSeq: -1, text: '', minAttempt: 0, status: 'queued' };
    save();
    render();
    follow();
  });

  cancelBtn.addEventListener('click', () => {
    if (!state) return;
    cancelBtn.disabled = true;
    // The job's final event (status "cancelled") ends the stream.
    fetch('/api/jobs/' + encodeURIComponent(state.id) + '/cancel', { method: 'POST' });
  });

  // A reload: pick up where the last page left off.
  try {
    state = JSON.parse(sessionStorage.getItem(STORE));
  } catch (e) {
    state = null;
  }
  render();
  if (state && (state.status === 'queued' || state.status === 'streaming' || state.status === 'reconnecting')) {
    follow();
  }
})();
