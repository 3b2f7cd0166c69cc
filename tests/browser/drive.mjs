// Drives the Playground in headless Chromium (playwright-core) for tests/browser/test_playground.py.
//
//   node drive.mjs SCENARIO BASE_URL API_KEY
//
// Scenarios may read more from the environment (DRIVE_VECTOR_STORE: a vector store the test made; DRIVE_PNGS: a
// JSON list of small PNG images, base64, to attach).
// Prints one JSON line: {"ok": true, ...facts} or {"ok": false, "error": ..., "notice": ..., "log": [...]}.
import { chromium } from "playwright-core";

const [scenario, baseUrl, apiKey] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const ARGS = [
  "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
  "--disable-sync", "--no-first-run",
];
const TIMEOUT = Number(process.env.BROWSER_TIMEOUT_MS || 180000); // a busy 2-core machine is slow

async function openPlayground(page) {
  await page.goto(`${baseUrl}/`);
  if (!page.url().endsWith("/playground")) throw new Error(`/ did not redirect to /playground: ${page.url()}`);
  await page.fill("#api-key", apiKey);
  await page.click("#key-form button[type=submit]");
  await page.waitForSelector("body[data-ready=true]");
  const stored = await page.evaluate(() => localStorage.getItem("assistd.apiKey"));
  if (stored !== apiKey) throw new Error("the API key was not kept in localStorage");
}

async function createAssistant(page, name, instructions, withFunction) {
  await page.selectOption("#assistant-select", "");
  await page.fill("#a-name", name);
  await page.fill("#a-instructions", instructions);
  if (withFunction) await page.click("#a-add-function");
  await page.click("#assistant-save");
  await page.waitForFunction((n) => {
    const sel = document.querySelector("#assistant-select");
    return document.querySelector("#assistant-id").textContent.startsWith("asst_")
      && sel.selectedOptions[0]?.textContent.startsWith(n);
  }, name);
  return page.textContent("#assistant-id");
}

async function send(page, text) {
  await page.click("#thread-new");
  await page.waitForFunction(() => document.querySelector("#thread-id").value.startsWith("thread_"));
  await page.fill("#message-input", text);
  await page.click("#send");
  return page.inputValue("#thread-id");
}

/** The last assistant bubble of the thread once its message is complete: text and the number of deltas. */
async function finalReply(page) {
  const bubble = page.locator("#messages .message.assistant:not(.streaming)").last();
  await bubble.waitFor();
  await page.waitForFunction(() => {
    const all = document.querySelectorAll("#messages .message.assistant");
    const last = all[all.length - 1];
    return last && !last.classList.contains("streaming") && last.querySelector(".text")?.textContent.length > 0;
  });
  return {
    message_id: await bubble.getAttribute("data-message-id"),
    text: await bubble.locator(".text").first().textContent(),
    deltas: Number((await bubble.getAttribute("data-deltas")) || 0),
  };
}

// ------------------------------------------------------------------------------------------------- images
const PNGS = JSON.parse(process.env.DRIVE_PNGS || "[]");
const png = (i, name) => ({ name, mimeType: "image/png", buffer: Buffer.from(PNGS[i], "base64") });

/** Picks `files` with the composer's "Attach image" button (its file chooser). */
async function pickImages(page, button, files) {
  const [chooser] = await Promise.all([page.waitForEvent("filechooser"), page.click(button)]);
  await chooser.setFiles(files);
}

/** Pastes a PNG into the message box as a browser does: a paste event whose clipboardData holds the file. */
function pasteImage(page, input, base64, name) {
  return page.evaluate(({ input, base64, name }) => {
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    const data = new DataTransfer();
    data.items.add(new File([bytes], name, { type: "image/png" }));
    const event = new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true });
    document.querySelector(input).dispatchEvent(event);
    return event.defaultPrevented;
  }, { input, base64, name });
}

