// What a page is to the router: it mounts into a root element, receives the event stream while
// it is shown, and releases its charts and timers when the route changes.

import { ApiError } from './api';
import { clear, errorBox, h } from './dom';
import type { CoordinatorEvent } from './events';

export interface PageContext {
  query: URLSearchParams;
}

export interface Page {
  onEvent?(event: CoordinatorEvent): void;
  dispose(): void;
}

// Set once a page has drawn its data; the browser tests and the benchmark wait for it.
export function markReady(): void {
  document.body.setAttribute('data-page-ready', String(performance.now()));
}

export function notFound(root: HTMLElement, message: string, linkText: string, href: string, detail = ''): Page {
  clear(root);
  root.append(
    h(
      'div',
      { class: 'not-found', 'data-not-found': true },
      h('h2', null, 'Not found'),
      h('p', null, message),
      detail ? h('p', { class: 'small-text' }, `The coordinator said: ${detail}`) : null,
      h('a', { href }, linkText),
    ),
  );
  markReady();
  return { dispose() {} };
}

// Shows an error from a failed load: a 404 becomes the not-found page, anything else a banner
// with the coordinator's message (never swallowed).
export function showLoadError(root: HTMLElement, error: unknown, what: string, back: [string, string]): void {
  if (error instanceof ApiError && error.status === 404) {
    notFound(root, `${what} does not exist.`, back[0], back[1], error.message);
    return;
  }
  clear(root);
  root.append(errorBox(error instanceof Error ? error.message : String(error)));
  markReady();
}

export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
