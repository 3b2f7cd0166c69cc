// The chat of the Responses mode: each message is a POST /v1/responses with stream:true; its output items
// appear as they stream (output_text deltas as they come), and the next request continues the chat with
// previous_response_id (the latest response) or with a conversation (made on the first message). Function
// outputs typed in the inspector go back as function_call_output items. The chat (its response ids, or its
// conversation) is kept in localStorage and read back from the server when the page opens. Images attached
// to a message go as its input_image parts.
import { $, clear, h } from "../dom.js";
import { ImageTray, imagePart } from "../images.js";
import { ResponseBuilder, TERMINAL, itemText } from "./events.js";
import { ResponseInspector } from "./inspector.js";

const CHAT_STORAGE = "assistd.responses.chat";
const CHAIN_LIMIT = 50; // responses read back when opening one by id

export class ResponsesChat {
  constructor(api, notify, settings) {
    this.api = api;
    this.notify = notify;
    this.settings = settings; // RequestPanel
    this.kind = "previous"; // how the chat continues: "previous" (previous_response_id) or "conversation"
    this.conversationId = null;
    this.ids = []; // the chat's responses, oldest first
    this.inputs = new Map(); // response id -> the input items it was sent
    this.outputs = new Map(); // call_id -> the output sent for that function call
    this.bubbles = new Map(); // item id -> element
    this.busy = false; // a request is streaming
    this.images = new ImageTray(api, notify, {
      input: $("#r-input"), button: $("#r-image-attach"), picker: $("#r-image-files"), tray: $("#r-image-tray"),
    });
    this.inspector = new ResponseInspector(notify, {
      image: (part) => imagePart(api, part),
      onOutputs: (outputs) => this.sendOutputs(outputs),
      outputOf: (callId) => this.outputs.get(callId),
      inputOf: (id) => this.inputs.get(id),
      latest: () => this.latest,
    });
    $("#r-new").addEventListener("click", () => this.reset());
    $("#r-open").addEventListener("click", () => this.open($("#r-open-id").value.trim()));
    $("#r-composer").addEventListener("submit", (e) => { e.preventDefault(); this.send(); });
    $("#r-input").addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); this.send(); }
    });
    for (const radio of document.querySelectorAll("input[name=r-continue]")) {
      radio.addEventListener("change", () => {
        if (this.ids.length || this.conversationId) {
          this.notify(`New chat, continued with ${this.settings.continuation}.`);
        }
        this.reset();
      });
    }
  }

  get latest() {
    return this.ids[this.ids.length - 1] ?? null;
  }

  /** A new, empty chat that continues the way the request panel says. */
  reset(kind = this.settings.continuation) {
    this.kind = kind;
    this.settings.continuation = kind;
    this.conversationId = null;
    this.ids = [];
    this.inputs.clear();
    this.outputs.clear();
    this.bubbles.clear();
    clear($("#r-messages"));
    this.inspector.clear();
    this.save();
  }

  save() {
    localStorage.setItem(CHAT_STORAGE, JSON.stringify({
      kind: this.kind, conversationId: this.conversationId, responses: this.ids,
    }));
    const chain = this.kind === "conversation"
      ? (this.conversationId ? `conversation ${this.conversationId}` : "a conversation starts with the first message")
      : (this.latest ? `previous_response_id ${this.latest}` : "the first message starts the chain");
    $("#r-chain").textContent = `Continues with ${chain}`;
  }

  // ---------------------------------------------------------------------------------- read back
  async restore() {
    let saved;
    try {
      saved = JSON.parse(localStorage.getItem(CHAT_STORAGE) || "null");
    } catch {
      saved = null;
    }
    this.reset(saved?.kind ?? this.settings.continuation);
    if (!saved) return;
    this.conversationId = saved.conversationId ?? null;
    for (const id of saved.responses ?? []) {
      try {
        await this.load(id);
      } catch { /* deleted, or another key's */ }
    }
    this.save();
  }

  /** Opens a response (with the chain of previous responses before it) or a conversation, to continue it. */
  async open(id) {
    try {
      if (id.startsWith("conv_")) await this.openConversation(id);
      else if (id.startsWith("resp_")) await this.openResponse(id);
      else throw new Error("Open a response (resp_…) or a conversation (conv_…).");
      this.notify(`Opened ${id}`);
    } catch (err) {
      this.notify(err.message, true);
    }
  }

  async openResponse(id) {
    const chain = [];
    for (let at = id; at && chain.length < CHAIN_LIMIT; at = chain[0].previous_response_id) {
      chain.unshift(await this.api.get(`/responses/${at}`));
    }
    const last = chain[chain.length - 1];
    this.reset(last.conversation ? "conversation" : "previous");
    this.conversationId = last.conversation?.id ?? null;
    for (const r of chain) await this.load(r.id);
    this.save();
  }

  async openConversation(id) {
    await this.api.get(`/conversations/${id}`);
    const items = await this.api.all(`/conversations/${id}/items`, { order: "asc" });
    this.reset("conversation");
    this.conversationId = id;
    for (const item of items) {
      if (item.type === "function_call_output") this.outputs.set(item.call_id, outputText(item.output));
    }
    for (const item of items) this.showItem(item, null, false);
    this.save();
  }

  /** One response of the chat, read back: its input, its output items, in the inspector. */
  async load(id) {
    const [response, input] = await Promise.all([
      this.fetchResponse(id),
      this.api.all(`/responses/${id}/input_items`, { order: "asc" }),
    ]);
    this.record(id, input);
    for (const item of input) this.showItem(item, id, false);
    for (const item of response.output) this.showItem(item, id, false);
    this.inspector.show(response);
  }

  fetchResponse(id) {
    return this.api.get(`/responses/${id}`, { "include[]": this.settings.include() });
  }

  record(id, input) {
    if (!this.ids.includes(id)) this.ids.push(id);
    this.inputs.set(id, input);
    for (const item of input) {
      if (item.type === "function_call_output") this.outputs.set(item.call_id, outputText(item.output));
    }
  }

  // ---------------------------------------------------------------------------------------- send
  async send() {
    const text = $("#r-input").value.trim();
    if ((!text && !this.images.size) || this.busy) return;
    let images;
    try {
      images = await this.images.upload();
    } catch (err) {
      this.notify(err.message, true);
      return;
    }
    const content = [
      ...(text ? [{ type: "input_text", text }] : []),
      ...images.map((id) => ({ type: "input_image", file_id: id, detail: "auto" })),
    ];
    const shown = [{ type: "message", role: "user", content }];
    if (await this.request(images.length ? shown : text, shown)) {
      $("#r-input").value = "";
      this.images.clear();
    }
  }

  /** Sends function outputs typed in the inspector as the next request's input. */
  async sendOutputs(outputs) {
    const input = outputs.map((o) => ({ type: "function_call_output", call_id: o.call_id, output: o.output }));
    await this.request(input, input);
  }

  /** One request, streamed; `shown` is its input as items. Answers whether a response was created. */
  async request(input, shown) {
    if (this.busy) return false; // one request at a time: the next continues this one
    let body;
    try {
      body = this.settings.body();
    } catch (err) {
      this.notify(err.message, true);
      return false;
    }
    const button = $("#r-send");
    this.busy = button.disabled = true; // until the response is read back
    const pending = shown.map((item, i) => this.showItem({ ...item, id: `pending-${Date.now()}-${i}` }, null, false));
    const builder = new ResponseBuilder();
    try {
      await this.stream({ ...body, input }, builder, shown, pending);
      if (!builder.response) {
        for (const el of pending) el.remove();
        return false;
      }
      await this.settle(builder);
      return true;
    } finally {
      this.busy = button.disabled = false;
    }
  }

  /** Streams the request, continuing the chat; a failure is told, not thrown (what streamed so far stays). */
  async stream(body, builder, shown, pending) {
    try {
      if (this.kind === "conversation") {
        if (!this.conversationId) {
          this.conversationId = (await this.api.post("/conversations", { metadata: { source: "playground" } })).id;
          this.save();
        }
        body.conversation = this.conversationId;
      } else if (this.latest) {
        body.previous_response_id = this.latest;
      }
      this.notify("Responding…");
      await this.api.stream("/responses", body, (name, data) => this.onEvent(builder, data, shown, pending));
    } catch (err) {
      this.notify(err.message, true);
    }
  }

  onEvent(builder, data, shown, pending) {
    const item = builder.apply(data);
    const type = data.type;
    if (type === "response.created") {
      const id = builder.response.id;
      this.record(id, shown);
      for (const el of pending) el.dataset.responseId = id;
      this.save();
    } else if (type === "response.output_item.added" || type === "response.output_item.done") {
      this.showItem(item, builder.response.id, type.endsWith("added"));
    } else if (type === "response.output_text.delta" || type === "response.reasoning_text.delta") {
      this.appendText(item, data.delta);
    } else if (item && item.type !== "message" && item.type !== "reasoning") {
      this.showItem(item, builder.response.id, true); // a call's arguments, code or status moved on
    } else if (type === "error") {
      this.notify(`Stream error: ${data.message ?? JSON.stringify(data)}`, true);
    }
    if (TERMINAL.includes(type)) this.notify(ending(builder.response), builder.response.status !== "completed");
    if (builder.response) this.inspector.show(builder.response, { live: !builder.ended });
  }

  /** After the stream: the response as stored (with the results and outputs its tools made). */
  async settle(builder) {
    const id = builder.response.id;
    let response = builder.response;
    try {
      response = await this.fetchResponse(id);
    } catch (err) {
      this.notify(`Reading ${id} back: ${err.message}`, true);
    }
    for (const item of response.output) this.showItem(item, id, false);
    this.inspector.show(response);
    if (!builder.ended && !builder.error) this.notify(`The stream ended early; ${ending(response)}`, true);
    const calls = response.output.filter((i) => i.type === "function_call" && !this.outputs.has(i.call_id));
    if (calls.length && response.status === "completed") {
      this.notify(`${ending(response)} It called ${calls.map((c) => c.name).join(", ")}: `
        + "type the outputs in the inspector and send them.");
    }
  }

  // ------------------------------------------------------------------------------------ bubbles
  bubble(item, responseId) {
    let el = this.bubbles.get(item.id);
    if (!el) {
      const [cls, who] = looks(item);
      el = h("div", { class: `message ${cls}`, dataset: { itemId: item.id, type: item.type } },
        h("span", { class: "who" }, who), h("div", { class: "body" }));
      el.addEventListener("click", () => this.inspector.select(el.dataset.responseId));
      $("#r-messages").append(el);
      this.bubbles.set(item.id, el);
    }
    if (responseId) el.dataset.responseId = responseId;
    return el;
  }

  /** Renders an item in the chat (replacing what streamed so far); returns its element. */
  showItem(item, responseId, streaming) {
    const el = this.bubble(item, responseId);
    const body = clear(el.querySelector(".body"));
    el.classList.toggle("streaming", streaming);
    if (item.type === "message" || item.type === "reasoning") {
      body.append(h("span", { class: "text" }, itemText(item)));
      const images = Array.isArray(item.content) ? item.content.filter((p) => p.type === "input_image") : [];
      body.append(...images.map((p) => imagePart(this.api, p)));
      const notes = (item.content ?? []).flatMap((p) => p.annotations ?? []);
      if (notes.length) {
        body.append(h("div", { class: "citations" },
          notes.map((a) => h("div", { class: "citation" },
            `${a.type} ${a.filename ?? a.url ?? ""} ${a.file_id ?? ""}`))));
      }
    } else if (item.type === "function_call") {
      const output = this.outputs.get(item.call_id);
      body.append(h("span", { class: "text mono" }, `${item.name}(${item.arguments ?? ""})`),
        h("div", { class: "citations" }, output !== undefined ? `output: ${output}`
          : streaming ? "" : "waiting for its output: type it in the inspector"));
    } else if (item.type === "function_call_output") {
      body.append(h("span", { class: "text mono" }, `${item.call_id}: ${outputText(item.output)}`));
    } else if (item.type === "file_search_call") {
      const found = item.results ? `, ${item.results.length} results` : "";
      body.append(h("span", { class: "text" }, `searched ${JSON.stringify(item.queries ?? [])}${found}`));
    } else if (item.type === "code_interpreter_call") {
      body.append(h("pre", { class: "code" }, item.code ?? ""));
    } else {
      body.append(h("span", { class: "text" }, item.type));
    }
    this.scroll();
    return el;
  }

  appendText(item, delta) {
    const el = this.bubbles.get(item.id) ?? this.showItem(item, null, true);
    let span = el.querySelector(".text");
    if (!span) el.querySelector(".body").append((span = h("span", { class: "text" })));
    span.textContent += delta;
    el.dataset.deltas = String(Number(el.dataset.deltas ?? 0) + 1);
    this.scroll();
  }

  scroll() {
    const box = $("#r-messages");
    box.scrollTop = box.scrollHeight;
  }
}

function looks(item) {
  if (item.type === "message") return item.role === "user" ? ["user", "you"] : [item.role, item.role];
  if (item.type === "reasoning") return ["assistant reasoning", "reasoning"];
  if (item.type === "function_call_output") return ["user tool", "function output"];
  if (item.type === "function_call") return ["assistant tool", "function call"];
  return ["assistant tool", item.type.replace(/_call$/, "")];
}

function outputText(output) {
  return typeof output === "string" ? output : JSON.stringify(output);
}

function ending(response) {
  if (response.status === "failed") return `Response failed: ${response.error?.message ?? "unknown error"}`;
  if (response.status === "incomplete") return `Response incomplete: ${response.incomplete_details?.reason}.`;
  return `Response ${response.status}.`;
}
