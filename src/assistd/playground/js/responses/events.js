// A response built from its stream events (POST /v1/responses with stream:true): the response object of
// response.created / in_progress / completed / failed / incomplete, output items added and done by their
// output_index, and the deltas in between (output text, reasoning text, function arguments, code). No DOM.

export const TERMINAL = ["response.completed", "response.failed", "response.incomplete"];

// what a hosted tool call's progress events say about its item
const CALL_STATUS = {
  "response.file_search_call.in_progress": "in_progress",
  "response.file_search_call.searching": "searching",
  "response.file_search_call.completed": "completed",
  "response.code_interpreter_call.in_progress": "in_progress",
  "response.code_interpreter_call.interpreting": "interpreting",
  "response.code_interpreter_call.completed": "completed",
};

export class ResponseBuilder {
  constructor() {
    this.response = null; // the latest response object, its output kept up to date by the events
    this.sequence = -1; // the last sequence_number seen
    this.error = null; // an `error` event's data
  }

  get ended() {
    return this.error !== null || TERMINAL.includes(`response.${this.response?.status}`);
  }

  /** Applies one event (its data, whose `type` names it); returns the item it touched, if any. */
  apply(event) {
    if (typeof event.sequence_number === "number") this.sequence = event.sequence_number;
    if (event.type === "error") {
      this.error = event;
      return null;
    }
    if (event.response) {
      // created/in_progress carry no output yet; the end carries all of it
      const output = event.response.output?.length ? event.response.output : (this.response?.output ?? []);
      this.response = { ...event.response, output };
      return null;
    }
    if (!this.response || event.output_index === undefined) return null;
    const output = this.response.output;
    if (event.item) {
      output[event.output_index] = structuredClone(event.item);
      return output[event.output_index];
    }
    const item = output[event.output_index];
    if (!item) return null;
    const kind = event.type.slice("response.".length);
    if (kind === "content_part.added" || kind === "content_part.done") {
      (item.content ??= [])[event.content_index] = structuredClone(event.part);
    } else if (kind === "output_text.delta" || kind === "reasoning_text.delta") {
      const part = partAt(item, event.content_index, kind.split(".")[0]);
      part.text += event.delta;
    } else if (kind === "output_text.done" || kind === "reasoning_text.done") {
      partAt(item, event.content_index, kind.split(".")[0]).text = event.text;
    } else if (kind === "output_text.annotation.added") {
      const part = partAt(item, event.content_index, "output_text");
      (part.annotations ??= [])[event.annotation_index] = event.annotation;
    } else if (kind === "function_call_arguments.delta") {
      item.arguments = (item.arguments ?? "") + event.delta;
    } else if (kind === "function_call_arguments.done") {
      item.arguments = event.arguments;
    } else if (kind === "code_interpreter_call_code.delta") {
      item.code = (item.code ?? "") + event.delta;
    } else if (kind === "code_interpreter_call_code.done") {
      item.code = event.code;
    } else if (CALL_STATUS[event.type]) {
      item.status = CALL_STATUS[event.type];
    }
    return item;
  }
}

function partAt(item, index, type) {
  const content = (item.content ??= []);
  content[index] ??= { type, text: "" };
  content[index].text ??= "";
  return content[index];
}

/** The text of a message item's output_text parts (or reasoning_text parts of a reasoning item). */
export function itemText(item) {
  return (item.content ?? []).map((p) => p.text ?? p.refusal ?? "").join("");
}
