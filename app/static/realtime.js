// voicefleet realtime page: microphone -> /v1/realtime (the OpenAI Realtime API, GA events) ->
// transcript, reply text, audio, timings (measured here from speech_stopped). The key is sent
// as the subprotocol "openai-insecure-api-key.KEY" (browsers cannot set an Authorization
// header on a WebSocket), as OpenAI's browser clients do; it may be given as #key=... in the URL.
"use strict";

const $ = (id) => document.getElementById(id);
const vf = (window.vf = { events: [], transcripts: [], replies: {}, audioBytes: 0, timings: [], state: "idle" });

const WORKLET = `
class Tap extends AudioWorkletProcessor {
  constructor() { super(); this.buf = []; this.n = 0; }
  process(inputs) {
    const ch = inputs[0][0];
    if (ch) {
      this.buf.push(new Float32Array(ch)); this.n += ch.length;
      if (this.n >= sampleRate / 25) {  // ~40 ms per message
        const out = new Float32Array(this.n); let o = 0;
        for (const b of this.buf) { out.set(b, o); o += b.length; }
        this.port.postMessage(out, [out.buffer]); this.buf = []; this.n = 0;
      }
    }
    return true;
  }
}
registerProcessor("tap", Tap);`;

let ws = null, ctx = null, stream = null, outRate = 24000, playHead = 0;
const playing = new Map();  // response id -> [AudioBufferSourceNode]
const replyItems = new Map();  // response id -> <li>
// the reply being played: its item, and when its first audio started playing (ctx time)
let current = null;  // {response, item, start}
let turn = {};  // this turn's moments (performance.now()) for the timings table

function setStatus(text) { $("status").textContent = text; }

function addLog(cls, text) {
  const li = document.createElement("li");
  li.className = cls; li.textContent = text;
  $("log").appendChild(li); li.scrollIntoView({ block: "end" });
  return li;
}

function toPCM16(f32) {
  const out = new Int16Array(f32.length);
  let peak = 0;
  for (let i = 0; i < f32.length; i++) {
    const s = Math.max(-1, Math.min(1, f32[i]));
    out[i] = s < 0 ? s * 0x8000 : s * 0x7fff;
    peak = Math.max(peak, Math.abs(s));
  }
  $("level").style.width = Math.min(100, peak * 140) + "%";
  let bin = "";
  const bytes = new Uint8Array(out.buffer);
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(bin);
}

function fromBase64(b64) {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return bytes.buffer;
}

function send(ev) { if (ws && ws.readyState === 1) ws.send(JSON.stringify(ev)); }

function play(ev, bytes) {
  const turn = ev.response_id;
  const pcm = new Int16Array(bytes);
  const buf = ctx.createBuffer(1, pcm.length, outRate);
  const ch = buf.getChannelData(0);
  for (let i = 0; i < pcm.length; i++) ch[i] = pcm[i] / 32768;
  const src = ctx.createBufferSource();
  src.buffer = buf; src.connect(ctx.destination);
  playHead = Math.max(playHead, ctx.currentTime + 0.02);
  if (!current || current.response !== turn) current = { response: turn, item: ev.item_id, start: playHead };
  src.start(playHead); playHead += buf.duration;
  if (!playing.has(turn)) playing.set(turn, []);
  playing.get(turn).push(src);
  src.onended = () => { const l = playing.get(turn); if (l) l.splice(l.indexOf(src), 1); };
}

// barge-in: stop what is playing and tell the server how much of it was heard
function interrupt() {
  if (!current || !ctx || ctx.currentTime >= playHead) return;
  const heardMs = Math.max(0, Math.round((ctx.currentTime - current.start) * 1000));
  for (const src of playing.get(current.response) || []) { try { src.stop(); } catch (e) { /* not started */ } }
  playing.delete(current.response); playHead = ctx.currentTime;
  send({ type: "conversation.item.truncate", item_id: current.item, content_index: 0, audio_end_ms: heardMs });
  if (replyItems.has(current.response)) replyItems.get(current.response).classList.add("cancelled");
  current = null;
}

