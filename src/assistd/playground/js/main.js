// Wires the panels together. The API key is typed once, kept in localStorage, sent only to this server.
// The header's switch picks the API: Assistants (assistant, thread, runs) or Responses (request, chat,
// responses).
import { Api } from "./api.js";
import { AssistantPanel } from "./assistant.js";
import { ChatPanel } from "./chat.js";
import { $ } from "./dom.js";
import { Inspector } from "./inspector.js";
import { ModeSwitch } from "./mode.js";
import { ResponsesChat } from "./responses/chat.js";
import { RequestPanel } from "./responses/settings.js";

const api = new Api("/v1");

function notify(text, isError = false) {
  const box = $("#notice");
  box.textContent = text;
  box.classList.toggle("error", isError);
}

new ModeSwitch();
const inspector = new Inspector(api, notify, (run, outputs) => chat.submitOutputs(run, outputs));
const assistants = new AssistantPanel(api, notify, () => {});
const chat = new ChatPanel(api, notify, { assistant: () => assistants.current, inspector });
const requests = new RequestPanel();
const responses = new ResponsesChat(api, notify, requests);

async function start() {
  try {
    await assistants.load();
    await chat.restore();
    await requests.load(api);
    await responses.restore();
    notify("Ready.");
    document.body.dataset.ready = "true";
  } catch (err) {
    notify(err.status === 401 ? "Type this server's API key above." : err.message, true);
  }
}

$("#api-key").value = api.key;
$("#key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  api.key = $("#api-key").value.trim();
  start();
});
window.addEventListener("unhandledrejection", (e) => notify(e.reason?.message ?? String(e.reason), true));
start();
