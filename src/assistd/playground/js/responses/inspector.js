// The response inspector: the responses of this chat (newest first, pick one) and, for the selected one, its
// status, model, timings and usage, then its output items in order (items.js), and the input it was sent.
// Function calls of the chat's latest response that have no output yet get a field each: what is typed there
// goes back as function_call_output items of the next request.
import { $, clear, facts, h, time } from "../dom.js";
import { itemView } from "./items.js";

const LIVE_EVERY_MS = 150;

export class ResponseInspector {
  /**
   * onOutputs(outputs): sends [{call_id, output}]; outputOf(call_id): the output sent for a call, if any;
   * inputOf(response id): the input items it was sent; latest(): the id of the chat's latest response;
   * image(part): the view of an input_image part.
   */
  constructor(notify, { onOutputs, outputOf, inputOf, latest, image }) {
    this.notify = notify;
    this.image = image;
    this.onOutputs = onOutputs;
    this.outputOf = outputOf;
    this.inputOf = inputOf;
    this.latest = latest;
    this.responses = new Map(); // id -> response object, in the chat's order
    this.selected = null;
    this.typed = new Map(); // call_id -> output typed so far (kept across re-renders)
    this.timer = null;
    $("#r-response-select").addEventListener("change", (e) => this.select(e.target.value));
  }

  clear() {
    this.responses.clear();
    this.selected = null;
    this.typed.clear();
    this.render();
  }

  /** Shows a response (a new one is selected). A `live` one, still streaming, re-renders at most every 150 ms. */
  show(response, { live = false } = {}) {
    if (!this.responses.has(response.id)) this.selected = response.id;
    this.responses.set(response.id, response);
    if (!live) this.render();
    else if (!this.timer) this.timer = setTimeout(() => this.render(), LIVE_EVERY_MS);
  }

  select(id) {
    if (!this.responses.has(id)) return;
    this.selected = id;
    this.render();
  }

  render() {
    clearTimeout(this.timer);
    this.timer = null;
    const select = clear($("#r-response-select"));
    for (const r of [...this.responses.values()].reverse()) {
      select.append(h("option", { value: r.id }, `${r.id} · ${r.status}`));
    }
    select.value = this.selected ?? "";
    select.hidden = this.responses.size === 0;
    const root = clear($("#r-inspector"));
    const response = this.responses.get(this.selected);
    root.append(response ? this.card(response) : h("p", { class: "muted" }, "No response yet."));
  }

  card(r) {
    const u = r.usage;
    const waiting = r.id === this.latest() && r.status === "completed"
      ? r.output.filter((i) => i.type === "function_call" && this.outputOf(i.call_id) === undefined) : [];
    const input = this.inputOf(r.id) ?? [];
    return h("article", { class: "response", dataset: { responseId: r.id, status: r.status } },
      h("header", {},
        h("span", { class: `status ${r.status}` }, r.status), " ", h("span", { class: "mono small" }, r.id)),
      facts([
        ["model", r.model],
        ["created", time(r.created_at)],
        ["took", r.completed_at ? `${r.completed_at - r.created_at} s` : ""],
        ["previous", r.previous_response_id ?? ""],
        ["conversation", r.conversation?.id ?? ""],
        ["tools", (r.tools ?? []).map((t) => (t.type === "function" ? t.name : t.type)).join(", ")],
        ["tool_choice", typeof r.tool_choice === "string" ? r.tool_choice : JSON.stringify(r.tool_choice)],
        ["max tokens", r.max_output_tokens ?? ""],
        ["usage", u ? usage(u) : ""],
        ["incomplete", r.incomplete_details?.reason ?? ""],
        ["error", r.error ? `${r.error.code}: ${r.error.message}` : ""],
      ]),
      r.output.length
        ? h("ol", { class: "items" }, r.output.map((item) => itemView(item, {
          outputOf: this.outputOf, field: waiting.includes(item) ? this.field(item) : null,
        })))
        : h("p", { class: "muted small" }, "No output items yet."),
      waiting.length ? this.sendForm(waiting) : null,
      input.length ? h("details", { class: "input-items" },
        h("summary", { class: "small muted" }, `input: ${input.length} item${input.length === 1 ? "" : "s"}`),
        h("ol", { class: "items" },
          input.map((item) => itemView(item, { outputOf: this.outputOf, image: this.image })))) : null);
  }

  field(call) {
    const area = h("textarea", {
      rows: 2, class: "fn-output", dataset: { callId: call.call_id }, "aria-label": `Output of ${call.name}`,
      placeholder: "output (text or JSON)",
    });
    area.value = this.typed.get(call.call_id) ?? "";
    area.addEventListener("input", () => this.typed.set(call.call_id, area.value));
    return area;
  }

  sendForm(calls) {
    const button = h("button", { type: "submit", class: "primary send-outputs" }, "Send outputs");
    const form = h("form", { class: "action" },
      h("div", { class: "small" },
        "The response called functions: type their outputs above; they go back as function_call_output items."),
      button);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const outputs = calls.map((c) => ({ call_id: c.call_id, output: this.typed.get(c.call_id) ?? "" }));
      button.disabled = true;
      try {
        await this.onOutputs(outputs);
        for (const c of calls) this.typed.delete(c.call_id);
      } finally {
        button.disabled = false;
      }
    });
    return form;
  }
}

function usage(u) {
  const cached = u.input_tokens_details?.cached_tokens ?? 0;
  const reasoning = u.output_tokens_details?.reasoning_tokens ?? 0;
  return `input ${u.input_tokens} (cached ${cached}) + output ${u.output_tokens} (reasoning ${reasoning})`
    + ` = ${u.total_tokens}`;
}
