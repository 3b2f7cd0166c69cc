// Real JavaScript clients of assistd's Responses API, run by tests/contract/test_node_clients.py:
//   node clients.mjs <client> <scenario> <base_url> <api_key> <model>
// client: "openai" (the OpenAI Node SDK's `responses`) or "ai-sdk" (the Vercel AI SDK with its Open Responses
// provider); scenario: basic, stream, tools, multi_turn. Prints one JSON line: {"ok": true, ...what it saw}
// or {"ok": false, "error": ...}; the pytest test checks what it saw.
import OpenAI from "openai";
import { createOpenResponses } from "@ai-sdk/open-responses";
import { generateText, jsonSchema, stepCountIs, streamText, tool } from "ai";

const [client, scenario, baseUrl, apiKey, model] = process.argv.slice(2);
const GREEDY = { temperature: 0 };
const WEATHER_PARAMS = {
  type: "object",
  properties: { city: { type: "string" } },
  required: ["city"],
  additionalProperties: false,
};

// ------------------------------------------------------------------------------------ the OpenAI Node SDK
const openai = () => new OpenAI({ baseURL: `${baseUrl}/v1`, apiKey, maxRetries: 0, timeout: 120_000 });

// The text of a response's messages (the SDK adds `output_text` to created responses, not to a stream's final).
const textOf = (response) =>
  response.output
    .filter((item) => item.type === "message")
    .flatMap((item) => item.content)
    .filter((part) => part.type === "output_text")
    .map((part) => part.text)
    .join("");

const openaiScenarios = {
  async basic() {
    const api = openai();
    const response = await api.responses.create({
      model,
      input: "Say hello.",
      max_output_tokens: 48,
      ...GREEDY,
    });
    const again = await api.responses.retrieve(response.id);
    return {
      id: response.id,
      status: response.status,
      text: textOf(response),
      output_types: response.output.map((item) => item.type),
      usage: response.usage,
      retrieved_text: textOf(again),
      retrieved_status: again.status,
    };
  },

  async stream() {
    const api = openai();
    // The SDK's stream helper rebuilds the response from the events and throws on any it cannot place.
    const stream = api.responses.stream({
      model,
      input: "Tell me about the sea.",
      max_output_tokens: 48,
      ...GREEDY,
    });
    const types = [];
    const sequence = [];
    let deltas = "";
    let doneText = null;
    for await (const event of stream) {
      types.push(event.type);
      sequence.push(event.sequence_number);
      if (event.type === "response.output_text.delta") deltas += event.delta;
      if (event.type === "response.output_text.done") doneText = event.text;
    }
    const final = await stream.finalResponse();
    const again = await api.responses.retrieve(final.id);
    return {
      types,
      sequence,
      deltas,
      done_text: doneText,
      final_text: textOf(final),
      final_status: final.status,
      retrieved_text: textOf(again),
      retrieved_status: again.status,
    };
  },

  async tools() {
    const api = openai();
    const tools = [
      {
        type: "function",
        name: "get_weather",
        description: "Returns the weather in a city.",
        parameters: WEATHER_PARAMS,
        strict: true,
      },
    ];
    const first = await api.responses.create({
      model,
      input: "What is the weather in Paris?",
      tools,
      tool_choice: "required",
      max_output_tokens: 64,
      ...GREEDY,
    });
    const calls = first.output.filter((item) => item.type === "function_call");
    const outputs = calls.map((call) => ({
      type: "function_call_output",
      call_id: call.call_id,
      output: `It is sunny in ${JSON.parse(call.arguments).city}.`,
    }));
    const second = await api.responses.create({
      model,
      previous_response_id: first.id,
      input: outputs,
      tools,
      tool_choice: "none",
      max_output_tokens: 64,
      ...GREEDY,
    });
    return {
      first_status: first.status,
      calls: calls.map(({ id, call_id, name, arguments: args, status }) => ({
        id,
        call_id,
        name,
        arguments: args,
        status,
      })),
      second_status: second.status,
      second_previous: second.previous_response_id,
      second_output_types: second.output.map((item) => item.type),
      text: textOf(second),
    };
  },

  async multi_turn() {
    const api = openai();
    const first = await api.responses.create({
      model,
      instructions: "Be brief.",
      input: "My name is Alice.",
      max_output_tokens: 48,
      ...GREEDY,
    });
    const second = await api.responses.create({
      model,
      instructions: "Be brief.",
      previous_response_id: first.id,
      input: [{ role: "user", content: "What is my name?" }],
      max_output_tokens: 48,
      ...GREEDY,
    });
    const items = [];
    for await (const item of api.responses.inputItems.list(second.id, { order: "asc" })) items.push(item);
    return {
      first_id: first.id,
      first_status: first.status,
      second_status: second.status,
      second_previous: second.previous_response_id,
      text: textOf(second),
      input_tokens: [first.usage.input_tokens, second.usage.input_tokens],
      input_items: items.map((item) => ({ type: item.type, role: item.role, id: item.id })),
    };
  },
};

