"""Realtime voice over a WebSocket: VAD, turn detection, streamed replies, barge-in."""
