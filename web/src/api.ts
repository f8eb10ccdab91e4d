import { Store } from './store';

/**
 * The REST client: every call carries `Authorization: Bearer <token>`. Errors come back as
 * ApiError with the server's one error shape (`statusCode`, `message`, `issues`), or as a network
 * error that marks the server unreachable (the banner) until any request gets an answer.
 */

export interface FieldIssue {
  path: string;
  message: string;
}

export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly issues: FieldIssue[] = [],
    readonly body: unknown = undefined,
  ) {
    super(message);
    this.name = 'ApiError';
  }

  /** No answer at all (or a gateway's): the server is unreachable. */
  get network(): boolean {
    return this.status === 0 || this.status === 502 || this.status === 504;
  }
}

export const TOKEN_KEY = 'steward.token';

let token: string | null = readToken();

function readToken(): string | null {
  try {
    return localStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

export function getToken(): string | null {
  return token;
}

export function setToken(value: string | null): void {
  token = value;
  try {
    if (value) localStorage.setItem(TOKEN_KEY, value);
    else localStorage.removeItem(TOKEN_KEY);
  } catch {
    // storage refused (private mode): the token lives for this page only
  }
}

/** False once a request got no answer; true again as soon as one does. */
export const reachable = new Store(true);
/** Set when the server refuses the token (401): the app goes back to the login screen. */
export const unauthorized = new Store(0);

export type Query = Record<string, string | number | boolean | undefined | null>;

export function withQuery(path: string, query?: Query): string {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined || value === null || value === '') continue;
    params.set(key, String(value));
  }
  const qs = params.toString();
  return qs ? `${path}${path.includes('?') ? '&' : '?'}${qs}` : path;
}

export interface RequestOptions {
  method?: string;
  query?: Query;
  body?: unknown;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /** Use this token instead of the session's (the login check). */
  token?: string;
}

export interface ApiResponse<T> {
  data: T;
  headers: Headers;
  status: number;
}

export async function request<T>(path: string, options: RequestOptions = {}): Promise<ApiResponse<T>> {
  const headers: Record<string, string> = { accept: 'application/json', ...options.headers };
  const bearer = options.token ?? token;
  if (bearer) headers['authorization'] = `Bearer ${bearer}`;
  let body: string | undefined;
  if (options.body !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(options.body);
  }
  let res: Response;
  try {
    res = await fetch(withQuery(path, options.query), {
      method: options.method ?? 'GET',
      headers,
      ...(body !== undefined ? { body } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
  } catch (err) {
    if (err instanceof DOMException && err.name === 'AbortError') throw err;
    reachable.set(false);
    throw new ApiError('The server is unreachable.', 0);
  }
  if (res.status === 502 || res.status === 504) {
    reachable.set(false);
    throw new ApiError(`The server is unreachable (HTTP ${res.status} from a proxy).`, res.status);
  }
  reachable.set(true);
  const text = await res.text();
  let data: unknown = undefined;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!res.ok) {
    const shape = (typeof data === 'object' && data !== null ? data : {}) as {
      message?: unknown;
      issues?: unknown;
      error?: unknown;
    };
    const message = Array.isArray(shape.message)
      ? shape.message.join('; ')
      : typeof shape.message === 'string'
        ? shape.message
        : typeof data === 'string' && data.length < 300
          ? data
          : `HTTP ${res.status}`;
    const issues = Array.isArray(shape.issues) ? (shape.issues as FieldIssue[]) : [];
    if (res.status === 401 && !options.token) unauthorized.update((n) => n + 1);
    throw new ApiError(message, res.status, issues, data);
  }
  return { data: data as T, headers: res.headers, status: res.status };
}

export async function api<T>(path: string, options: RequestOptions = {}): Promise<T> {
  return (await request<T>(path, options)).data;
}

/** A human sentence for an error, with what the role means for a 403. */
export function describeError(err: unknown): string {
  if (err instanceof ApiError) {
    if (err.network) return 'The server is unreachable (retrying).';
    if (err.status === 403) return `Not allowed: ${err.message}`;
    return err.message;
  }
  if (err instanceof Error) return err.message;
  return String(err);
}

export const enc = encodeURIComponent;