function showTimings(usage) {
  const since = (k) => (turn[k] && turn.stopped ? `${Math.round(turn[k] - turn.stopped)} ms` : "–");
  const values = {
    vad_end_to_transcript_ms: since("transcript"), vad_end_to_llm_first_token_ms: since("text"),
    vad_end_to_first_audio_ms: since("audio"), total_ms: since("done"),
    stt_ms: turn.stt ? `${Math.round(turn.stt * 1000)} ms` : "–",
    tokens: usage ? `${usage.input_tokens} / ${usage.output_tokens}` : "–",
  };
  for (const td of document.querySelectorAll("#timings td")) td.textContent = values[td.dataset.k] || "–";
}

function onEvent(ev) {
  vf.events.push(ev);
  const now = performance.now();
  switch (ev.type) {
    case "session.created":
      outRate = ev.session.audio.output.format.rate;
      setStatus(`Connected (${ev.session.id}). Speak; pause to let it answer; talk over it to interrupt.`);
      break;
    case "input_audio_buffer.speech_started": interrupt(); setStatus("Listening…"); break;
    case "input_audio_buffer.speech_stopped": turn = { stopped: now }; setStatus("Thinking…"); break;
    case "conversation.item.input_audio_transcription.completed":
      turn.transcript = now; turn.stt = ev.usage && ev.usage.seconds;
      vf.transcripts.push(ev.transcript);
      if (ev.transcript) addLog("user", ev.transcript);
      break;
    case "response.output_audio_transcript.delta":
    case "response.output_text.delta": {
      turn.text = turn.text || now;
      let li = replyItems.get(ev.response_id);
      if (!li) { li = addLog("assistant", ""); replyItems.set(ev.response_id, li); }
      li.textContent += ev.delta;
      vf.replies[ev.response_id] = li.textContent;
      break;
    }
    case "response.output_audio.delta": {
      turn.audio = turn.audio || now;
      const bytes = fromBase64(ev.delta);
      vf.audioBytes += bytes.byteLength;
      play(ev, bytes); setStatus("Speaking…");
      break;
    }
    case "response.done":
      turn.done = now;
      if (ev.response.status === "cancelled" && replyItems.has(ev.response.id)) {
        replyItems.get(ev.response.id).classList.add("cancelled");
      }
      vf.timings.push(ev.response.usage);
      showTimings(ev.response.usage);
      setStatus("Listening… (reply done)");
      break;
    case "error": addLog("note", `error: ${ev.error.code}: ${ev.error.message}`); break;
  }
}

async function start(e) {
  e.preventDefault();
  const key = $("key").value.trim();
  $("start").disabled = true;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    ctx = new AudioContext();
    await ctx.resume();
    await ctx.audioWorklet.addModule(URL.createObjectURL(new Blob([WORKLET], { type: "text/javascript" })));
    const source = ctx.createMediaStreamSource(stream);
    const tap = new AudioWorkletNode(ctx, "tap");
    source.connect(tap);
    const url = location.origin.replace(/^http/, "ws") + "/v1/realtime?model=voicefleet";
    ws = new WebSocket(url, key ? ["realtime", "openai-insecure-api-key." + key] : ["realtime"]);
    ws.onopen = () => {
      vf.state = "open";
      // the microphone's rate as it is (the server resamples)
      send({ type: "session.update", session: { type: "realtime",
        audio: { input: { format: { type: "audio/pcm", rate: ctx.sampleRate } } } } });
      tap.port.onmessage = (m) => send({ type: "input_audio_buffer.append", audio: toPCM16(m.data) });
      $("stop").disabled = false;
    };
    ws.onmessage = (m) => onEvent(JSON.parse(m.data));
    ws.onclose = (c) => {
      vf.state = "closed";
      setStatus(`Disconnected (${c.code}${c.reason ? ": " + c.reason : ""}).` +
        (c.code === 1006 && vf.events.length === 0 ? " Check the API key." : ""));
      stop();
    };
  } catch (err) {
    setStatus("Could not start: " + err.message);
    stop();
  }
}

function stop() {
  if (ws && ws.readyState <= 1) ws.close(1000);
  if (stream) stream.getTracks().forEach((t) => t.stop());
  if (ctx) ctx.close();
  ws = ctx = stream = null;
  $("start").disabled = false; $("stop").disabled = true;
  $("level").style.width = "0";
}

$("connect").addEventListener("submit", start);
$("stop").addEventListener("click", stop);
const m = location.hash.match(/key=([^&]+)/);
if (m) $("key").value = decodeURIComponent(m[1]);
