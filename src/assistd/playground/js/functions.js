// Function tool definitions typed as JSON ({name, description, parameters}): one editor per function, shared
// by the Assistants panel and the Responses request panel.
import { h } from "./dom.js";

export const FUNCTION_TEMPLATE = {
  name: "get_weather",
  description: "The current weather in a city",
  parameters: {
    type: "object",
    properties: { city: { type: "string", description: "city name" } },
    required: ["city"],
  },
};

export function validFunction(text) {
  try {
    const fn = JSON.parse(text);
    return typeof fn === "object" && fn !== null && typeof fn.name === "string" && /^[a-zA-Z0-9_-]{1,64}$/.test(fn.name);
  } catch {
    return false;
  }
}

/** Appends an editor of `definition` (an object, or the JSON text typed before) with its Remove button. */
export function addFunctionEditor(container, definition) {
  const editor = h("textarea", {
    rows: 8, spellcheck: "false", class: "function-json", "aria-label": "Function definition (JSON)",
  });
  editor.value = typeof definition === "string" ? definition : JSON.stringify(definition, null, 2);
  editor.addEventListener("input", () => editor.classList.toggle("invalid", !validFunction(editor.value)));
  const box = h("div", { class: "function" },
    h("div", { class: "row spread" },
      h("span", { class: "small muted" }, "function: {name, description, parameters (JSON Schema)}"),
      h("button", { type: "button", onclick: () => box.remove() }, "Remove")),
    editor);
  container.append(box);
}

/** The definitions typed in the editors under `container`; throws when one is not valid. */
export function functionDefinitions(container) {
  return [...container.querySelectorAll(".function-json")].map((editor) => {
    if (!validFunction(editor.value)) throw new Error("A function definition is not valid JSON with a name.");
    return JSON.parse(editor.value);
  });
}
