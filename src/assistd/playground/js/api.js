// The /v1 API of this server, called the way the openai SDK calls it (same headers, same SSE stream).
import { readEvents } from "./sse.js";

const KEY_STORAGE = "assistd.apiKey";

export class ApiError extends Error {
  constructor(status, body) {
    const err = (body && body.error) || {};
    super(err.message || `HTTP ${status}`);
    this.status = status;
    this.param = err.param ?? null;
    this.code = err.code ?? null;
  }
}

export class Api {
  constructor(base = "/v1") {
    this.base = base; // same origin: the key is only ever sent to this server
  }

  get key() { return localStorage.getItem(KEY_STORAGE) || ""; }
  set key(value) {
    if (value) localStorage.setItem(KEY_STORAGE, value);
    else localStorage.removeItem(KEY_STORAGE);
  }

  headers(extra = {}) {
    const h = { "OpenAI-Beta": "assistants=v2", ...extra };
    if (this.key) h.Authorization = `Bearer ${this.key}`;
    return h;
  }

  url(path, query) {
    const url = new URL(this.base + path, location.origin);
    for (const [name, value] of Object.entries(query || {})) {
      for (const v of [].concat(value)) if (v !== undefined && v !== null) url.searchParams.append(name, v);
    }
    return url;
  }

  async fetch(method, path, { body, query, form } = {}) {
    const init = { method, headers: this.headers() };
    if (form) init.body = form;
    else if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(this.url(path, query), init);
    if (!response.ok) {
      let parsed = null;
      try { parsed = await response.json(); } catch { /* not JSON */ }
      throw new ApiError(response.status, parsed);
    }
    return response;
  }

  async json(method, path, options) {
    return (await this.fetch(method, path, options)).json();
  }

  get(path, query) { return this.json("GET", path, { query }); }
  post(path, body, query) { return this.json("POST", path, { body: body ?? {}, query }); }
  del(path) { return this.json("DELETE", path); }

  /** Every item of a cursor list, following `after` while `has_more`. */
  async all(path, query = {}, cap = 500) {
    const items = [];
    let after;
    for (;;) {
      const page = await this.get(path, { limit: 100, ...query, after });
      items.push(...page.data);
      if (!page.has_more || !page.data.length || items.length >= cap) return items;
      after = page.data[page.data.length - 1].id;
    }
  }

  /** POST with stream:true; calls onEvent(name, data) per SSE event until `done`. */
  async stream(path, body, onEvent) {
    const response = await this.fetch("POST", path, { body: { ...body, stream: true } });
    for await (const { event, data } of readEvents(response.body)) {
      if (data === "[DONE]") break;
      onEvent(event, data);
    }
  }

  async upload(file, purpose = "assistants") {
    const form = new FormData();
    form.append("purpose", purpose);
    form.append("file", file, file.name);
    return (await this.fetch("POST", "/files", { form })).json();
  }

  async blobUrl(fileId) {
    const response = await this.fetch("GET", `/files/${fileId}/content`);
    return URL.createObjectURL(await response.blob());
  }
}
