// The request panel of the Responses mode: model, instructions, tools (functions as JSON, file_search on a
// vector store, code_interpreter in an automatic container), tool_choice, max_output_tokens, and how the chat
// continues (previous_response_id or a conversation). Sent with every request: a response inherits none of
// them from the previous one. Kept in localStorage.
import { $, clear, h } from "../dom.js";
import { FUNCTION_TEMPLATE, addFunctionEditor, functionDefinitions } from "../functions.js";

const SETTINGS_STORAGE = "assistd.responses.settings";

export class RequestPanel {
  constructor() {
    $("#r-add-function").addEventListener("click", () => addFunctionEditor($("#r-functions"), FUNCTION_TEMPLATE));
  }

  async load(api) {
    const models = await api.get("/models");
    const select = clear($("#r-model"));
    for (const m of models.data) select.append(h("option", { value: m.id }, m.id));
    this.restore();
  }

  get continuation() {
    return $("input[name=r-continue]:checked").value;
  }

  set continuation(kind) {
    $(`input[name=r-continue][value=${kind}]`).checked = true;
  }

  /** The request's fields (no input, no continuation); throws on a mistake the user must fix. */
  body() {
    const tools = functionDefinitions($("#r-functions")).map((fn) => ({ type: "function", ...fn }));
    const include = [];
    if ($("#r-search").checked) {
      const store = $("#r-store").value.trim();
      if (!store) throw new Error("file_search needs a vector store id (vs_…).");
      tools.push({ type: "file_search", vector_store_ids: [store] });
      include.push("file_search_call.results");
    }
    if ($("#r-code").checked) {
      tools.push({ type: "code_interpreter", container: { type: "auto" } });
      include.push("code_interpreter_call.outputs");
    }
    const body = { model: $("#r-model").value, tools };
    const instructions = $("#r-instructions").value.trim();
    if (instructions) body.instructions = instructions;
    const choice = $("#r-tool-choice").value;
    if (choice) body.tool_choice = choice;
    const max = $("#r-max-tokens").value;
    if (max) body.max_output_tokens = Number(max);
    if (include.length) body.include = include;
    this.save();
    return body;
  }

  /** What retrieving a response includes: the results and outputs its tools make. */
  include() {
    return ["file_search_call.results", "code_interpreter_call.outputs"];
  }

  save() {
    localStorage.setItem(SETTINGS_STORAGE, JSON.stringify({
      model: $("#r-model").value,
      instructions: $("#r-instructions").value,
      functions: [...document.querySelectorAll("#r-functions .function-json")].map((e) => e.value),
      search: $("#r-search").checked,
      store: $("#r-store").value,
      code: $("#r-code").checked,
      toolChoice: $("#r-tool-choice").value,
      maxTokens: $("#r-max-tokens").value,
      continuation: this.continuation,
    }));
  }

  restore() {
    let saved;
    try {
      saved = JSON.parse(localStorage.getItem(SETTINGS_STORAGE) || "null");
    } catch {
      saved = null;
    }
    if (!saved) return;
    if ([...$("#r-model").options].some((o) => o.value === saved.model)) $("#r-model").value = saved.model;
    $("#r-instructions").value = saved.instructions ?? "";
    clear($("#r-functions"));
    for (const text of saved.functions ?? []) addFunctionEditor($("#r-functions"), text);
    $("#r-search").checked = Boolean(saved.search);
    $("#r-store").value = saved.store ?? "";
    $("#r-code").checked = Boolean(saved.code);
    $("#r-tool-choice").value = saved.toolChoice ?? "";
    $("#r-max-tokens").value = saved.maxTokens ?? "";
    if (saved.continuation) this.continuation = saved.continuation;
  }
}
