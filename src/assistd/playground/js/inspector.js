// The run inspector: every run of the thread with its status, timings, usage and steps; tool calls with
// their inputs and outputs, file_search results with scores, code with logs and images; and, for a run
// that requires action, a form to type the function outputs and submit them.
import { $, clear, facts, h, pretty, time } from "./dom.js";

// file_search result texts, and assistd's `reasoning` of a step (what the model thought; never in a message)
const INCLUDE = ["step_details.tool_calls[*].file_search.results[*].content", "reasoning"];
const ENDED = ["completed", "failed", "cancelled", "expired", "incomplete"];
const ACTIVE = ["queued", "in_progress", "requires_action"];
const STEPS_SHOWN = 5;

export class Inspector {
  constructor(api, notify, onSubmit) {
    this.api = api;
    this.notify = notify;
    this.onSubmit = onSubmit; // (run, outputs) => Promise
    this.threadId = null;
    this.typed = new Map(); // tool_call_id -> output typed so far (kept across re-renders)
    this.images = new Map(); // file id -> blob URL
    this.timer = null;
    this.busy = false;
    this.again = false;
    $("#runs-reload").addEventListener("click", () => this.refresh());
  }

  setThread(threadId) {
    this.threadId = threadId;
    this.refresh();
  }

  /** Refreshes soon; many events in a burst make one refresh. */
  schedule(delay = 250) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), delay);
  }

  async refresh() {
    if (this.busy) { this.again = true; return; }
    this.busy = true;
    try {
      await this.render();
    } catch (err) {
      this.notify(`Inspector: ${err.message}`, true);
    } finally {
      this.busy = false;
      if (this.again) { this.again = false; this.schedule(0); }
    }
  }

  async render() {
    const root = $("#runs");
    if (!this.threadId) {
      clear(root).append(h("p", { class: "muted" }, "No thread yet."));
      return;
    }
    const runs = (await this.api.get(`/threads/${this.threadId}/runs`, { limit: 20, order: "desc" })).data;
    const cards = [];
    for (const [i, run] of runs.entries()) {
      // Steps of the latest runs come at once; older runs load theirs on demand.
      cards.push(this.runCard(run, i < STEPS_SHOWN ? await this.steps(run) : null));
    }
    clear(root).append(...(cards.length ? cards : [h("p", { class: "muted" }, "No runs on this thread yet.")]));
  }

  steps(run) {
    return this.api.all(`/threads/${run.thread_id}/runs/${run.id}/steps`, { order: "asc", "include[]": INCLUDE });
  }

  runCard(run, steps) {
    const end = ENDED.includes(run.status) ? run.completed_at || run.failed_at || run.cancelled_at : null;
    const u = run.usage;
    return h("article", { class: "run", dataset: { runId: run.id, status: run.status } },
      h("header", {},
        h("span", { class: `status ${run.status}` }, run.status),
        h("span", { class: "mono small" }, run.id),
        ACTIVE.includes(run.status) ? h("button", {
          type: "button", class: "cancel-run small", onclick: () => this.cancel(run),
        }, "Cancel") : null),
      facts([
        ["model", run.model],
        ["created", time(run.created_at)],
        ["queued for", run.started_at ? `${run.started_at - run.created_at} s` : ""],
        ["ran for", run.started_at && end ? `${end - run.started_at} s` : ""],
        ["tokens", u ? `${u.prompt_tokens} prompt + ${u.completion_tokens} completion = ${u.total_tokens}` : ""],
        ["tool_choice", typeof run.tool_choice === "string" ? run.tool_choice : JSON.stringify(run.tool_choice)],
        ["max tokens", run.max_completion_tokens ?? ""],
        ["incomplete", run.incomplete_details?.reason ?? ""],
        ["error", run.last_error ? `${run.last_error.code}: ${run.last_error.message}` : ""],
      ]),
      run.status === "requires_action" ? this.actionForm(run) : null,
      steps ? h("div", { class: "steps" }, steps.map((s) => this.stepView(s)))
        : h("button", {
          type: "button", class: "small",
          onclick: async (e) => e.target.replaceWith(
            h("div", { class: "steps" }, (await this.steps(run)).map((s) => this.stepView(s)))),
        }, "Show steps"));
  }

  async cancel(run) {
    try {
      const cancelled = await this.api.post(`/threads/${run.thread_id}/runs/${run.id}/cancel`);
      this.notify(`Run ${run.id}: ${cancelled.status}`);
    } catch (err) {
      this.notify(err.message, true);
    }
    this.schedule(0);
    setTimeout(() => this.schedule(0), 1500); // cancelling -> cancelled
  }

  actionForm(run) {
    const calls = run.required_action?.submit_tool_outputs?.tool_calls ?? [];
    const fields = calls.map((call) => {
      const area = h("textarea", {
        rows: 2, class: "tool-output", dataset: { callId: call.id }, "aria-label": `Output of ${call.function.name}`,
        placeholder: "output (text or JSON)",
      });
      area.value = this.typed.get(call.id) ?? "";
      area.addEventListener("input", () => this.typed.set(call.id, area.value));
      return h("div", { class: "tool-call" },
        h("strong", {}, call.function.name), " ", h("span", { class: "mono small muted" }, call.id),
        h("pre", {}, pretty(call.function.arguments)), area);
    });
    const button = h("button", { type: "submit", class: "primary submit-outputs" }, "Submit outputs");
    const form = h("form", { class: "action" },
      h("div", {}, h("strong", {}, "requires_action"), " — the run waits for these function outputs:"),
      fields, button);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const outputs = calls.map((c) => ({ tool_call_id: c.id, output: this.typed.get(c.id) ?? "" }));
      button.disabled = true;
      try {
        await this.onSubmit(run, outputs);
        for (const c of calls) this.typed.delete(c.id);
      } finally {
        button.disabled = false;
      }
    });
    return form;
  }

  stepView(step) {
    const d = step.step_details;
    const u = step.usage;
    const end = step.completed_at || step.failed_at || step.cancelled_at || step.expired_at;
    return h("div", { class: "step", dataset: { stepId: step.id, type: step.type } },
      h("div", {},
        h("strong", {}, step.type), " ", h("span", { class: `status ${step.status}` }, step.status),
        " ", h("span", { class: "mono small muted" }, step.id)),
      facts([
        ["tokens", u ? `${u.prompt_tokens} + ${u.completion_tokens} = ${u.total_tokens}` : ""],
        ["took", end ? `${end - step.created_at} s` : ""],
        ["message", d.type === "message_creation" ? d.message_creation.message_id : ""],
        ["error", step.last_error ? `${step.last_error.code}: ${step.last_error.message}` : ""],
      ]),
      step.reasoning ? h("details", { class: "reasoning" },
        h("summary", { class: "small muted" }, "reasoning"), h("pre", {}, step.reasoning)) : null,
      d.type === "tool_calls" ? d.tool_calls.map((c) => this.callView(c)) : null);
  }

  callView(call) {
    const head = h("div", {}, h("strong", {}, call.type === "function" ? call.function.name : call.type),
      " ", h("span", { class: "mono small muted" }, call.id));
    if (call.type === "function") {
      return h("div", { class: "tool-call", dataset: { type: "function" } }, head,
        h("div", { class: "small muted" }, "arguments"), h("pre", {}, pretty(call.function.arguments)),
        h("div", { class: "small muted" }, "output"),
        call.function.output === null ? h("p", { class: "muted small" }, "waiting for the output")
          : h("pre", { class: "function-output" }, call.function.output));
    }
    if (call.type === "code_interpreter") {
      const ci = call.code_interpreter;
      return h("div", { class: "tool-call", dataset: { type: "code_interpreter" } }, head,
        h("div", { class: "small muted" }, "code"), h("pre", {}, ci.input),
        ci.outputs.map((o) => (o.type === "logs"
          ? [h("div", { class: "small muted" }, "logs"), h("pre", {}, o.logs)]
          : this.image(o.image.file_id))));
    }
    if (call.type === "file_search") {
      const fs = call.file_search || {};
      const results = fs.results ?? [];
      return h("div", { class: "tool-call", dataset: { type: "file_search" } }, head,
        fs.ranking_options ? h("div", { class: "small muted" },
          `ranker ${fs.ranking_options.ranker}, threshold ${fs.ranking_options.score_threshold}`) : null,
        results.length ? h("ol", { class: "results" }, results.map((r) => h("li", {},
          h("span", { class: "score" }, Number(r.score).toFixed(3)), " ", h("strong", {}, r.file_name),
          " ", h("span", { class: "mono small muted" }, r.file_id),
          (r.content ?? []).map((c) => h("pre", {}, c.text))))) : h("p", { class: "muted small" }, "no results"));
    }
    return h("pre", {}, JSON.stringify(call, null, 2));
  }

  image(fileId) {
    const img = h("img", { class: "output-image", alt: `image ${fileId}` });
    const known = this.images.get(fileId);
    if (known) img.src = known;
    else {
      this.api.blobUrl(fileId).then((url) => { this.images.set(fileId, url); img.src = url; })
        .catch((err) => img.replaceWith(h("p", { class: "error-text" }, `image ${fileId}: ${err.message}`)));
    }
    return img;
  }
}
