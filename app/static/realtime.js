// voicefleet realtime page: microphone -> /v1/realtime -> transcript, reply text, audio, timings.
// Protocol: app/realtime/protocol.py. The key is sent as the subprotocol "bearer.KEY" (browsers
// cannot set an Authorization header on a WebSocket); it may be given as #key=... in the URL.
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

let ws = null, ctx = null, stream = null, outRate = 22050, playHead = 0;
let pendingAudio = null;  // the response.audio event announcing the next binary message
const playing = new Map();  // turn -> [AudioBufferSourceNode]
const replyItems = new Map();  // turn -> <li>

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
  return out.buffer;
}

function play(turn, bytes) {
  const pcm = new Int16Array(bytes);
  const buf = ctx.createBuffer(1, pcm.length, outRate);
  const ch = buf.getChannelData(0);
  for (let i = 0; i < pcm.length; i++) ch[i] = pcm[i] / 32768;
  const src = ctx.createBufferSource();
  src.buffer = buf; src.connect(ctx.destination);
  playHead = Math.max(playHead, ctx.currentTime + 0.02);
  src.start(playHead); playHead += buf.duration;
  if (!playing.has(turn)) playing.set(turn, []);
  playing.get(turn).push(src);
  src.onended = () => { const l = playing.get(turn); if (l) l.splice(l.indexOf(src), 1); };
}

function stopTurn(turn) {
  for (const src of playing.get(turn) || []) { try { src.stop(); } catch (e) { /* not started */ } }
  playing.delete(turn); playHead = ctx ? ctx.currentTime : 0;
}

function onEvent(ev) {
  vf.events.push(ev);
  switch (ev.type) {
    case "session.created":
      outRate = ev.output_sample_rate;
      setStatus(`Connected (${ev.session_id}). Speak; pause to let it answer; talk over it to interrupt.`);
      break;
    case "speech_started": setStatus("Listening…"); break;
    case "speech_stopped": setStatus("Thinking…"); break;
    case "transcript":
      vf.transcripts.push(ev.text);
      if (ev.text) addLog("user", ev.text);
      break;
    case "response.text.delta": {
      let li = replyItems.get(ev.turn);
      if (!li) { li = addLog("assistant", ""); replyItems.set(ev.turn, li); }
      li.textContent += ev.delta;
      vf.replies[ev.turn] = li.textContent;
      break;
    }
    case "response.audio": pendingAudio = ev; setStatus("Speaking…"); break;
    case "response.cancelled":
      stopTurn(ev.turn);
      if (replyItems.has(ev.turn)) replyItems.get(ev.turn).classList.add("cancelled");
      break;
    case "response.done": setStatus("Listening… (reply done)"); break;
    case "turn.timings":
      vf.timings.push(ev);
      for (const td of document.querySelectorAll("#timings td")) {
        const k = td.dataset.k;
        td.textContent = k === "tokens" ? `${ev.prompt_tokens} / ${ev.completion_tokens}`
          : ev[k] ? `${Math.round(ev[k])} ms` : "–";
      }
      break;
    case "error": addLog("note", `error: ${ev.code}: ${ev.message}`); break;
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
    const url = location.origin.replace(/^http/, "ws") + "/v1/realtime";
    ws = new WebSocket(url, key ? ["voicefleet.v1", "bearer." + key] : ["voicefleet.v1"]);
    ws.binaryType = "arraybuffer";
    ws.onopen = () => {
      vf.state = "open";
      ws.send(JSON.stringify({ type: "session.update", sample_rate: ctx.sampleRate }));
      tap.port.onmessage = (m) => { if (ws.readyState === 1) { ws.send(toPCM16(m.data)); } };
      $("stop").disabled = false;
    };
    ws.onmessage = (m) => {
      if (typeof m.data === "string") { onEvent(JSON.parse(m.data)); return; }
      vf.audioBytes += m.data.byteLength;
      if (pendingAudio) play(pendingAudio.turn, m.data);
      pendingAudio = null;
    };
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
