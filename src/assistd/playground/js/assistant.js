// The assistant panel: pick one, create one, edit its model, instructions, tools and sampling settings,
// and fill a vector store for file_search.
import { $, clear, h } from "./dom.js";
import { FUNCTION_TEMPLATE, addFunctionEditor, functionDefinitions } from "./functions.js";

const SCHEMA_TEMPLATE = {
  name: "answer",
  schema: { type: "object", properties: { answer: { type: "string" } }, required: ["answer"] },
  strict: true,
};
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export class AssistantPanel {
  constructor(api, notify, onChange) {
    this.api = api;
    this.notify = notify;
    this.onChange = onChange;
    this.current = null;
    this.assistants = [];
    $("#assistant-select").addEventListener("change", (e) => this.select(e.target.value));
    $("#assistant-new").addEventListener("click", () => this.select(""));
    $("#assistant-reload").addEventListener("click", () => this.load());
    $("#a-add-function").addEventListener("click", () => this.addFunction(FUNCTION_TEMPLATE));
    $("#a-format").addEventListener("change", () => this.showSchema());
    $("#assistant-form").addEventListener("submit", (e) => { e.preventDefault(); this.save(); });
    $("#store-upload").addEventListener("click", () => this.uploadToStore());
  }

  async load(selectId) {
    const [models, assistants] = await Promise.all([
      this.api.get("/models"),
      this.api.all("/assistants", { order: "desc" }),
    ]);
    const modelSelect = clear($("#a-model"));
    for (const m of models.data) modelSelect.append(h("option", { value: m.id }, m.id));
    this.assistants = assistants;
    const select = clear($("#assistant-select"));
    select.append(h("option", { value: "" }, "— new assistant —"));
    for (const a of assistants) {
      select.append(h("option", { value: a.id }, `${a.name || "(no name)"} · ${a.id}`));
    }
    const keep = selectId ?? this.current?.id ?? localStorage.getItem("assistd.assistantId") ?? "";
    this.select(assistants.some((a) => a.id === keep) ? keep : "");
  }

  select(id) {
    this.current = this.assistants.find((a) => a.id === id) || null;
    $("#assistant-select").value = this.current ? this.current.id : "";
    if (this.current) localStorage.setItem("assistd.assistantId", this.current.id);
    this.fill(this.current);
    this.onChange(this.current);
  }

  fill(a) {
    $("#a-name").value = a?.name ?? "";
    if (a?.model) $("#a-model").value = a.model;
    $("#a-instructions").value = a?.instructions ?? "";
    const tools = a?.tools ?? [];
    $("#a-code").checked = tools.some((t) => t.type === "code_interpreter");
    $("#a-search").checked = tools.some((t) => t.type === "file_search");
    clear($("#a-functions"));
    for (const t of tools) if (t.type === "function") this.addFunction(t.function);
    $("#a-temperature").value = a?.temperature ?? "";
    $("#a-top-p").value = a?.top_p ?? "";
    const format = a?.response_format;
    const kind = !format || format === "auto" ? "auto" : format.type;
    $("#a-format").value = kind;
    $("#a-format-schema").value = JSON.stringify(
      kind === "json_schema" ? format.json_schema : SCHEMA_TEMPLATE, null, 2);
    this.showSchema();
    $("#assistant-save").textContent = a ? "Save changes" : "Create assistant";
    $("#assistant-id").textContent = a ? a.id : "";
    const stores = a?.tool_resources?.file_search?.vector_store_ids ?? [];
    $("#store-info").textContent = stores.length ? `Vector store ${stores[0]}` : "No vector store attached.";
  }

  showSchema() {
    $("#a-format-schema").hidden = $("#a-format").value !== "json_schema";
  }

  addFunction(definition) {
    addFunctionEditor($("#a-functions"), definition);
  }

  body() {
    const tools = [];
    if ($("#a-code").checked) tools.push({ type: "code_interpreter" });
    if ($("#a-search").checked) tools.push({ type: "file_search" });
    for (const fn of functionDefinitions($("#a-functions"))) tools.push({ type: "function", function: fn });
    const number = (sel) => ($(sel).value === "" ? null : Number($(sel).value));
    const kind = $("#a-format").value;
    let responseFormat = kind === "auto" ? "auto" : { type: kind };
    if (kind === "json_schema") {
      try {
        responseFormat.json_schema = JSON.parse($("#a-format-schema").value);
      } catch {
        throw new Error("The response format's JSON schema is not valid JSON.");
      }
    }
    return {
      name: $("#a-name").value || null,
      model: $("#a-model").value,
      instructions: $("#a-instructions").value || null,
      tools,
      temperature: number("#a-temperature"),
      top_p: number("#a-top-p"),
      response_format: responseFormat,
    };
  }

  async save() {
    let body;
    try {
      body = this.body();
    } catch (err) {
      this.notify(err.message, true);
      return;
    }
    const saved = this.current
      ? await this.api.post(`/assistants/${this.current.id}`, body)
      : await this.api.post("/assistants", body);
    this.notify(`${this.current ? "Saved" : "Created"} assistant ${saved.id}`);
    await this.load(saved.id);
  }

  async uploadToStore() {
    const files = [...$("#store-files").files];
    if (!this.current) return this.notify("Create or pick an assistant first.", true);
    if (!files.length) return this.notify("Choose files to upload first.", true);
    const a = this.current;
    let storeId = a.tool_resources?.file_search?.vector_store_ids?.[0];
    if (!storeId) {
      storeId = (await this.api.post("/vector_stores", { name: `${a.name || a.id} knowledge` })).id;
    }
    const ids = [];
    for (const [i, file] of files.entries()) {
      this.notify(`Uploading ${file.name} (${i + 1}/${files.length})…`);
      ids.push((await this.api.upload(file)).id);
    }
    let batch = await this.api.post(`/vector_stores/${storeId}/file_batches`, { file_ids: ids });
    while (batch.file_counts.in_progress > 0) {
      this.notify(`Indexing: ${batch.file_counts.completed}/${batch.file_counts.total} files done…`);
      await sleep(500);
      batch = await this.api.get(`/vector_stores/${storeId}/file_batches/${batch.id}`);
    }
    const tools = a.tools.some((t) => t.type === "file_search") ? a.tools : [...a.tools, { type: "file_search" }];
    const codeFiles = a.tool_resources?.code_interpreter?.file_ids ?? [];
    await this.api.post(`/assistants/${a.id}`, {
      tools,
      tool_resources: { code_interpreter: { file_ids: codeFiles }, file_search: { vector_store_ids: [storeId] } },
    });
    const c = batch.file_counts;
    this.notify(`Vector store ${storeId}: ${c.completed} indexed, ${c.failed} failed.`, c.failed > 0);
    $("#store-files").value = "";
    await this.load(a.id);
  }
}
