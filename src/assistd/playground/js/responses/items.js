// One item of a response as the inspector shows it: reasoning (its reasoning_text and summary), function
// calls (name, arguments, the output sent back), file search calls (queries, results with scores), code
// interpreter calls (code, logs, images), messages (text, annotations), function call outputs; anything
// else as its JSON.
import { facts, h, pretty } from "../dom.js";

const label = (text) => h("div", { class: "small muted" }, text);

/**
 * An <li> for `item`. `outputOf(call_id)` is the output sent for a function call (or undefined);
 * `field` an element to put under a function call that waits for its output (a textarea); `image(part)` the
 * view of an input_image part (else a line naming it).
 */
export function itemView(item, { outputOf = () => undefined, field = null, image = null } = {}) {
  const view = VIEWS[item.type] ?? ((i) => h("pre", {}, JSON.stringify(i, null, 2)));
  return h("li", { class: "item", dataset: { type: item.type, itemId: item.id ?? "", status: item.status ?? "" } },
    h("div", { class: "item-head" },
      h("strong", {}, title(item)), " ",
      item.status ? h("span", { class: `status ${item.status}` }, item.status) : null, " ",
      h("span", { class: "mono small muted" }, item.id ?? "")),
    view(item, { outputOf, field, image }));
}

function title(item) {
  if (item.type === "function_call") return `function_call ${item.name}`;
  if (item.type === "message") return `message (${item.role})`;
  return item.type;
}

const VIEWS = {
  reasoning(item) {
    const texts = (item.content ?? []).filter((p) => p.type === "reasoning_text").map((p) => p.text);
    const summary = (item.summary ?? []).map((p) => p.text);
    if (!texts.length && !summary.length) return h("p", { class: "muted small" }, "no reasoning text");
    return [
      texts.map((t) => h("pre", { class: "reasoning-text" }, t)),
      summary.length ? [label("summary"), summary.map((t) => h("pre", { class: "reasoning-summary" }, t))] : null,
    ];
  },

  function_call(item, { outputOf, field }) {
    const output = outputOf(item.call_id);
    return [
      facts([["call_id", item.call_id]]),
      label("arguments"), h("pre", { class: "arguments" }, pretty(item.arguments)),
      label("output"),
      output !== undefined ? h("pre", { class: "function-output" }, output)
        : field ?? h("p", { class: "muted small" }, "no output sent yet"),
    ];
  },

  function_call_output(item) {
    const output = typeof item.output === "string" ? item.output : JSON.stringify(item.output, null, 2);
    return [facts([["call_id", item.call_id]]), h("pre", { class: "function-output" }, output)];
  },

  file_search_call(item) {
    const results = item.results;
    return [
      label("queries"),
      h("ul", { class: "queries" }, (item.queries ?? []).map((q) => h("li", {}, q))),
      label("results"),
      results === null || results === undefined
        ? h("p", { class: "muted small" }, "not included (ask with include: file_search_call.results)")
        : results.length ? h("ol", { class: "results" }, results.map((r) => h("li", {},
          h("span", { class: "score" }, Number(r.score).toFixed(3)), " ", h("strong", {}, r.filename ?? ""),
          " ", h("span", { class: "mono small muted" }, r.file_id ?? ""),
          r.text ? h("pre", {}, r.text) : null)))
          : h("p", { class: "muted small" }, "no results"),
    ];
  },

  code_interpreter_call(item) {
    const outputs = item.outputs;
    return [
      facts([["container", item.container_id]]),
      label("code"), h("pre", { class: "code" }, item.code ?? ""),
      outputs === null || outputs === undefined
        ? h("p", { class: "muted small" }, "outputs not included (ask with include: code_interpreter_call.outputs)")
        : outputs.map((o) => (o.type === "logs"
          ? [label("logs"), h("pre", { class: "logs" }, o.logs)]
          : h("img", { class: "output-image", src: o.url, alt: "image the code showed" }))),
    ];
  },

  message(item, { image }) {
    const content = typeof item.content === "string" ? [{ type: "input_text", text: item.content }] : item.content;
    return (content ?? []).map((part) => {
      if (part.type === "output_text" || part.type === "input_text") {
        const notes = part.annotations ?? [];
        return [
          h("div", { class: "text" }, part.text),
          notes.length ? h("ul", { class: "annotations small" }, notes.map((a) => h("li", {}, annotation(a)))) : null,
        ];
      }
      if (part.type === "refusal") return h("p", { class: "error-text" }, part.refusal);
      if (part.type === "input_image") return image ? image(part) : label(`image ${part.file_id ?? part.image_url}`);
      if (part.type === "input_file") return label(`file ${part.file_id ?? part.filename}`);
      return h("pre", {}, JSON.stringify(part, null, 2));
    });
  },
};

function annotation(a) {
  if (a.type === "file_citation") return `file_citation ${a.filename ?? ""} (${a.file_id}) at ${a.index}`;
  if (a.type === "container_file_citation") {
    const where = `${a.container_id}/${a.file_id}`;
    return `container_file_citation ${a.filename ?? ""} (${where}) ${a.start_index}-${a.end_index}`;
  }
  if (a.type === "url_citation") return `url_citation ${a.title ?? ""} ${a.url}`;
  if (a.type === "file_path") return `file_path ${a.file_id} at ${a.index}`;
  return JSON.stringify(a);
}
