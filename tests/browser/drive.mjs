// Drives the Playground in headless Chromium (playwright-core) for tests/browser/test_playground.py.
//
//   node drive.mjs SCENARIO BASE_URL API_KEY
//
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

/** The last assistant bubble once its message is complete: text and the number of deltas it received. */
async function finalReply(page) {
  const bubble = page.locator(".message.assistant:not(.streaming)").last();
  await bubble.waitFor();
  await page.waitForFunction(() => {
    const all = document.querySelectorAll(".message.assistant");
    const last = all[all.length - 1];
    return last && !last.classList.contains("streaming") && last.querySelector(".text")?.textContent.length > 0;
  });
  return {
    message_id: await bubble.getAttribute("data-message-id"),
    text: await bubble.locator(".text").first().textContent(),
    deltas: Number((await bubble.getAttribute("data-deltas")) || 0),
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

  async phone(page) {
    await page.setViewportSize({ width: 390, height: 844 });
    await openPlayground(page);
    const widths = await page.evaluate(() => ({
      scroll: document.documentElement.scrollWidth,
      viewport: window.innerWidth,
      panels: [...document.querySelectorAll(".panel")].map((p) => Math.round(p.getBoundingClientRect().width)),
    }));
    return widths;
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
  console.log(JSON.stringify({ ok: false, error: String(err.message || err), notice, runs, log }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
