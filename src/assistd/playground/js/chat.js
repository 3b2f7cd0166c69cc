// The thread panel: messages of one thread, a composer with attachments, and runs streamed over SSE
// (thread.message.delta text increments appear as they come). Images go with a message as image_file parts.
import { $, clear, h } from "./dom.js";
import { ImageTray, imagePart } from "./images.js";

const THREAD_STORAGE = "assistd.threadId";

export class ChatPanel {
  constructor(api, notify, { assistant, inspector }) {
    this.api = api;
    this.notify = notify;
    this.assistant = assistant; // () => current assistant or null
    this.inspector = inspector;
    this.threadId = null;
    this.bubbles = new Map(); // message id -> {el, parts: Map(index -> span)}
    this.names = new Map(); // file id -> Promise of its filename
    this.images = new ImageTray(api, notify, {
      input: $("#message-input"), button: $("#image-attach"), picker: $("#image-files"), tray: $("#image-tray"),
    });
    $("#thread-new").addEventListener("click", () => this.newThread());
    $("#thread-open").addEventListener("click", () => this.open($("#thread-id").value.trim()));
    $("#composer").addEventListener("submit", (e) => { e.preventDefault(); this.send(); });
    $("#message-input").addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); this.send(); }
    });
  }

  async restore() {
    const saved = localStorage.getItem(THREAD_STORAGE);
    if (saved) {
      try {
        await this.open(saved);
        return;
      } catch { /* deleted or another key's thread */ }
    }
    this.setThread(null);
  }

  setThread(id) {
    this.threadId = id;
    $("#thread-id").value = id ?? "";
    if (id) localStorage.setItem(THREAD_STORAGE, id);
    else localStorage.removeItem(THREAD_STORAGE);
    clear($("#messages"));
    this.bubbles.clear();
    this.inspector.setThread(id);
  }

  async newThread() {
    const thread = await this.api.post("/threads", { metadata: { source: "playground" } });
    this.setThread(thread.id);
    this.notify(`New thread ${thread.id}`);
    return thread.id;
  }

  async open(id) {
    if (!id) return;
    await this.api.get(`/threads/${id}`);
    this.setThread(id);
    const messages = await this.api.all(`/threads/${id}/messages`, { order: "asc" });
    for (const m of messages) this.showMessage(m);
  }

  // -------------------------------------------------------------------------------------- messages
  bubble(message) {
    let entry = this.bubbles.get(message.id);
    if (!entry) {
      const el = h("div", { class: `message ${message.role}`, dataset: { messageId: message.id } },
        h("span", { class: "who" }, message.role === "user" ? "you" : "assistant"),
        h("div", { class: "body" }));
      $("#messages").append(el);
      entry = { el, parts: new Map() };
      this.bubbles.set(message.id, entry);
    }
    return entry;
  }

  /** Renders a whole message (replacing any streamed text). */
  showMessage(message) {
    const entry = this.bubble(message);
    const body = clear(entry.el.querySelector(".body"));
    entry.parts.clear();
    const cites = [];
    message.content.forEach((part, index) => {
      if (part.type === "text") {
        const span = h("span", { class: "text" }, part.text.value);
        entry.parts.set(index, span);
        body.append(span);
        for (const a of part.text.annotations ?? []) cites.push(a);
      } else if (part.type === "image_file" || part.type === "image_url") {
        body.append(imagePart(this.api, part));
      } else if (part.type === "refusal") {
        body.append(h("span", { class: "error-text" }, part.refusal));
      }
    });
    if (cites.length) {
      body.append(h("div", { class: "citations" }, cites.map((a) => {
        const fileId = a.type === "file_citation" ? a.file_citation.file_id : a.file_path.file_id;
        const line = h("div", { class: "citation" }, `${a.text} → ${fileId}`);
        this.filename(fileId).then((name) => { line.textContent = `${a.text} → ${name} (${fileId})`; });
        return line;
      })));
    }
    if (message.attachments?.length) {
      body.append(h("div", { class: "citations" },
        `attachments: ${message.attachments.map((a) => a.file_id).join(", ")}`));
    }
    entry.el.classList.toggle("streaming", message.status === "in_progress");
    this.scroll();
  }

  appendDelta(delta) {
    const entry = this.bubble({ id: delta.id, role: "assistant" });
    for (const part of delta.delta.content ?? []) {
      if (part.type !== "text" || !part.text?.value) continue;
      let span = entry.parts.get(part.index);
      if (!span) {
        span = h("span", { class: "text" });
        entry.parts.set(part.index, span);
        entry.el.querySelector(".body").append(span);
      }
      span.textContent += part.text.value;
      entry.el.dataset.deltas = String(Number(entry.el.dataset.deltas ?? 0) + 1);
    }
    this.scroll();
  }

  /** A file's name (cached); its id when it cannot be read. */
  filename(fileId) {
    if (!this.names.has(fileId)) {
      this.names.set(fileId, this.api.get(`/files/${fileId}`).then((f) => f.filename).catch(() => fileId));
    }
    return this.names.get(fileId);
  }

  scroll() {
    const box = $("#messages");
    box.scrollTop = box.scrollHeight;
  }

  // ----------------------------------------------------------------------------------------- send
  async send() {
    const input = $("#message-input");
    const text = input.value.trim();
    const assistant = this.assistant();
    if (!assistant) return this.notify("Create or pick an assistant first.", true);
    if (!text && !this.images.size) return;
    const button = $("#send");
    button.disabled = true;
    try {
      const threadId = this.threadId || (await this.newThread());
      const attachments = await this.uploadAttachments();
      const images = await this.images.upload();
      const content = images.length ? [
        ...(text ? [{ type: "text", text }] : []),
        ...images.map((id) => ({ type: "image_file", image_file: { file_id: id, detail: "auto" } })),
      ] : text;
      const message = await this.api.post(`/threads/${threadId}/messages`, {
        role: "user", content, ...(attachments.length ? { attachments } : {}),
      });
      input.value = "";
      this.images.clear();
      this.showMessage(message);
      await this.stream(`/threads/${threadId}/runs`, { assistant_id: assistant.id, ...runOptions() });
    } catch (err) {
      this.notify(err.message, true);
    } finally {
      button.disabled = false;
    }
  }

  async uploadAttachments() {
    const picker = $("#attach-files");
    const tool = $("#attach-tool").value;
    const attachments = [];
    for (const file of picker.files) {
      this.notify(`Uploading ${file.name}…`);
      const uploaded = await this.api.upload(file);
      attachments.push({ file_id: uploaded.id, tools: [{ type: tool }] });
    }
    picker.value = "";
    return attachments;
  }

  /** Submits function outputs with stream:true (called by the inspector's form). */
  async submitOutputs(run, outputs) {
    try {
      await this.stream(`/threads/${run.thread_id}/runs/${run.id}/submit_tool_outputs`, { tool_outputs: outputs });
    } catch (err) {
      this.notify(err.message, true);
    }
  }

  async stream(path, body) {
    this.notify("Running…");
    await this.api.stream(path, body, (name, data) => this.onEvent(name, data));
    this.inspector.schedule(0);
  }

  onEvent(name, data) {
    if (name === "thread.message.created") {
      this.showMessage(data);
    } else if (name === "thread.message.delta") {
      this.appendDelta(data);
    } else if (name === "thread.message.completed" || name === "thread.message.incomplete") {
      this.showMessage(data);
    } else if (name === "thread.run.requires_action") {
      this.notify("The run waits for function outputs: type them in the run inspector and submit.");
      this.inspector.schedule(0);
    } else if (name.startsWith("thread.run.step")) {
      this.inspector.schedule();
    } else if (name.startsWith("thread.run.")) {
      this.inspector.schedule();
      const status = name.slice("thread.run.".length);
      if (status === "failed") this.notify(`Run failed: ${data.last_error?.message ?? "unknown error"}`, true);
      else if (status === "incomplete") this.notify(`Run incomplete: ${data.incomplete_details?.reason}`, true);
      else if (["completed", "cancelled", "expired"].includes(status)) this.notify(`Run ${status}.`);
    } else if (name === "error") {
      this.notify(`Stream error: ${data.message ?? JSON.stringify(data)}`, true);
    }
  }
}

/** The run options of the composer, only those set. */
function runOptions() {
  const options = {};
  const choice = $("#run-tool-choice").value;
  if (choice === "code_interpreter" || choice === "file_search") options.tool_choice = { type: choice };
  else if (choice) options.tool_choice = choice;
  const max = $("#run-max-tokens").value;
  if (max) options.max_completion_tokens = Number(max);
  if (!$("#run-parallel").checked) options.parallel_tool_calls = false;
  const extra = $("#run-additional").value.trim();
  if (extra) options.additional_instructions = extra;
  return options;
}