// ---------------------------------------------------------------- the AI SDK's Open Responses provider
const openResponses = () =>
  createOpenResponses({ name: "assistd", url: `${baseUrl}/v1/responses`, apiKey })(model);

const aiScenarios = {
  async basic() {
    const result = await generateText({
      model: openResponses(),
      prompt: "Say hello.",
      maxOutputTokens: 48,
      ...GREEDY,
    });
    return {
      id: result.response.id,
      text: result.text,
      finish_reason: result.finishReason,
      usage: { input: result.usage.inputTokens, output: result.usage.outputTokens },
      warnings: result.warnings ?? [],
    };
  },

  async stream() {
    const result = streamText({
      model: openResponses(),
      prompt: "Tell me about the sea.",
      maxOutputTokens: 48,
      ...GREEDY,
      onError: ({ error }) => {
        throw error;
      },
    });
    let deltas = "";
    for await (const delta of result.textStream) deltas += delta;
    return {
      deltas,
      final_text: await result.text,
      finish_reason: await result.finishReason,
      id: (await result.response).id,
      usage: await result.usage,
    };
  },

  async tools() {
    const calls = [];
    const result = await generateText({
      model: openResponses(),
      prompt: "What is the weather in Paris?",
      tools: {
        get_weather: tool({
          description: "Returns the weather in a city.",
          inputSchema: jsonSchema(WEATHER_PARAMS),
          execute: async ({ city }) => {
            calls.push(city);
            return `It is sunny in ${city}.`;
          },
        }),
      },
      toolChoice: "required",
      // The first step must call the tool, the second answers from its result.
      prepareStep: ({ stepNumber }) => (stepNumber === 0 ? {} : { toolChoice: "none" }),
      stopWhen: stepCountIs(2),
      maxOutputTokens: 64,
      ...GREEDY,
    });
    return {
      calls,
      steps: result.steps.map((step) => ({
        finish_reason: step.finishReason,
        tool_calls: step.toolCalls.map((call) => ({ name: call.toolName, input: call.input })),
        text: step.text,
        response_id: step.response.id,
      })),
      text: result.text,
    };
  },

  async multi_turn() {
    // The AI SDK keeps the history itself and sends all of it each turn.
    const first = await generateText({
      model: openResponses(),
      system: "Be brief.",
      prompt: "My name is Alice.",
      maxOutputTokens: 48,
      ...GREEDY,
    });
    const messages = [{ role: "user", content: "My name is Alice." }, ...first.response.messages];
    messages.push({ role: "user", content: "What is my name?" });
    const second = await generateText({
      model: openResponses(),
      system: "Be brief.",
      messages,
      maxOutputTokens: 48,
      ...GREEDY,
    });
    return {
      first_text: first.text,
      text: second.text,
      finish_reason: second.finishReason,
      ids: [first.response.id, second.response.id],
      input_tokens: [first.usage.inputTokens, second.usage.inputTokens],
      sent_input: second.request.body.input,
    };
  },
};

const scenarios = { openai: openaiScenarios, "ai-sdk": aiScenarios }[client];
try {
  if (!scenarios?.[scenario]) throw new Error(`unknown client or scenario: ${client} ${scenario}`);
  const seen = await scenarios[scenario]();
  console.log(JSON.stringify({ ok: true, ...seen }));
} catch (error) {
  const detail = { name: error?.name, message: String(error?.message ?? error) };
  if (error?.status !== undefined) detail.status = error.status;
  if (error?.error !== undefined) detail.body = error.error;
  if (error?.responseBody !== undefined) detail.body = error.responseBody;
  if (error?.stack) detail.stack = String(error.stack).split("\n").slice(0, 6).join("\n");
  console.log(JSON.stringify({ ok: false, error: detail }));
  process.exitCode = 1;
}
