/**
 * Raw HTTP to the cluster for the harness and the tests: what they send is exactly what goes on
 * the wire (no retries, no interpretation), and every answer comes back whole (status, headers,
 * parsed body). The harness authenticates with its admin client certificate; a test may pass a
 * bearer token instead, to act as a service account. TLS trust is the cluster's CA only.
 */
import { Agent, request } from 'undici';

/** Also the field manager of the harness's writes (managedFields[].manager), like an operator's name. */
export const HARNESS_USER_AGENT = 'spot-cluster-harness/1';

export interface KubeReply<T = unknown> {
  status: number;
  /** Lower-cased names. */
  headers: Record<string, string>;
  /** Parsed JSON when the answer is JSON, else the text. */
  body: T;
  text: string;
}

export interface KubeRequest {
  method: string;
  path: string;
  body?: unknown;
  /** Default application/json when there is a body. */
  contentType?: string;
  /** Act as this bearer token instead of the admin certificate. */
  token?: string;
  /** Send no credentials at all. */
  anonymous?: boolean;
  headers?: Record<string, string>;
}

export class KubeHttp {
  readonly #url: string;
  readonly #admin: Agent;
  readonly #anonymous: Agent;

  constructor(url: string, tls: { ca: string; cert: string; key: string }) {
    this.#url = url;
    this.#admin = new Agent({ connect: { ca: tls.ca, cert: tls.cert, key: tls.key, rejectUnauthorized: true } });
    this.#anonymous = new Agent({ connect: { ca: tls.ca, rejectUnauthorized: true } });
  }

  async send<T = unknown>(req: KubeRequest): Promise<KubeReply<T>> {
    const headers: Record<string, string> = { accept: 'application/json', 'user-agent': HARNESS_USER_AGENT, ...req.headers };
    let payload: string | undefined;
    if (req.body !== undefined) {
      payload = typeof req.body === 'string' ? req.body : JSON.stringify(req.body);
      headers['content-type'] = req.contentType ?? 'application/json';
    }
    if (req.token !== undefined) headers.authorization = `Bearer ${req.token}`;
    const res = await request(`${this.#url}${req.path}`, {
      method: req.method as 'GET',
      headers,
      body: payload,
      dispatcher: req.token !== undefined || req.anonymous ? this.#anonymous : this.#admin,
    });
    const text = await res.body.text();
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) out[k.toLowerCase()] = Array.isArray(v) ? v.join(', ') : v;
    let body: unknown = text;
    if (/json/.test(out['content-type'] ?? '') && text !== '') body = JSON.parse(text);
    return { status: res.statusCode, headers: out, body: body as T, text };
  }

  /** `send`, failing unless the status is one of `ok` (default: any 2xx). */
  async expect<T = unknown>(req: KubeRequest, ok: number[] = []): Promise<T> {
    const reply = await this.send<T>(req);
    const good = ok.length > 0 ? ok.includes(reply.status) : reply.status >= 200 && reply.status < 300;
    if (!good) throw new Error(`${req.method} ${req.path}: ${reply.status} ${reply.text.slice(0, 500)}`);
    return reply.body;
  }

  get<T = unknown>(path: string): Promise<T> {
    return this.expect<T>({ method: 'GET', path });
  }

  async close(): Promise<void> {
    await Promise.all([this.#admin.close(), this.#anonymous.close()]);
  }
}
