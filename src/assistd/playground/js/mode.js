// The switch in the header between the two APIs the Playground speaks: Assistants (assistants, threads and
// runs) and Responses (responses and conversations). Each has its own panels; the choice is kept in
// localStorage.
import { $ } from "./dom.js";

const MODE_STORAGE = "assistd.mode";
export const MODES = ["assistants", "responses"];

export class ModeSwitch {
  constructor() {
    for (const mode of MODES) $(`#mode-${mode}`).addEventListener("click", () => this.set(mode));
    this.set(localStorage.getItem(MODE_STORAGE));
  }

  set(mode) {
    if (!MODES.includes(mode)) mode = "assistants";
    this.mode = mode;
    document.body.dataset.mode = mode;
    for (const m of MODES) {
      $(`#${m}-mode`).hidden = m !== mode;
      $(`#mode-${m}`).setAttribute("aria-pressed", String(m === mode));
    }
    localStorage.setItem(MODE_STORAGE, mode);
  }
}
