// The coordinator's event stream (/api/v1/events, a WebSocket) for the whole page: one socket,
// many listeners. A dropped socket reconnects with exponential backoff and asks for what it
// missed with ?since=<last seq>; when the coordinator cannot replay the gap it sends a reset,
// which listeners answer by reloading what they show.

import { getToken } from './api';

export interface CoordinatorEvent {
  seq: number;
  time?: string;
  type: 'job' | 'metric' | 'agent' | 'result' | 'sweep' | 'reset';
  job?: string;
  data?: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

export type Listener = (event: CoordinatorEvent) => void;
export type ConnectionState = 'connecting' | 'live' | 'reconnecting';

const kMinBackoffMs = 500;
const kMaxBackoffMs = 10_000;

export class EventStream {
  private socket: WebSocket | null = null;
  private listeners = new Set<Listener>();
  private stateListeners = new Set<(state: ConnectionState, detail: string) => void>();
  private lastSeq: number | null = null;
  private backoffMs = kMinBackoffMs;
  private retryTimer: number | null = null;
  private everOpened = false;

  start(): void {
    this.connect();
  }

  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  onState(listener: (state: ConnectionState, detail: string) => void): void {
    this.stateListeners.add(listener);
  }

  // A new token (or none) changes what the stream may send: reconnect with it.
  restart(): void {
    if (this.retryTimer !== null) window.clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const old = this.socket;
    this.socket = null;
    old?.close();
    this.connect();
  }

  private setState(state: ConnectionState, detail = ''): void {
    for (const listener of this.stateListeners) listener(state, detail);
  }

  private connect(): void {
    const params = new URLSearchParams();
    if (this.lastSeq !== null) params.set('since', String(this.lastSeq));
    const token = getToken();
    if (token) params.set('access_token', token);
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const qs = params.toString();
    const url = `${scheme}://${location.host}/api/v1/events${qs ? `?${qs}` : ''}`;
    this.setState('connecting');
    let socket: WebSocket;
    try {
      socket = new WebSocket(url);
    } catch (e) {
      this.scheduleRetry(String(e));
      return;
    }
    this.socket = socket;
    socket.onopen = () => {
      this.backoffMs = kMinBackoffMs;
      this.setState('live');
      // Without a seq to resume from, events between the drop and now are unknown: reload.
      if (this.everOpened && this.lastSeq === null) this.dispatch({ seq: 0, type: 'reset' });
      this.everOpened = true;
    };
    socket.onmessage = (message) => {
      let event: CoordinatorEvent;
      try {
        event = JSON.parse(String(message.data)) as CoordinatorEvent;
      } catch {
        console.error('event stream: a message that is not JSON', message.data);
        return;
      }
      if (typeof event.seq === 'number') this.lastSeq = event.seq;
      this.dispatch(event);
    };
    socket.onclose = (close) => {
      if (this.socket !== socket) return; // replaced by restart()
      this.socket = null;
      this.scheduleRetry(close.reason || `closed (code ${close.code})`);
    };
  }

  private scheduleRetry(reason: string): void {
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, kMaxBackoffMs);
    this.setState('reconnecting', `${reason}; retrying in ${(delay / 1000).toFixed(1)} s`);
    this.retryTimer = window.setTimeout(() => {
      this.retryTimer = null;
      this.connect();
    }, delay);
  }

  private dispatch(event: CoordinatorEvent): void {
    for (const listener of [...this.listeners]) {
      try {
        listener(event);
      } catch (e) {
        console.error('event listener failed', e);
      }
    }
  }
}

export const events = new EventStream();