/** The images in `selector` once all have loaded (or failed): file id, natural width, whether from a blob. */
async function loadedImages(page, selector, count) {
  await page.waitForFunction(({ selector, count }) => {
    const imgs = [...document.querySelectorAll(selector)];
    return imgs.length >= count && imgs.every((img) => img.src && img.complete);
  }, { selector, count });
  return page.locator(selector).evaluateAll((imgs) => imgs.map((img) => ({
    file_id: img.dataset.fileId ?? null, width: img.naturalWidth, blob: img.src.startsWith("blob:"),
  })));
}

const trayCount = (page, tray) => page.locator(`${tray} .pending-image`).count();

/** The notice once the send has ended: its text and whether it is shown as an error. */
async function endedNotice(page, button) {
  await page.waitForFunction((button) => !document.querySelector(button).disabled
    && !/^(Running|Responding|Uploading)/.test(document.querySelector("#notice").textContent), button);
  return page.locator("#notice").evaluate((el) => ({ text: el.textContent, error: el.classList.contains("error") }));
}

// ------------------------------------------------------------------------------------------ Responses mode
async function responsesMode(page) {
  await page.click("#mode-responses");
  await page.waitForSelector("#responses-mode:not([hidden])");
  await page.waitForFunction(() => document.querySelector("#r-model").options.length > 0);
}

/** Sends `text` (or, with `outputs`, the typed function outputs) and waits until the chat's `count`-th
 * response has ended and was read back; facts of its inspector card and of its last message bubble. */
async function responseTurn(page, count, { text, outputs = false } = {}) {
  if (outputs) await page.click("#r-inspector button.send-outputs");
  else {
    await page.fill("#r-input", text);
    await page.click("#r-send");
  }
  await page.waitForFunction((n) => {
    const card = document.querySelector("#r-inspector .response");
    const ended = card && ["completed", "incomplete", "failed"].includes(card.dataset.status);
    return ended && !document.querySelector("#r-send").disabled
      && document.querySelectorAll("#r-response-select option").length === n;
  }, count);
  return responseCard(page);
}

async function responseCard(page) {
  const card = page.locator("#r-inspector .response");
  const responseId = await card.getAttribute("data-response-id");
  const bubble = page.locator(`#r-messages .message.assistant[data-type=message][data-response-id="${responseId}"]`)
    .last();
  const hasBubble = (await bubble.count()) > 0;
  return {
    response_id: responseId,
    status: await card.getAttribute("data-status"),
    facts: await card.locator(":scope > .facts").evaluate((dl) => Object.fromEntries(
      [...dl.querySelectorAll("dt")].map((dt) => [dt.textContent, dt.nextElementSibling.textContent]))),
    items: await card.locator(":scope > ol.items > li.item").evaluateAll((lis) => lis.map((li) => ({
      type: li.dataset.type, id: li.dataset.itemId, text: li.querySelector(".text")?.textContent ?? null,
    }))),
    input: await card.locator(".input-items li.item").evaluateAll((lis) => lis.map((li) => li.dataset.type)),
    bubble: hasBubble ? {
      item_id: await bubble.getAttribute("data-item-id"),
      text: await bubble.locator(".text").textContent(),
      deltas: Number((await bubble.getAttribute("data-deltas")) || 0),
      streaming: await bubble.evaluate((el) => el.classList.contains("streaming")),
    } : null,
  };
}

