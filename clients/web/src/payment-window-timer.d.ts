// Type declarations for <payment-window-timer> (payment-window-timer.js).

/** The status body of `GET /payments/checkout/{sessionId}/status`, live changes merged in. */
export interface PaymentWindowStatus {
  sessionId: string;
  auctionId: string;
  status: 'open' | 'paid' | 'expired' | 'awaiting_payment_confirmation';
  /** ISO 8601 UTC. */
  expiresAt: string | null;
  remainingTime?: number;
  serverTime?: string;
  version: number;
  /** Why an expired window closed: window_elapsed, admin_terminated, maker_terminated, stripe_expired, payment_failed, checkout_missing. */
  reason: string | null;
  checkoutUrl: string | null;
  amount?: number;
  currency?: string;
  makerId?: string;
}

/** What the host page sees: `loading`, then the window's phase, or `error`. */
export type PaymentWindowPhase = 'loading' | 'open' | 'warning' | 'closed' | 'paid' | 'awaiting' | 'error';

export interface PaymentWindowChangeDetail extends PaymentWindowStatus {
  phase: PaymentWindowPhase;
}

export interface PaymentWindowErrorDetail {
  /** `unauthorized` (401/403 even after tokenProvider), `not_found` (404). */
  code: 'unauthorized' | 'not_found';
  status: number;
}

/** The timer's display state (see timer.js); read-only. */
export interface PaymentWindowTimerState {
  readonly status: PaymentWindowStatus['status'] | null;
  readonly reason: string | null;
  readonly version: number | null;
  readonly expiresAt: number | null;
  readonly payBy: string;
  readonly remainingMs: number | null;
  readonly remainingSeconds: number | null;
  readonly text: string;
  readonly title: string;
  readonly warning: boolean;
  readonly closed: boolean;
  readonly approximate: boolean;
  readonly checkoutUrl: string | null;
}

export interface RequestAnswer {
  status: number;
  body: unknown;
  timing: { sentAt: number; sentMono: number; receivedAt: number; receivedMono: number };
}

/**
 * `<payment-window-timer session-id="cs_…" api-base="https://payments.example" locale="de-DE">`
 *
 * Attributes: `session-id` (required), `api-base` (default: the origin the module was loaded
 * from), `locale` (default: the page's `lang`, then the browser's), `view` (`buyer` | `staff`).
 * Reflects `phase`. Parts: timer, label, countdown, deadline, deadline-time, warning,
 * connection, error, status.
 */
export class PaymentWindowTimer extends HTMLElement {
  /** The bearer token (a JWT). Setting it starts the element. */
  token: string | null;
  /** Called when no token is set, and again after every 401 (a fresh token for a long window). */
  tokenProvider: (() => Promise<string> | string) | null;
  readonly state: PaymentWindowTimerState | null;
  readonly status: PaymentWindowStatus | null;
  readonly phase: PaymentWindowPhase;
  readonly apiBase: string;
  /** Read the status now. */
  refresh(): Promise<PaymentWindowTimerState | null>;
  /** Feed a status body the host received (e.g. an override's answer). */
  applyStatus(body: PaymentWindowStatus, timing?: Partial<RequestAnswer['timing']>): PaymentWindowTimerState;
  /** A JSON request to the API with the element's token handling (401 → tokenProvider). */
  request(path: string, init?: RequestInit): Promise<RequestAnswer>;
}

export function phaseOf(state: PaymentWindowTimerState | null): PaymentWindowPhase;
export function apiBaseFor(attribute: string | null, moduleUrl: string): string;
export function splitAround(text: string, marker: string): [string, string];

declare global {
  interface HTMLElementTagNameMap {
    'payment-window-timer': PaymentWindowTimer;
  }
  interface HTMLElementEventMap {
    'payment-window:change': CustomEvent<PaymentWindowChangeDetail>;
    'payment-window:error': CustomEvent<PaymentWindowErrorDetail>;
  }
}
