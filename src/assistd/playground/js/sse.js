// Server-sent events read from a fetch() body: `event:` and `data:` lines, a blank line ends an event.
// `:` lines are comments (keep-alives); CR, LF and CRLF all end a line. data is parsed as JSON unless it
// is the end marker `[DONE]`.

const LINE_END = /\r\n|\r|\n/;

export function parseData(text) {
  return text.startsWith("[DONE]") ? "[DONE]" : JSON.parse(text);
}

/** Splits complete lines off `buffer`; returns [lines, rest]. A trailing CR waits for a possible LF. */
export function splitLines(buffer) {
  const lines = [];
  for (;;) {
    const match = LINE_END.exec(buffer);
    if (!match) return [lines, buffer];
    if (match[0] === "\r" && match.index === buffer.length - 1) return [lines, buffer];
    lines.push(buffer.slice(0, match.index));
    buffer = buffer.slice(match.index + match[0].length);
  }
}

export async function* readEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = "message";
  let data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    const [lines, rest] = splitLines(buffer + value);
    buffer = rest;
    for (const line of lines) {
      if (line === "") {
        if (data.length) yield { event, data: parseData(data.join("\n")) };
        event = "message";
        data = [];
      } else if (line.startsWith(":")) {
        continue;
      } else {
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "event") event = value;
        else if (field === "data") data.push(value);
      }
    }
  }
  if (data.length) yield { event, data: parseData(data.join("\n")) };
}