const scenarios = {
  async chat(page) {
    await openPlayground(page);
    const assistantId = await createAssistant(page, `browser-chat-${Date.now()}`, "You answer briefly.", false);
    const threadId = await send(page, "Say hello in one short sentence.");
    const reply = await finalReply(page);
    const run = page.locator(".run[data-status=completed]").first();
    await run.waitFor();
    await run.locator(".step[data-type=message_creation] .status.completed").waitFor();
    return {
      assistant_id: assistantId,
      thread_id: threadId,
      run_id: await run.getAttribute("data-run-id"),
      reply,
      steps: await run.locator(".step").count(),
      step_message: await run.locator(".step[data-type=message_creation] dd").allTextContents(),
      tokens_shown: (await run.locator(".facts").first().textContent()).includes("completion"),
    };
  },

  async function_call(page) {
    await openPlayground(page);
    const assistantId = await createAssistant(page, `browser-fn-${Date.now()}`,
      "You report the weather using the get_weather function.", true);
    await page.click("#run-options summary");
    await page.selectOption("#run-tool-choice", "required");
    const threadId = await send(page, "What is the weather in Paris?");
    const waiting = page.locator(".run[data-status=requires_action]").first();
    await waiting.waitFor();
    const runId = await waiting.getAttribute("data-run-id");
    const card = `.run[data-run-id="${runId}"]`;
    const argumentsShown = await waiting.locator("form.action pre").first().textContent();
    // A tiny model may call the function again after seeing its output: answer each round, as a person would.
    let calls = 0;
    const answered = [];
    for (let round = 0; round < 3; round++) {
      const status = await page.waitForFunction(({ sel, done }) => {
        const el = document.querySelector(sel);
        if (!el) return null;
        if (el.dataset.status !== "requires_action") return ["queued", "in_progress"].includes(el.dataset.status)
          ? null : el.dataset.status;
        const ids = [...el.querySelectorAll("form.action textarea.tool-output")].map((t) => t.dataset.callId);
        return ids.length && !ids.some((id) => done.includes(id)) ? "requires_action" : null;
      }, { sel: card, done: answered }).then((handle) => handle.jsonValue());
      if (status !== "requires_action") break;
      const fields = page.locator(`${card} form.action textarea.tool-output`);
      const count = await fields.count();
      for (let i = 0; i < count; i++) {
        await fields.nth(i).fill('{"temperature_c": 21, "sky": "sunny"}');
        answered.push(await fields.nth(i).getAttribute("data-call-id"));
      }
      calls += count;
      await page.locator(`${card} button.submit-outputs`).click();
    }
    // The first call's step shows the output typed in the page.
    const firstCall = page.locator(`${card} .tool-call[data-type=function] .function-output`).first();
    await firstCall.waitFor();
    // A model that still asks after the rounds above is stopped with the page's Cancel button.
    if (await page.locator(`${card}[data-status=requires_action]`).count()) {
      await page.locator(`${card} button.cancel-run`).click();
    }
    const ended = page.locator(`${card}:is([data-status=completed], [data-status=cancelled])`);
    await ended.waitFor();
    const finalStatus = await ended.getAttribute("data-status");
    const reply = finalStatus === "completed" ? await finalReply(page) : null;
    return {
      assistant_id: assistantId,
      thread_id: threadId,
      run_id: runId,
      calls,
      arguments_shown: argumentsShown,
      status: finalStatus,
      outputs_shown: await ended.locator(".tool-call[data-type=function] .function-output").allTextContents(),
      reply,
    };
  },

  async knowledge(page) {
    await openPlayground(page);
    const assistantId = await createAssistant(page, `browser-kb-${Date.now()}`,
      "You answer questions from the files in one sentence.", false);
    await page.click("#store-box summary");
    await page.setInputFiles("#store-files", [
      { name: "vacation.md", mimeType: "text/markdown",
        buffer: Buffer.from("# Vacation\n\nEvery employee has 25 days of paid vacation per year.\n") },
      { name: "security.md", mimeType: "text/markdown",
        buffer: Buffer.from("# Security\n\nPasswords have at least 14 characters.\n") },
    ]);
    await page.click("#store-upload");
    await page.waitForFunction(() => /^Vector store vs_\S+: 2 indexed, 0 failed/.test(
      document.querySelector("#notice").textContent));
    await page.waitForFunction(() => document.querySelector("#store-info").textContent.includes("vs_"));
    const storeInfo = await page.textContent("#store-info");
    const searchChecked = await page.isChecked("#a-search");
    await page.click("#run-options summary");
    await page.fill("#run-max-tokens", "60");
    const threadId = await send(page, "How many days of paid vacation do employees have?");
    const run = page.locator(".run:is([data-status=completed], [data-status=incomplete])").first();
    await run.waitFor();
    const search = run.locator(".tool-call[data-type=file_search]").first();
    await search.waitFor();
    return {
      assistant_id: assistantId,
      thread_id: threadId,
      run_id: await run.getAttribute("data-run-id"),
      store_info: storeInfo,
      search_checked: searchChecked,
      results: await search.locator("ol.results > li > strong").allTextContents(),
      scores: (await search.locator(".score").allTextContents()).map(Number),
      contents: await search.locator("ol.results pre").allTextContents(),
    };
  },

  async code(page) {
    await openPlayground(page);
    await page.selectOption("#assistant-select", "");
    await page.fill("#a-name", `browser-code-${Date.now()}`);
    await page.fill("#a-instructions", "You analyse data with Python. The files are in /mnt/data.");
    await page.check("#a-code");
    await page.click("#assistant-save");
    await page.waitForFunction(() => document.querySelector("#assistant-id").textContent.startsWith("asst_"));
    const assistantId = await page.textContent("#assistant-id");
    await page.click("#run-options summary");
    await page.selectOption("#run-tool-choice", "code_interpreter");
    await page.fill("#run-max-tokens", "120");
    await page.setInputFiles("#attach-files", [{
      name: "sales.csv", mimeType: "text/csv", buffer: Buffer.from("month,units\n2024-01,120\n2024-02,135\n"),
    }]);
    await page.selectOption("#attach-tool", "code_interpreter");
    const threadId = await send(page, "Print the total units in /mnt/data/sales.csv with pandas.");
    const userAttachments = await page.locator(".message.user .citations").first().textContent();
    const run = page.locator(".run:is([data-status=completed], [data-status=incomplete], [data-status=failed])")
      .first();
    await run.waitFor();
    const call = run.locator(".tool-call[data-type=code_interpreter]").first();
    await call.waitFor();
    return {
      assistant_id: assistantId,
      thread_id: threadId,
      run_id: await run.getAttribute("data-run-id"),
      status: await run.getAttribute("data-status"),
      attachments: userAttachments,
      code: await call.locator("pre").first().textContent(),
      outputs: await call.locator("pre").count() - 1,
    };
  },

  async responses(page) {
    await openPlayground(page);
    await responsesMode(page);
    await page.fill("#r-instructions", "You answer briefly.");
    await page.fill("#r-max-tokens", "80");
    // The reply's text as it grows while its bubble streams (an observer sees every change; polling may not).
    await page.evaluate(() => {
      window.streamed = [];
      new MutationObserver(() => {
        const text = document.querySelector("#r-messages .message.streaming[data-type=message] .text")?.textContent;
        if (text && window.streamed[window.streamed.length - 1] !== text) window.streamed.push(text);
      }).observe(document.querySelector("#r-messages"), { subtree: true, childList: true, characterData: true });
    });
    const first = await responseTurn(page, 1, { text: "Say hello in one short sentence." });
    const streamed = await page.evaluate(() => window.streamed);
    const second = await responseTurn(page, 2, { text: "Now say goodbye in one short sentence." });
    const chain = await page.textContent("#r-chain");
    // The first response stays one pick away.
    await page.selectOption("#r-response-select", first.response_id);
    await page.waitForSelector(`#r-inspector .response[data-response-id="${first.response_id}"]`);
    const picked = await page.getAttribute("#r-inspector .response", "data-response-id");
    // A reload reads the chat back from the server.
    const bubbles = await page.locator("#r-messages .message").count();
    await page.reload();
    await page.waitForSelector("body[data-ready=true]");
    const reloaded = {
      mode: await page.evaluate(() => document.body.dataset.mode),
      responses: await page.locator("#r-response-select option").count(),
      bubbles: await page.locator("#r-messages .message").count(),
      texts: await page.locator("#r-messages .message[data-type=message].assistant .text").allTextContents(),
    };
    // Back to Assistants: its panels work as before.
    await page.click("#mode-assistants");
    await page.waitForSelector("#assistants-mode:not([hidden])");
    const responsesHidden = await page.isHidden("#responses-mode");
    const assistantId = await createAssistant(page, `browser-back-${Date.now()}`, "You answer briefly.", false);
    const threadId = await send(page, "Say hello in one short sentence.");
    const reply = await finalReply(page);
    return {
      first, second, streamed, chain, picked, bubbles, reloaded,
      assistants: { hidden_responses: responsesHidden, assistant_id: assistantId, thread_id: threadId, reply },
    };
  },

  async responses_tools(page) {
    await openPlayground(page);
    await responsesMode(page);
    // A function call: its name and arguments in the inspector, the output typed there goes back.
    await page.fill("#r-instructions", "You report the weather using the get_weather function.");
    await page.click("#r-add-function");
    await page.selectOption("#r-tool-choice", "required");
    const call = await responseTurn(page, 1, { text: "What is the weather in Paris?" });
    const callItem = page.locator("#r-inspector li.item[data-type=function_call]").first();
    const called = {
      name: await callItem.locator(".item-head strong").textContent(),
      arguments: await callItem.locator("pre.arguments").textContent(),
      call_id: await callItem.locator("textarea.fn-output").getAttribute("data-call-id"),
      chat: await page.locator("#r-messages .message[data-type=function_call] .text").first().textContent(),
    };
    await callItem.locator("textarea.fn-output").fill('{"temperature_c": 21, "sky": "sunny"}');
    await page.selectOption("#r-tool-choice", "none");
    const answer = await responseTurn(page, 2, { outputs: true });
    await page.selectOption("#r-response-select", call.response_id);
    const callCard = page.locator(`#r-inspector .response[data-response-id="${call.response_id}"]`);
    const outputShown = await callCard.locator("li.item[data-type=function_call] pre.function-output").textContent();
    // file_search on a vector store: queries and results (asked for with include) in the inspector.
    await page.click("#r-functions button");
    await page.selectOption("#r-tool-choice", "");
    await page.check("#r-search");
    await page.fill("#r-store", process.env.DRIVE_VECTOR_STORE);
    await page.fill("#r-max-tokens", "60");
    await page.click("#r-new");
    const search = await responseTurn(page, 1, { text: "How many days of paid vacation do employees have?" });
    const searchItem = page.locator("#r-inspector li.item[data-type=file_search_call]").first();
    await searchItem.waitFor();
    const found = {
      queries: await searchItem.locator("ul.queries li").allTextContents(),
      results: await searchItem.locator("ol.results > li > strong").allTextContents(),
      scores: (await searchItem.locator(".score").allTextContents()).map(Number),
      contents: await searchItem.locator("ol.results pre").allTextContents(),
    };
    // A chat that continues with a conversation (made on its first message) instead.
    await page.uncheck("#r-search");
    await page.check("input[name=r-continue][value=conversation]");
    const turns = [
      await responseTurn(page, 1, { text: "My name is Ann." }),
      await responseTurn(page, 2, { text: "What is my name?" }),
    ];
    return {
      call, called, answer, output_shown: outputShown, search, ...found,
      conversation: { turns, chain: await page.textContent("#r-chain") },
    };
  },

  async responses_items(page) {
    // Items this server's test model cannot make (reasoning) or the test cannot count on (code runs):
    // their stream events through the page's own builder, then the inspector's views of them.
    await openPlayground(page);
    await responsesMode(page);
    return page.evaluate(async () => {
      const { ResponseBuilder } = await import("/playground/static/js/responses/events.js");
      const { itemView } = await import("/playground/static/js/responses/items.js");
      const response = { id: "resp_x", object: "response", status: "in_progress", output: [] };
      const rs = { id: "rs_1", type: "reasoning", summary: [], content: [], status: "in_progress" };
      const ci = { id: "ci_1", type: "code_interpreter_call", container_id: "cntr_1", code: "", outputs: null,
        status: "in_progress" };
      const msg = { id: "msg_1", type: "message", role: "assistant", status: "in_progress", content: [] };
      const events = [
        { type: "response.created", response },
        { type: "response.output_item.added", output_index: 0, item: rs },
        { type: "response.content_part.added", output_index: 0, content_index: 0,
          part: { type: "reasoning_text", text: "" } },
        { type: "response.reasoning_text.delta", output_index: 0, content_index: 0, delta: "The user wants " },
        { type: "response.reasoning_text.delta", output_index: 0, content_index: 0, delta: "2+3." },
        { type: "response.output_item.added", output_index: 1, item: ci },
        { type: "response.code_interpreter_call_code.delta", output_index: 1, delta: "print(" },
        { type: "response.code_interpreter_call_code.delta", output_index: 1, delta: "2+3)" },
        { type: "response.code_interpreter_call.interpreting", output_index: 1 },
        { type: "response.output_item.done", output_index: 1,
          item: { ...ci, code: "print(2+3)", outputs: [{ type: "logs", logs: "5\n" }], status: "completed" } },
        { type: "response.output_item.added", output_index: 2, item: msg },
        { type: "response.content_part.added", output_index: 2, content_index: 0,
          part: { type: "output_text", text: "", annotations: [], logprobs: [] } },
        { type: "response.output_text.delta", output_index: 2, content_index: 0, delta: "It is " },
        { type: "response.output_text.delta", output_index: 2, content_index: 0, delta: "5." },
      ];
      const builder = new ResponseBuilder();
      const seen = events.map((e, i) => {
        builder.apply({ ...e, sequence_number: i });
        return builder.response.output.length;
      });
      const built = structuredClone(builder.response.output);
      const views = built.map((item) => itemView(item));
      return {
        lengths: seen,
        sequence: builder.sequence,
        built,
        views: views.map((li) => ({
          type: li.dataset.type,
          pre: [...li.querySelectorAll("pre")].map((p) => p.textContent),
          text: li.querySelector(".text")?.textContent ?? null,
        })),
      };
    });
  },

  async images(page) {
    await openPlayground(page);
    const assistantId = await createAssistant(page, `browser-img-${Date.now()}`, "You describe images.", false);
    await page.click("#thread-new");
    await page.waitForFunction(() => document.querySelector("#thread-id").value.startsWith("thread_"));
    await page.fill("#message-input", "What is in this picture?");
    // Two picked, one of them removed again, one pasted.
    await pickImages(page, "#image-attach", [png(0, "picked.png"), png(2, "dropped.png")]);
    const picked = await trayCount(page, "#image-tray");
    await page.click("#image-tray .remove-image[aria-label='Remove dropped.png']");
    const afterRemove = await trayCount(page, "#image-tray");
    const pasteHandled = await pasteImage(page, "#message-input", PNGS[1], "pasted.png");
    // each preview once its image has loaded (a pasted one decodes after the paste returns: seen unloaded once)
    await loadedImages(page, "#image-tray .pending-image img", 2);
    const pending = await page.locator("#image-tray .pending-image").evaluateAll((figures) => figures.map((f) => ({
      name: f.title, width: f.querySelector("img").naturalWidth })));
    await page.click("#send");
    const bubble = page.locator("#messages .message.user").last();
    await bubble.waitFor();
    const shown = await loadedImages(page, "#messages .message.user img", 2);
    const notice = await endedNotice(page, "#send");
    const threadId = await page.inputValue("#thread-id");
    const facts = {
      assistant_id: assistantId,
      thread_id: threadId,
      message_id: await bubble.getAttribute("data-message-id"),
      text: await bubble.locator(".text").allTextContents(),
      picked, after_remove: afterRemove, paste_handled: pasteHandled, pending, shown, notice,
      tray_after: await trayCount(page, "#image-tray"),
      input_after: await page.inputValue("#message-input"),
    };
    // A message with image_url parts (made through the API), then the thread opened again: a data: URL is
    // shown as an image, an http URL only as a link (the browser does not fetch it).
    const dataUrl = `data:image/png;base64,${PNGS[2]}`;
    const urlMessage = await page.evaluate(async ({ threadId, dataUrl }) => {
      const response = await fetch(`/v1/threads/${threadId}/messages`, {
        method: "POST",
        headers: { Authorization: `Bearer ${localStorage.getItem("assistd.apiKey")}`,
          "Content-Type": "application/json", "OpenAI-Beta": "assistants=v2" },
        body: JSON.stringify({ role: "user", content: [
          { type: "image_url", image_url: { url: dataUrl } },
          { type: "image_url", image_url: { url: "http://example.invalid/cat.png" } },
        ] }),
      });
      return (await response.json()).id;
    }, { threadId, dataUrl });
    await page.click("#thread-open");
    const reopened = `#messages .message[data-message-id="${urlMessage}"]`;
    await page.waitForSelector(reopened);
    return {
      ...facts,
      reopened: await loadedImages(page, "#messages .message.user img", 3),
      url_images: await page.locator(`${reopened} img`).evaluateAll((imgs) => imgs.map((i) => ({
        data: i.src.startsWith("data:image/png"), width: i.naturalWidth }))),
      url_links: await page.locator(`${reopened} a.image-link`).evaluateAll((links) => links.map((a) => a.href)),
    };
  },

  async responses_images(page) {
    await openPlayground(page);
    await responsesMode(page);
    await page.click("#r-new");
    await page.fill("#r-max-tokens", "40");
    await page.fill("#r-input", "Describe this image.");
    await pickImages(page, "#r-image-attach", [png(0, "picked.png")]);
    await pasteImage(page, "#r-input", PNGS[1], "pasted.png");
    const pending = await trayCount(page, "#r-image-tray");
    const request = page.waitForRequest((r) => r.method() === "POST" && new URL(r.url()).pathname === "/v1/responses");
    await page.click("#r-send");
    const sent = (await request).postDataJSON();
    const notice = await endedNotice(page, "#r-send");
    const card = page.locator("#r-inspector .response");
    const created = (await card.count()) > 0;
    let shown = null;
    let inspected = null;
    if (created) {
      shown = await loadedImages(page, "#r-messages .message.user img", 2);
      await card.locator("details.input-items summary").click();
      inspected = await loadedImages(page, "#r-inspector .input-items li.item[data-type=message] img", 2);
    }
    const facts = {
      sent, notice, pending, shown, inspected,
      response_id: created ? await card.getAttribute("data-response-id") : null,
      status: created ? await card.getAttribute("data-status") : null,
      tray_after: await trayCount(page, "#r-image-tray"),
      input_after: await page.inputValue("#r-input"),
    };
    if (!created) return facts;
    // A reload reads the chat back: the images of its input items again.
    await page.reload();
    await page.waitForSelector("body[data-ready=true]");
    return { ...facts, reloaded: await loadedImages(page, "#r-messages .message.user img", 2) };
  },

  async phone(page) {
    await page.setViewportSize({ width: 390, height: 844 });
    await openPlayground(page);
    const measure = () => page.evaluate(() => ({
      scroll: document.documentElement.scrollWidth,
      viewport: window.innerWidth,
      panels: [...document.querySelectorAll("main:not([hidden]) .panel")]
        .map((p) => Math.round(p.getBoundingClientRect().width)),
    }));
    const widths = await measure();
    await responsesMode(page);
    return { ...widths, responses: await measure() };
  },
};

const browser = await chromium.launch({ executablePath, headless: true, args: ARGS });
const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
page.setDefaultTimeout(TIMEOUT);
const log = [];
page.on("pageerror", (err) => log.push(`pageerror: ${err.message}`));
page.on("console", (msg) => { if (msg.type() === "error") log.push(`console: ${msg.text()}`); });
try {
  const facts = await scenarios[scenario](page);
  if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });
  console.log(JSON.stringify({ ok: true, log, ...facts }));
} catch (err) {
  const notice = await page.textContent("#notice").catch(() => null);
  const runs = await page.textContent("#runs").catch(() => null);
  const responses = await page.textContent("#r-inspector").catch(() => null);
  console.log(JSON.stringify({ ok: false, error: String(err.message || err), notice, runs, responses, log }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
